"""``suifang pathways``: list, show, validate and preview pathway templates."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo

import typer
from sqlmodel import Session, select

from suifang.core.cli.context import cli_actor, cli_audit, cli_run, cli_runtime
from suifang.core.cli.output import emit_json, print_table
from suifang.core.enums import RiskTier
from suifang.core.errors import NotFoundError, ValidationFailed
from suifang.core.models import Department, PathwayVersion
from suifang.core.pathway_catalogue import (
    add_draft,
    diff,
    export,
    find_version,
    publish,
    retire,
)
from suifang.core.pathway_checks import check_template, load_checked
from suifang.core.pathways import (
    LOCALES,
    PathwayTemplate,
    check_groups,
    locate,
    parse_template,
    read_template,
    resolve_plan,
)
from suifang.core.rendering import MessageContext, MessageRenderer
from suifang.core.runtime import Runtime
from suifang.core.timezones import check_timezone
from suifang.workflows.journey_core import preview_schedule
from suifang.workflows.journey_service import migrate_journeys

app = typer.Typer(
    help="Pathway templates: list, validate, preview; add, publish, retire, export, diff.",
    no_args_is_help=True,
)


@app.command("list")
def list_pathways(
    locale: Annotated[str, typer.Option(help="zh-CN or en.")] = "zh-CN",
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Registered pathways (the newest version of each)."""
    catalog = cli_runtime().catalog
    rows = [
        (
            t.id,
            t.version,
            t.name.get(locale),
            t.department or "",
            len(t.touchpoints),
            "yes" if t.open_ended else "",
            ",".join(sorted(t.variants)),
            catalog.origin(t),
        )
        for t in catalog.current()
    ]
    if as_json:
        emit_json(
            [
                dict(
                    zip(
                        [
                            "id",
                            "version",
                            "name",
                            "department",
                            "touchpoints",
                            "open_ended",
                            "variants",
                            "source",
                        ],
                        r,
                        strict=True,
                    )
                )
                for r in rows
            ]
        )
        return
    print_table(
        ["ID", "VERSION", "NAME", "DEPARTMENT", "TOUCHPOINTS", "OPEN-ENDED", "VARIANTS", "SOURCE"],
        rows,
    )


@app.command("validate")
def validate(
    files: Annotated[list[Path], typer.Argument(help="YAML template files.")],
    as_json: Annotated[bool, typer.Option("--json", help="Findings as JSON.")] = False,
) -> None:
    """Check template files: their shape, and that every rule can fire and every name
    (option, indicator, channel, department, category, message variable) refers to something.

    One line per problem, ``file:line: field: reason (hint)``; warnings (legal but suspicious)
    do not fail the check.
    """
    runtime = cli_runtime()
    vocabulary = runtime.vocabulary()
    failures: list[str] = []
    report = []
    for file in files:
        try:
            template, root = read_template(file)
        except ValidationFailed as exc:
            failures.append(str(exc))
            report.append({"file": str(file), "ok": False, "errors": str(exc).splitlines()[1:]})
            continue
        findings = check_template(template, vocabulary)
        errors = [locate(file, root, f.loc, f.text()) for f in findings if not f.warning]
        warnings = [
            locate(file, root, f.loc, "warning: " + f.text()) for f in findings if f.warning
        ]
        report.append({"file": str(file), "ok": not errors, "errors": errors, "warnings": warnings})
        if not as_json:
            for line in warnings:
                print(line)
        if errors:
            failures.append("invalid pathway template\n  " + "\n  ".join(errors))
        elif not as_json:
            count = len(template.touchpoints)
            print(f"{file}: ok — {template.id} v{template.version}, {count} touchpoints")
    if as_json:
        emit_json(report)
    if failures:
        raise ValidationFailed("\n".join(failures))


