"""``suifang report``: the follow-up KPIs of a period, as a table or JSON."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer
from sqlmodel import Session

from suifang.core.cli.context import cli_audit, cli_runtime, local_time, zone_name
from suifang.core.cli.output import emit_json, print_kv, print_table
from suifang.core.errors import ValidationFailed
from suifang.tickets.analytics import FeedbackReport, feedback_report
from suifang.workflows.kpis import KpiReport, compute_kpis, filter_problems
from suifang.workflows.monthly_report import build_monthly_report, monthly_html, monthly_pdf
from suifang.workflows.tags import tag_rules

__all__ = ["kpis", "print_report", "report_app"]

report_app = typer.Typer(
    help="Reports: follow-up KPIs per period, department and pathway.", no_args_is_help=True
)


def _date(option: str, value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ValidationFailed(f"{option}: {value!r} is not a date (YYYY-MM-DD)") from None


def print_report(report: KpiReport) -> None:
    """The report as aligned text: a header, the KPI table, ticket volumes."""
    filters = ", ".join(
        f"{name} {value}"
        for name, value in (
            ("department", report.department),
            ("pathway", report.pathway),
            ("tag", report.tag),
        )
        if value
    )
    print_kv(
        [
            ("period", f"{report.start} – {report.end} ({report.timezone})"),
            ("filters", filters or "all departments and pathways"),
            ("as of", f"{local_time(report.as_of)} {zone_name()}"),
        ]
    )
    print()
    print_table(
        ["KPI", "VALUE", "N/D", "PENDING", "DEFINITION"],
        [
            (
                f"{k.name} {k.name_zh}",
                k.value_text,
                k.counts_text,
                k.pending or "",
                k.short,
            )
            for k in report.kpis
        ],
    )
    for title, counts in (
        ("tickets by category", report.tickets_by_category),
        ("tickets by department", report.tickets_by_department),
    ):
        print(f"\n{title}")
        print_table(["NAME", "TICKETS"], sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


@report_app.command("kpis")
def kpis(
    start: Annotated[str, typer.Option("--from", help="First day, YYYY-MM-DD.")],
    end: Annotated[str, typer.Option("--to", help="Last day (included), YYYY-MM-DD.")],
    department: Annotated[str | None, typer.Option(help="Only this department.")] = None,
    pathway: Annotated[str | None, typer.Option(help="Only this pathway.")] = None,
    tag: Annotated[
        str | None, typer.Option(help="Only patients with this auto-tag now (tags.yaml).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Coverage, response, 失访, alerts, SLA, time to first response, readmission, satisfaction.

    Days are calendar days in the hospital's timezone (SUIFANG_TIMEZONE); see docs/kpis.md
    for every definition.
    """
    first, last = _date("--from", start), _date("--to", end)
    if first > last:
        raise ValidationFailed(f"--from ({first}) is after --to ({last})")
    runtime = cli_runtime()
    with Session(runtime.engine) as session:
        problems = filter_problems(
            session,
            department=department,
            pathway=pathway,
            pathways=runtime.catalog.ids(),
            tag=tag,
            tags=list(tag_rules(runtime.settings.tags_file, runtime.settings.indicators_file)),
        )
        if problems:
            raise ValidationFailed(
                "; ".join(f"--{name}: {problem}" for name, problem in problems.items())
            )
        report = compute_kpis(
            session,
            start=first,
            end=last,
            department=department or None,
            pathway=pathway or None,
            departments=None,
            timezone=runtime.settings.timezone,
            tag=tag or None,
        )
    cli_audit("report kpis", "reports", [], f"{first}..{last}")
    if as_json:
        emit_json(report)
        return
    print_report(report)


