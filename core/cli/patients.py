"""``suifang patients``: a patient's health record and indicator trends (audited)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer
from sqlmodel import Session

from suifang.core.cli.context import cli_audit, cli_runtime
from suifang.core.cli.output import emit_json, print_table
from suifang.core.errors import ValidationFailed
from suifang.core.pathway_checks import load_indicators
from suifang.workflows.health_record import HealthRecord, health_record
from suifang.workflows.health_report import build_patient_report, report_html, report_pdf
from suifang.workflows.trends import Trend, indicator_trend, trend_svg

app = typer.Typer(
    help="A patient's health record (健康档案) and indicator trends.", no_args_is_help=True
)

PatientId = Annotated[int, typer.Argument(help="The patient's id (suifang journeys show).", min=1)]
Locale = Annotated[str, typer.Option(help="zh-CN or en: summaries and chart labels.")]


def _locale(locale: str) -> str:
    if locale not in ("zh-CN", "en"):
        raise ValidationFailed(f"--locale: {locale!r} is not zh-CN or en")
    return locale


@app.command("show")
def show(
    patient_id: PatientId,
    record: Annotated[
        bool, typer.Option("--record", help="The whole record, not only the summary.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    locale: Locale = "zh-CN",
) -> None:
    """PATIENT_ID's summary; with --record, the whole health record: encounters, journeys,
    answers, observations, alerts and how each was handled, tickets, messages, recordings."""
    locale = _locale(locale)
    with Session(cli_runtime().engine) as session:
        found = health_record(session, patient_id, locale=locale)
    cli_audit("patients show", "patients", [patient_id], str(patient_id))
    if as_json:
        emit_json(
            found.model_dump(mode="json") if record else found.patient.model_dump(mode="json")
        )
        return
    _print_summary(found)
    if record:
        _print_record(found)


def _print_summary(found: HealthRecord) -> None:
    patient = found.patient
    age = f", {patient.age}" if patient.age is not None else ""
    print(f"Patient {patient.id}: {patient.name} ({patient.sex or 'sex unknown'}{age})")
    print(
        f"  {len(found.encounters)} encounters, {len(found.journeys)} journeys, "
        f"{len(found.observations)} observations, {len(found.alerts)} alerts, "
        f"{len(found.tickets)} tickets, {len(found.messages)} messages, "
        f"{len(found.recordings)} recordings"
    )
    print(f"  tags: {', '.join(t.tag for t in found.tags) or '(none)'}")


def _print_record(found: HealthRecord) -> None:
    sections = [
        (
            "Tag history",
            ["when", "tag", "change", "on"],
            [[f"{c.at:%Y-%m-%d %H:%M}", c.tag, c.change, c.reason] for c in found.tag_history],
        ),
        (
            "Encounters",
            ["id", "kind", "department", "discharged", "diagnoses"],
            [
                [
                    e.id,
                    e.kind,
                    e.department,
                    f"{e.discharged_at:%Y-%m-%d}",
                    ", ".join(e.diagnosis_codes),
                ]
                for e in found.encounters
            ],
        ),
        (
            "Journeys",
            ["enrollment", "pathway", "status", "risk", "touchpoints (answered/all)"],
            [
                [
                    j.enrollment_id,
                    f"{j.pathway_id} v{j.pathway_version}",
                    j.status,
                    j.risk_tier,
                    f"{sum(1 for t in j.touchpoints if t.answered_at)}/{len(j.touchpoints)}",
                ]
                for j in found.journeys
            ],
        ),
        (
            "Observations",
            ["when", "indicator", "value", "source"],
            [
                [
                    f"{o.observed_at:%Y-%m-%d %H:%M}",
                    o.indicator,
                    f"{o.value:g} {o.unit or ''}",
                    o.source,
                ]
                for o in found.observations
            ],
        ),
        (
            "Alerts",
            ["id", "when", "tier", "summary", "handled"],
            [
                [a.id, f"{a.created_at:%Y-%m-%d}", a.tier, a.summary, a.handled]
                for a in found.alerts
            ],
        ),
        (
            "Tickets",
            ["id", "opened", "tier", "category", "status", "department"],
            [
                [t.id, f"{t.opened_at:%Y-%m-%d}", t.tier, t.category, t.status, t.department]
                for t in found.tickets
            ],
        ),
        (
            "Messages",
            ["id", "created", "kind", "channel", "status"],
            [
                [m.id, f"{m.created_at:%Y-%m-%d %H:%M}", m.kind, m.channel, m.status]
                for m in found.messages
            ],
        ),
        (
            "Recordings",
            ["when", "channel", "seconds", "play"],
            [
                [f"{r.received_at:%Y-%m-%d %H:%M}", r.channel, r.duration_seconds, r.url]
                for r in found.recordings
            ],
        ),
    ]
    for title, headers, rows in sections:
        print(f"\n{title}")
        print_table(headers, rows)


@app.command("trend")
def trend(
    patient_id: PatientId,
    indicator: Annotated[str, typer.Argument(help="An indicator id, e.g. sbp, hba1c, weight.")],
    svg: Annotated[
        Path | None, typer.Option("--svg", help="Also write the chart to this SVG file.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    locale: Locale = "zh-CN",
) -> None:
    """PATIENT_ID's readings of INDICATOR over the years: direction and control."""
    locale = _locale(locale)
    runtime = cli_runtime()
    with Session(runtime.engine) as session:
        found = indicator_trend(
            session,
            patient_id,
            indicator,
            load_indicators(runtime.settings.indicators_file),
            locale=locale,
        )
    cli_audit("patients trend", "patients", [patient_id], str(patient_id), {"indicator": indicator})
    if svg is not None:
        try:
            svg.write_text(trend_svg(found, locale=locale), encoding="utf-8")
        except OSError as exc:
            raise ValidationFailed(f"--svg: cannot write {svg}: {exc.strerror}") from None
    if as_json:
        emit_json(found.model_dump(mode="json"))
        return
    _print_trend(found)