@app.command("preview")
def preview(
    target: Annotated[
        str, typer.Argument(help="A registered pathway (pci, pci@2) or a draft YAML file.")
    ],
    discharged: Annotated[str, typer.Option(help="Discharge date, YYYY-MM-DD.")],
    risk: Annotated[RiskTier | None, typer.Option(help="Risk tier variant.")] = None,
    group: Annotated[
        list[str] | None, typer.Option(help="Special group: elderly, child, pregnant.")
    ] = None,
    locale: Annotated[str, typer.Option(help="Language of the messages: zh-CN or en.")] = "zh-CN",
    timezone: Annotated[str, typer.Option(help="Patient timezone.")] = "Asia/Shanghai",
    version: Annotated[int | None, typer.Option(help="Template version (default newest).")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The dated touchpoints for a patient discharged on a given day (send windows applied),
    each with its message as the patient would read it."""
    try:
        day = dt.date.fromisoformat(discharged)
    except ValueError:
        raise ValidationFailed(
            f"--discharged: {discharged!r} is not a date like 2026-11-01"
        ) from None
    try:
        zone = ZoneInfo(check_timezone(timezone))
    except ValueError as exc:
        raise ValidationFailed(f"--timezone: {exc}") from None
    if locale not in LOCALES:
        raise ValidationFailed(f"--locale: {locale!r} is not one of {', '.join(LOCALES)}")
    groups = check_groups(group or [])
    runtime = cli_runtime()
    template = _template(runtime, target, version)
    plan = resolve_plan(template, risk, groups)
    missing = [g for g in groups if g not in plan.variants]
    if missing:
        print(
            f"note: {template.id} has no variant for {', '.join(missing)}: their standard plan",
            file=sys.stderr,
        )
    start = dt.datetime.combine(day, dt.time(12, 0), tzinfo=zone)
    renderer = MessageRenderer()
    department = _department_name(runtime, plan.department, locale)
    touchpoints = {t.id: t for t in plan.touchpoints}
    rows = []
    for key, d, due in preview_schedule(plan, start, timezone=timezone):
        touchpoint = touchpoints[key.split("#")[0]]
        context = MessageContext(
            name=_SAMPLE_NAME[locale],
            department=department,
            hospital=runtime.settings.hospital_name,
            day=d,
        )
        message = renderer.touchpoint(touchpoint.message, touchpoint.questionnaire, locale, context)
        rows.append((key, d, due.astimezone(zone), touchpoint.channels, message.body))
    if as_json:
        emit_json(
            {
                "pathway": template.id,
                "version": template.version,
                "variants": plan.variants,
                "locale": locale,
                "schedule": [
                    {"key": k, "day": d, "local": t.isoformat(), "channels": c, "message": m}
                    for k, d, t, c, m in rows
                ],
            }
        )
        return
    variants = ", ".join(plan.variants) or "standard"
    print(f"{template.id} v{template.version} ({variants}), discharged {day}, {timezone}")
    for key, d, local, channels, body in rows:
        print(f"\n{local:%Y-%m-%d %H:%M}  day {d}  {key}  ({' → '.join(channels)})")
        for line in body.splitlines():
            print(f"    {line}")


_SAMPLE_NAME = {"zh-CN": "王阿姨", "en": "Mrs Wang"}


def _template(runtime: Runtime, target: str, version: int | None) -> PathwayTemplate:
    """A draft file (validated like `validate` does), a catalogue draft ``id@version``, or a
    registered ``id[@version]``."""
    path = Path(target)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return load_checked(path, runtime.vocabulary())
    pathway_id, pinned = _pinned(target)
    if pinned is not None and version is not None:
        raise ValidationFailed(f"{target!r}: give the version once, as id@2 or --version")
    version = pinned if pinned is not None else version
    if version is not None:
        with Session(runtime.engine) as session:
            row = find_version(session, pathway_id, version)
        if row is not None and row.status == "draft":
            return parse_template(row.source, target)[0]
    return runtime.catalog.get(pathway_id, version)


def _pinned(target: str) -> tuple[str, int | None]:
    """``pci`` → (pci, None); ``pci@2`` → (pci, 2)."""
    pathway_id, at, pinned = target.partition("@")
    if not at:
        return pathway_id, None
    if not pinned.isdigit() or int(pinned) < 1:
        raise ValidationFailed(f"{target!r}: write a version as id@2 (a whole number)")
    return pathway_id, int(pinned)


@app.command("add")
def add(
    file: Annotated[Path, typer.Argument(help="A pathway YAML file.")],
) -> None:
    """Import a pathway as a draft, checked as `validate` checks it (a draft of the same id
    and version is replaced; a published one never is)."""
    try:
        source = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValidationFailed(f"{file}: cannot read: {exc}") from None
    runtime = cli_runtime()
    with Session(runtime.engine) as session:
        change = add_draft(
            session,
            source,
            origin=str(file),
            actor=cli_actor(),
            vocabulary=runtime.vocabulary(),
            registered=runtime.catalog,
        )
    cli_audit("pathways add", "pathways", [], change.pathway_id, change.audit_detail())
    again = " (replacing the draft)" if change.previous == "draft" else ""
    print(
        f"{change.pathway_id}@{change.version}: draft{again}; preview it with `suifang pathways "
        f"preview {change.pathway_id}@{change.version} --discharged DATE`, then publish it"
    )


@app.command("publish")
def publish_(
    pathway_id: Annotated[str, typer.Argument(help="Pathway id.")],
    version: Annotated[int, typer.Argument(help="The draft's version.", min=1)],
) -> None:
    """Open a draft for enrollment; it never changes after this."""
    runtime = cli_runtime()
    with Session(runtime.engine) as session:
        change = publish(session, pathway_id, version, vocabulary=runtime.vocabulary())
    cli_audit("pathways publish", "pathways", [], pathway_id, change.audit_detail())
    print(f"{pathway_id}@{version}: published; new discharges onto {pathway_id} get it")


@app.command("retire")
def retire_(
    pathway_id: Annotated[str, typer.Argument(help="Pathway id.")],
    version: Annotated[int, typer.Argument(help="A published version.", min=1)],
) -> None:
    """Close a published version to new enrollments (running journeys keep their plan)."""
    with Session(cli_runtime().engine) as session:
        change = retire(session, pathway_id, version)
    cli_audit("pathways retire", "pathways", [], pathway_id, change.audit_detail())
    print(f"{pathway_id}@{version}: retired; running journeys keep their plan")


@app.command("export")
def export_(
    target: Annotated[str, typer.Argument(help="pci (the current version) or pci@2.")],
    out: Annotated[Path | None, typer.Option(help="Write to this file (default: stdout).")] = None,
) -> None:
    """A version's YAML, as written."""
    pathway_id, version = _pinned(target)
    runtime = cli_runtime()
    with Session(runtime.engine) as session:
        text = export(session, runtime.catalog, pathway_id, version)
    if out is None:
        sys.stdout.write(text)
        return
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ValidationFailed(f"--out: cannot write {out}: {exc}") from None
    print(f"{target}: written to {out}")


@app.command("diff")
def diff_(
    pathway_id: Annotated[str, typer.Argument(help="Pathway id.")],
    old: Annotated[int, typer.Argument(help="The older version.", min=1)],
    new: Annotated[int, typer.Argument(help="The newer version.", min=1)],
) -> None:
    """What changed between two versions (a unified diff of their YAML)."""
    runtime = cli_runtime()
    with Session(runtime.engine) as session:
        text = diff(session, runtime.catalog, pathway_id, old, new)
    sys.stdout.write(text or f"{pathway_id}@{old} and @{new} are the same\n")


@app.command("migrate")
def migrate(
    pathway_id: Annotated[str, typer.Argument(help="Pathway id.")],
    from_version: Annotated[int, typer.Option("--from", help="The running version.", min=1)],
    to_version: Annotated[int, typer.Option("--to", help="The newer version.", min=1)],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would change.")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Move running journeys to a newer version at their current position: touchpoints done
    stay done, new ones ahead are scheduled (those whose day has passed are not sent late),
    removed ones are cancelled. Each journey's plan is resolved for its own tier and groups."""
    runtime = cli_runtime()
    outcomes = cli_run(
        migrate_journeys(runtime, pathway_id, from_version, to_version, dry_run=dry_run)
    )
    if not dry_run:
        cli_audit(
            "pathways migrate",
            "pathways",
            [],
            pathway_id,
            {
                "pathway": pathway_id,
                "from": from_version,
                "to": to_version,
                "journeys": [o.enrollment_id for o in outcomes if o.report is not None],
            },
        )
    if as_json:
        emit_json([o.model_dump(mode="json") for o in outcomes])
        return
    verb = "would move" if dry_run else "moved"
    for outcome in outcomes:
        report = outcome.report
        if report is None:
            print(f"journey {outcome.enrollment_id}: not moved: {outcome.error}")
            continue
        parts = [
            f"done {len(report.done)} kept",
            f"adds {', '.join(report.added) or 'nothing'}",
        ]
        if report.passed:
            parts.append(f"skips {', '.join(report.passed)} (day passed)")
        if report.removed:
            parts.append(f"removes {', '.join(report.removed)}")
        if report.cancelled:
            parts.append(f"cancels open {', '.join(report.cancelled)}")
        print(f"journey {outcome.enrollment_id}: {verb} to v{to_version}: " + "; ".join(parts))
    moved = sum(o.report is not None for o in outcomes)
    print(f"{moved} of {len(outcomes)} running journeys {verb} from v{from_version}")
    if moved < len(outcomes):
        raise ValidationFailed(f"{len(outcomes) - moved} journeys could not be moved (see above)")


@app.command("versions")
def versions(
    pathway_id: Annotated[str, typer.Argument(help="Pathway id.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Every version of a pathway with its status: draft, published, retired."""
    runtime = cli_runtime()
    catalog = runtime.catalog
    rows: dict[int, tuple[str, str]] = {}
    for version in catalog.versions(pathway_id):
        template = catalog.get(pathway_id, version)
        status = "retired" if catalog.is_retired(template) else "published"
        rows[version] = (status, catalog.origin(template))
    with Session(runtime.engine) as session:
        for row in session.exec(
            select(PathwayVersion).where(PathwayVersion.pathway_id == pathway_id)
        ).all():
            if row.status == "draft":
                rows[row.version] = ("draft", f"catalogue, by {row.created_by}")
    if not rows:
        raise NotFoundError(f"no pathway {pathway_id!r}")
    table = [(v, *rows[v]) for v in sorted(rows)]
    if as_json:
        emit_json([{"version": v, "status": st, "source": src} for v, st, src in table])
        return
    print_table(["VERSION", "STATUS", "SOURCE"], table)


def _department_name(runtime: Runtime, code: str | None, locale: str) -> str:
    if code is None:
        return ""
    with Session(runtime.engine) as session:
        department = session.get(Department, code)
    if department is None:
        return code
    return department.name_en if locale == "en" else department.name_zh