@report_app.command("feedback")
def feedback(
    start: Annotated[str, typer.Option("--from", help="First day, YYYY-MM-DD.")],
    end: Annotated[str, typer.Option("--to", help="Last day (included), YYYY-MM-DD.")],
    department: Annotated[str | None, typer.Option(help="Only this department.")] = None,
    top: Annotated[int, typer.Option(help="Phrases per department.", min=1, max=50)] = 10,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Feedback hotspots (热点分析): tickets by department, month and category with the change
    from the month before, the words patients used most, and how each department resolves."""
    first, last = _date("--from", start), _date("--to", end)
    if first > last:
        raise ValidationFailed(f"--from ({first}) is after --to ({last})")
    runtime = cli_runtime()
    with Session(runtime.engine) as session:
        problems = filter_problems(
            session, department=department, pathway=None, pathways=runtime.catalog.ids()
        )
        if problems:
            raise ValidationFailed(
                "; ".join(f"--{name}: {problem}" for name, problem in problems.items())
            )
        found = feedback_report(
            session,
            start=first,
            end=last,
            timezone=runtime.settings.timezone,
            department=department or None,
            top=top,
        )
    cli_audit("report feedback", "reports", [], f"{first}..{last}")
    if as_json:
        emit_json(found.model_dump(mode="json"))
        return
    _print_feedback(found)


def _print_feedback(found: FeedbackReport) -> None:
    print_kv(
        [
            ("period", f"{found.start} – {found.end} ({found.timezone})"),
            ("tickets", found.tickets),
        ]
    )
    print("\nHotspots")
    print_table(
        ["month", "department", "category", "tickets", "change"],
        [
            [
                h.month,
                h.department,
                h.category,
                h.count,
                "" if h.change is None else f"{h.change:+d}",
            ]
            for h in found.hotspots
        ],
    )
    print("\nTop phrases")
    print_table(
        ["department", "phrases"],
        [
            [department, ", ".join(f"{p.phrase} ({p.count})" for p in phrases)]
            for department, phrases in found.top_phrases.items()
        ],
    )
    print("\nResolution")
    print_table(
        ["department", "opened", "resolved", "median h", "p90 h", "reopened", "satisfaction"],
        [
            [
                r.department,
                r.opened,
                r.resolved,
                r.median_hours_to_resolve,
                r.p90_hours_to_resolve,
                "" if r.reopen_rate is None else f"{r.reopen_rate:.0%}",
                ""
                if r.satisfaction_mean is None
                else f"{r.satisfaction_mean} ({r.satisfaction_responses})",
            ]
            for r in found.resolution
        ],
    )


@report_app.command("monthly")
def monthly(
    month: Annotated[str, typer.Option("--month", help="YYYY-MM, the hospital's calendar.")],
    out: Annotated[Path, typer.Option("--out", help="FILE.pdf or FILE.html.")],
    department: Annotated[str | None, typer.Option(help="One department (default: all).")] = None,
) -> None:
    """The monthly follow-up quality review (月度随访质量报告): KPIs with SLA compliance,
    tickets per day, the hotspot table and staff workload, as PDF or HTML."""
    if out.suffix.lower() not in (".pdf", ".html"):
        raise ValidationFailed(f"--out: {out} must end in .pdf or .html")
    runtime = cli_runtime()
    with Session(runtime.engine) as session:
        problems = filter_problems(
            session, department=department, pathway=None, pathways=runtime.catalog.ids()
        )
        if problems:
            raise ValidationFailed(
                "; ".join(f"--{name}: {problem}" for name, problem in problems.items())
            )
        made = build_monthly_report(
            session, month=month, timezone=runtime.settings.timezone, department=department
        )
    cli_audit("report monthly", "reports", [], month)
    content = monthly_pdf(made) if out.suffix.lower() == ".pdf" else monthly_html(made).encode()
    try:
        out.write_bytes(content)
    except OSError as exc:
        raise ValidationFailed(f"--out: cannot write {out}: {exc.strerror}") from None
    print(f"wrote {out} ({len(content):,} bytes): {made.month}, {made.feedback.tickets} tickets")
