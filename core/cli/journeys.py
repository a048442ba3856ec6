"""``suifang journeys``: enroll discharges and steer the journeys they start."""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from sqlmodel import Session, select

from suifang.core.cli.context import (
    cli_actor,
    cli_audit,
    cli_run,
    cli_runtime,
    local_time,
    zone_name,
)
from suifang.core.cli.output import emit_json, print_kv, print_table
from suifang.core.enums import JourneyStatus
from suifang.core.errors import ValidationFailed
from suifang.core.models import Enrollment
from suifang.core.timestamps import plausible_instant
from suifang.workflows import journey_service
from suifang.workflows.intake import DischargeIn, register_discharge, resume_enrollment
from suifang.workflows.journey_commands import AnswerEvent, ControlEvent, RescheduleEvent

app = typer.Typer(
    help="Journeys: enroll, list, inspect, answer, pause/resume/stop.", no_args_is_help=True
)


def _read_json(source: str) -> Any:
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except OSError as exc:
        raise ValidationFailed(f"{source}: cannot read: {exc.strerror}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValidationFailed(f"{source}:{exc.lineno}: not valid JSON: {exc.msg}") from None


def _validation_message(source: str, exc: ValidationError) -> str:
    problems = "; ".join(
        f"{'.'.join(str(p) for p in e['loc'])}: {e['msg'].removeprefix('Value error, ')}"
        for e in exc.errors()
    )
    return f"{source}: {problems}"


@app.command("enroll")
def enroll(
    source: Annotated[
        str, typer.Argument(help="JSON file with patient, encounter, pathway; - for stdin.")
    ],
    idempotency_key: Annotated[str | None, typer.Option(help="Retry-safe key.")] = None,
    time_scale: Annotated[
        float | None, typer.Option(help="Pathway days per real day (demo: 1440).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Register a discharge and start its journey (same JSON as POST /intake/discharges)."""
    data = _read_json(source)
    if time_scale is not None and isinstance(data, dict):
        data["time_scale"] = time_scale
    try:
        discharge = DischargeIn.model_validate(data)
    except ValidationError as exc:
        raise ValidationFailed(_validation_message(source, exc)) from None
    enrollment = cli_run(
        register_discharge(cli_runtime(), discharge, idempotency_key=idempotency_key)
    )
    if as_json:
        emit_json(enrollment)
        return
    variants = " ".join(enrollment.variants)
    score = "" if enrollment.risk_score is None else f" (score {enrollment.risk_score:g})"
    print_kv(
        [
            ("journey", f"{enrollment.enrollment_id} ({enrollment.workflow_id})"),
            ("pathway", f"{enrollment.pathway_id} v{enrollment.pathway_version} {variants}"),
            ("risk", f"{enrollment.risk_tier}{score}"),
            ("status", enrollment.status + ("" if enrollment.created else " (already enrolled)")),
        ]
    )
    print_table(
        ["TOUCHPOINT", "DAY", f"DUE ({zone_name()})"],
        [(s.key, s.day, local_time(s.due_at)) for s in enrollment.schedule],
    )


@app.command("list")
def list_journeys(
    status: Annotated[JourneyStatus | None, typer.Option(help="Only this status.")] = None,
    pathway: Annotated[str | None, typer.Option(help="Only this pathway.")] = None,
    department: Annotated[str | None, typer.Option(help="Only this department.")] = None,
    patient: Annotated[int | None, typer.Option(help="Only this patient id.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Journeys, newest first."""
    with Session(cli_runtime().engine) as session:
        rows = journey_service.list_journeys(
            session,
            status=status,
            pathway=pathway,
            department=department,
            patient_id=patient,
            limit=limit,
        )
    cli_audit("journeys list", "journeys", [r.patient_id for r in rows])
    if as_json:
        emit_json(rows)
        return
    print_table(
        ["ID", "PATIENT", "PATHWAY", "DEPARTMENT", "RISK", "STATUS", "POINTS", "ENROLLED"],
        [
            (
                r.enrollment_id,
                r.patient_name,
                f"{r.pathway_id} v{r.pathway_version}",
                r.department,
                r.risk_tier,
                r.status + (f" ({r.stop_reason})" if r.stop_reason else ""),
                r.points,
                local_time(r.enrolled_at),
            )
            for r in rows
        ],
    )


@app.command("show")
def show(
    enrollment_id: Annotated[int, typer.Argument(help="Journey (enrollment) id.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """One journey: touchpoints, answers, alerts and live progress."""
    runtime = cli_runtime()
    with Session(runtime.engine) as session:
        detail = cli_run(journey_service.journey_detail(runtime, session, enrollment_id))
    cli_audit("journeys show", "journeys", [detail.patient_id], str(enrollment_id))
    if as_json:
        emit_json(detail)
        return
    progress = detail.progress
    print_kv(
        [
            ("journey", f"{detail.enrollment_id} ({detail.workflow_id})"),
            ("patient", f"{detail.patient_name} (id {detail.patient_id})"),
            (
                "pathway",
                f"{detail.pathway_id} v{detail.pathway_version} {' '.join(detail.variants)}",
            ),
            (
                "risk",
                f"{detail.risk_tier} ({detail.risk_method or 'assessed'}): "
                + "; ".join(detail.risk_reasons),
            ),
            ("status", detail.status + (f" ({detail.stop_reason})" if detail.stop_reason else "")),
            (
                "next",
                f"{progress.next_touchpoint} at {local_time(progress.next_due_at)} {zone_name()}"
                if progress and progress.next_due_at
                else "-",
            ),
            ("points", detail.points),
        ]
    )
    print("\ntouchpoints")
    print_table(
        ["KEY", "DAY", "STATUS", f"DUE ({zone_name()})", "DETAIL"],
        [
            (t.key, t.day, t.status, local_time(t.due_at), t.detail or "")
            for t in detail.touchpoints
        ],
    )
    if detail.remaining:
        print("\nplan ahead")
        print_table(
            ["KEY", "DAY", f"DUE ({zone_name()})"],
            [(r.key, r.day, local_time(r.due_at)) for r in detail.remaining],
        )
    print("\nanswers")
    print_table(
        ["TOUCHPOINT", "QUESTION", "ANSWER"],
        [
            (a.touchpoint_key or "", a.question_id, a.text or a.invalid or a.value)
            for a in detail.answers
        ],
    )
    print("\nalerts")
    print_table(
        ["ID", "TIER", "PRIORITY", "RULE", "SUMMARY"],
        [(a.id, a.tier, a.priority, a.rule_id, a.summary) for a in detail.alerts],
    )


@app.command("answer")
def answer(
    enrollment_id: Annotated[int, typer.Argument(help="Journey id.")],
    answers: Annotated[
        list[str] | None, typer.Argument(help="question=answer pairs, e.g. chest_pain=yes.")
    ] = None,
    text: Annotated[str | None, typer.Option(help="A free-text reply.")] = None,
    touchpoint: Annotated[
        str | None, typer.Option(help="Touchpoint key (default: the open one).")
    ] = None,
) -> None:
    """Answer on the patient's behalf (as if they had replied)."""
    parsed: dict[str, str] = {}
    for pair in answers or []:
        if "=" not in pair:
            raise ValidationFailed(
                f"{pair!r}: write answers as question=answer, e.g. chest_pain=no"
            )
        key, value = pair.split("=", 1)
        parsed[key.strip()] = value.strip()
    runtime = cli_runtime()
    event = AnswerEvent(
        answers=parsed, text=text, touchpoint_key=touchpoint, source=cli_actor(), channel="cli"
    )
    with Session(runtime.engine) as session:
        cli_run(journey_service.send_answer(runtime, session, enrollment_id, event))
    print(f"journey {enrollment_id}: answer delivered")


def _control(
    enrollment_id: int, action: str, reason: str | None, at: dt.datetime | None = None
) -> None:
    runtime = cli_runtime()
    with Session(runtime.engine) as session:
        cli_run(
            journey_service.control_journey(
                runtime,
                session,
                enrollment_id,
                ControlEvent(action=action, reason=reason, at=at),  # type: ignore[arg-type]
            )
        )
        patient_id = journey_service.get_enrollment(session, enrollment_id).patient_id
    cli_audit(f"journeys {action}", "journeys", [patient_id], str(enrollment_id))
    print(f"journey {enrollment_id}: {action} accepted")


@app.command("pause")
def pause(enrollment_id: int, reason: Annotated[str | None, typer.Option()] = None) -> None:
    """Pause: nothing is sent until resumed; the rest of the schedule shifts by the pause."""
    _control(enrollment_id, "pause", reason)


@app.command("resume")
def resume(enrollment_id: int) -> None:
    """Resume a paused journey."""
    _control(enrollment_id, "resume", None)


@app.command("stop")
def stop(enrollment_id: int, reason: Annotated[str | None, typer.Option()] = None) -> None:
    """Stop the journey for good."""
    _control(enrollment_id, "stop", reason)


def _instant(option: str, text: str) -> dt.datetime:
    """An option's ISO time, checked like the API's (aware, a plausible year)."""
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValidationFailed(f"{option}: {text!r} is not an ISO time") from None
    try:
        return plausible_instant(when)
    except ValueError as exc:
        raise ValidationFailed(f"{option}: {exc}") from None


@app.command("readmitted")
def readmitted(
    enrollment_id: int,
    at: Annotated[
        str | None, typer.Option(help="When (ISO time with timezone); default: now.")
    ] = None,
) -> None:
    """Record a readmission: the journey stops (an ended journey just records it)."""
    when = _instant("--at", at) if at else None
    _control(enrollment_id, "readmitted", None, when)


@app.command("deceased")
def deceased(enrollment_id: int) -> None:
    """Record the patient's death: all contact stops."""
    _control(enrollment_id, "deceased", None)


@app.command("reschedule")
def reschedule(
    enrollment_id: int,
    shift_days: Annotated[
        float | None, typer.Option(help="Move the rest of the schedule by N days.")
    ] = None,
    next_due: Annotated[str | None, typer.Option(help="ISO time for the next touchpoint.")] = None,
) -> None:
    """Move the remaining schedule, or just the next touchpoint."""
    due = _instant("--next-due", next_due) if next_due else None
    runtime = cli_runtime()
    event = RescheduleEvent(
        shift=dt.timedelta(days=shift_days) if shift_days else None, next_due=due
    )
    with Session(runtime.engine) as session:
        cli_run(journey_service.reschedule_journey(runtime, session, enrollment_id, event))
    print(f"journey {enrollment_id}: rescheduled")


@app.command("start-pending")
def start_pending() -> None:
    """Start the journeys of enrollments saved while Temporal was unreachable."""
    runtime = cli_runtime()
    with Session(runtime.engine) as session:
        pending = session.exec(
            select(Enrollment).where(Enrollment.status == JourneyStatus.PENDING)
        ).all()
        for enrollment in pending:
            cli_run(resume_enrollment(runtime, session, enrollment))
            print(f"journey {enrollment.id}: started")
    if not pending:
        print("no pending enrollments")
