"""``suifang pathways``: list, show, validate and preview pathway templates."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo

import typer

from suifang.core.cli.context import cli_runtime
from suifang.core.cli.output import emit_json, print_table
from suifang.core.enums import RiskTier
from suifang.core.errors import ValidationFailed
from suifang.core.pathways import load_template, resolve_plan
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
def validate(files: Annotated[list[Path], typer.Argument(help="YAML template files.")]) -> None:
    """Check template files; every problem is printed as file:line: field: reason."""
    failures = []
    for file in files:
        try:
            template = load_template(file)
        except ValidationFailed as exc:
            failures.append(str(exc))
            continue
        count = len(template.touchpoints)
        print(f"{file}: ok — {template.id} v{template.version}, {count} touchpoints")
    if failures:
        raise ValidationFailed("\n".join(failures))


@app.command("preview")
def preview(
    pathway_id: Annotated[str, typer.Argument(help="Pathway id, e.g. pci.")],
    discharged: Annotated[str, typer.Option(help="Discharge date, YYYY-MM-DD.")],
    risk: Annotated[RiskTier | None, typer.Option(help="Risk tier variant.")] = None,
    group: Annotated[
        list[str] | None, typer.Option(help="Special group: elderly, child, pregnant.")
    ] = None,
    timezone: Annotated[str, typer.Option(help="Patient timezone.")] = "Asia/Shanghai",
    version: Annotated[int | None, typer.Option(help="Template version (default newest).")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The dated schedule for a patient discharged on a given day (send windows applied)."""
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
    template = cli_runtime().catalog.get(pathway_id, version)
    plan = resolve_plan(template, risk, group or [])
    start = dt.datetime.combine(day, dt.time(12, 0), tzinfo=zone)
    rows = [
        (key, d, due.astimezone(zone))
        for key, d, due in preview_schedule(plan, start, timezone=timezone)
    ]
    if as_json:
        emit_json(
            {
                "pathway": template.id,
                "version": template.version,
                "variants": plan.variants,
                "schedule": [{"key": k, "day": d, "local": t.isoformat()} for k, d, t in rows],
            }
        )
        return
    variants = ", ".join(plan.variants) or "standard"
    print(f"{template.id} v{template.version} ({variants}), discharged {day}, {timezone}")
    print_table(
        ["DATE", "TIME", "DAY", "TOUCHPOINT"],
        [(t.strftime("%Y-%m-%d"), t.strftime("%H:%M"), d, k) for k, d, t in rows],
    )
