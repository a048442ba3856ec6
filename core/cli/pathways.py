"""``suifang pathways``: list, show, validate and preview pathway templates."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo

import typer
from sqlmodel import Session

from suifang.core.cli.context import cli_runtime
from suifang.core.cli.output import emit_json, print_table
from suifang.core.enums import RiskTier
from suifang.core.errors import ValidationFailed
from suifang.core.models import Department
from suifang.core.pathway_checks import check_template, load_checked
from suifang.core.pathways import (
    LOCALES,
    PathwayTemplate,
    check_groups,
    locate,
    read_template,
    resolve_plan,
)
from suifang.core.rendering import MessageContext, MessageRenderer
from suifang.core.runtime import Runtime
from suifang.core.timezones import check_timezone
from suifang.workflows.journey_core import preview_schedule

app = typer.Typer(help="Pathway templates: list, validate, preview.", no_args_is_help=True)


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
    """A draft file (validated like `validate` does) or a registered ``id[@version]``."""
    path = Path(target)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return load_checked(path, runtime.vocabulary())
    pathway_id, _, pinned = target.partition("@")
    if pinned:
        if not pinned.isdigit() or version is not None:
            raise ValidationFailed(
                f"{target!r}: write a version as id@2 (a whole number), and not with --version"
            )
        version = int(pinned)
    return runtime.catalog.get(pathway_id, version)


def _department_name(runtime: Runtime, code: str | None, locale: str) -> str:
    if code is None:
        return ""
    with Session(runtime.engine) as session:
        department = session.get(Department, code)
    if department is None:
        return code
    return department.name_en if locale == "en" else department.name_zh