def _print_trend(found: Trend) -> None:
    print(f"{found.name} ({found.indicator}): {found.count} readings, {found.direction}")
    if found.control is not None:
        share = f"{found.control.in_target_share:.0%}"
        state = "controlled" if found.control.controlled else "NOT controlled"
        print(f"  {share} within target: {state}")
    print_table(
        ["when", "value", "in target"],
        [
            [
                f"{p.at:%Y-%m-%d %H:%M}",
                f"{p.value:g}",
                {True: "yes", False: "NO", None: "-"}[p.in_target],
            ]
            for p in found.points
        ],
    )


def _day(option: str, value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ValidationFailed(f"{option}: {value!r} is not a date (YYYY-MM-DD)") from None


@app.command("report")
def report(
    patient_id: PatientId,
    out: Annotated[Path, typer.Option("--out", help="FILE.pdf or FILE.html.")],
    start: Annotated[
        str | None, typer.Option("--from", help="First day (default 90 days ago).")
    ] = None,
    end: Annotated[str | None, typer.Option("--to", help="Last day (default today).")] = None,
    locale: Locale = "zh-CN",
) -> None:
    """PATIENT_ID's printable health report and stage summary (健康阶段总结) for a period:
    progress, trends with charts, alerts and how each was handled, advice, next steps."""
    locale = _locale(locale)
    if out.suffix.lower() not in (".pdf", ".html"):
        raise ValidationFailed(f"--out: {out} must end in .pdf or .html")
    last = _day("--to", end) if end else dt.datetime.now(dt.UTC).date()
    first = _day("--from", start) if start else last - dt.timedelta(days=90)
    runtime = cli_runtime()
    with Session(runtime.engine) as session:
        made = build_patient_report(
            runtime, session, patient_id, start=first, end=last, locale=locale
        )
    cli_audit("patients report", "patients", [patient_id], str(patient_id))
    content = report_pdf(made) if out.suffix.lower() == ".pdf" else report_html(made).encode()
    try:
        out.write_bytes(content)
    except OSError as exc:
        raise ValidationFailed(f"--out: cannot write {out}: {exc.strerror}") from None
    print(f"wrote {out} ({len(content):,} bytes): {first} – {last}, {len(made.trends)} trends")
