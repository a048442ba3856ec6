"""Reading and steering journeys: the service behind the journeys API and CLI.

The functions that talk to Temporal do their database work in a thread and end the
session's transaction before they await it (:func:`suifang.core.db.in_session_thread`): no
statement runs on the event loop, and no connection is held while Temporal answers.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel
from sqlmodel import Session, col, select
from temporalio.client import WorkflowUpdateFailedError
from temporalio.service import RPCError

from suifang.core.db import in_session_thread, in_thread, utcnow
from suifang.core.enums import JourneyStatus
from suifang.core.errors import NotFoundError, StartupError, ValidationFailed
from suifang.core.models import (
    Alert,
    Answer,
    Encounter,
    Enrollment,
    Message,
    Patient,
    TouchpointRecord,
)
from suifang.core.pathways import JourneyPlan, resolve_plan
from suifang.core.runtime import Runtime
from suifang.workflows.journey import PatientJourneyWorkflow
from suifang.workflows.journey_commands import (
    AnswerEvent,
    ControlEvent,
    ObservationEvent,
    RescheduleEvent,
)
from suifang.workflows.journey_core import JourneyProgress, PlannedSend
from suifang.workflows.journey_migration import MigrateEvent, MigrationReport

__all__ = [
    "JourneyDetail",
    "JourneySummary",
    "MigrationOutcome",
    "control_journey",
    "journey_detail",
    "list_journeys",
    "migrate_journeys",
    "record_observation",
    "reschedule_journey",
    "send_answer",
    "withdraw_consent",
]

_WORKFLOW_OF = sa.select(
    Enrollment.__table__.c.workflow_id,  # type: ignore[attr-defined]
    Enrollment.__table__.c.status,  # type: ignore[attr-defined]
).where(Enrollment.__table__.c.id == sa.bindparam("enrollment"))  # type: ignore[attr-defined]
_ENDED = {JourneyStatus.COMPLETED, JourneyStatus.LOST, JourneyStatus.STOPPED}


class JourneySummary(BaseModel):
    enrollment_id: int
    workflow_id: str
    patient_id: int
    patient_name: str
    pathway_id: str
    pathway_version: int
    variants: list[str]
    department: str
    risk_tier: str
    status: str
    stop_reason: str | None
    enrolled_at: dt.datetime
    ended_at: dt.datetime | None
    points: int


class TouchpointView(BaseModel):
    key: str
    day: int
    status: str
    due_at: dt.datetime
    sent_at: dt.datetime | None
    answered_at: dt.datetime | None
    detail: str | None


class AlertView(BaseModel):
    id: int
    rule_id: str
    touchpoint_key: str | None
    tier: str
    priority: str
    category: str
    summary: str
    created_at: dt.datetime
    ticket_id: int | None


class AnswerView(BaseModel):
    touchpoint_key: str | None
    question_id: str
    value: Any
    text: str | None
    invalid: str | None
    late: bool
    received_at: dt.datetime


class JourneyDetail(JourneySummary):
    risk_score: float | None
    risk_method: str | None = None
    """How the tier was chosen: LACE, the pathway's criteria, a plugin; "(overridden)" when
    intake gave the tier."""
    risk_reasons: list[str]
    groups: list[str]
    touchpoints: list[TouchpointView]
    alerts: list[AlertView]
    answers: list[AnswerView]
    messages: int
    progress: JourneyProgress | None
    """Live from the workflow; None when Temporal cannot be reached."""
    remaining: list[PlannedSend] = []
    """The rest of the plan, dated, from the workflow (its version's plan, its position)."""


def _summary(enrollment: Enrollment, patient: Patient) -> dict[str, Any]:
    return {
        "enrollment_id": enrollment.id,
        "workflow_id": enrollment.workflow_id,
        "patient_id": enrollment.patient_id,
        "patient_name": patient.name,
        "pathway_id": enrollment.pathway_id,
        "pathway_version": enrollment.pathway_version,
        "variants": enrollment.variants,
        "department": enrollment.department_code,
        "risk_tier": enrollment.risk_tier,
        "status": enrollment.status,
        "stop_reason": enrollment.stop_reason,
        "enrolled_at": enrollment.enrolled_at,
        "ended_at": enrollment.ended_at,
        "points": enrollment.points,
    }


def list_journeys(
    session: Session,
    *,
    status: str | None = None,
    pathway: str | None = None,
    department: str | None = None,
    departments: list[str] | None = None,
    patient_id: int | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[JourneySummary]:
    """Journeys, newest first; ``departments`` restricts to those (department scoping)."""
    query = select(Enrollment, Patient).join(Patient, col(Patient.id) == Enrollment.patient_id)
    if status:
        query = query.where(Enrollment.status == status)
    if pathway:
        query = query.where(Enrollment.pathway_id == pathway)
    if department:
        query = query.where(Enrollment.department_code == department)
    if departments is not None:
        query = query.where(col(Enrollment.department_code).in_(departments))
    if patient_id is not None:
        query = query.where(Enrollment.patient_id == patient_id)
    query = query.order_by(col(Enrollment.id).desc()).offset(offset).limit(limit)
    return [JourneySummary(**_summary(e, p)) for e, p in session.exec(query).all()]


def get_enrollment(session: Session, enrollment_id: int) -> Enrollment:
    enrollment = session.get(Enrollment, enrollment_id)
    if enrollment is None:
        raise NotFoundError(f"no journey {enrollment_id}")
    return enrollment


async def journey_detail(runtime: Runtime, session: Session, enrollment_id: int) -> JourneyDetail:
    detail = await in_session_thread(session, _stored_detail, enrollment_id)
    if detail.status == JourneyStatus.PENDING:
        return detail
    try:
        client = await runtime.client()
        handle = client.get_workflow_handle_for(PatientJourneyWorkflow.run, detail.workflow_id)
        progress = await handle.query(PatientJourneyWorkflow.progress)
        remaining = await handle.query(PatientJourneyWorkflow.remaining)
    except (StartupError, RPCError):
        return detail
    return detail.model_copy(update={"progress": progress, "remaining": remaining})


def _stored_detail(session: Session, enrollment_id: int) -> JourneyDetail:
    """The journey as the database has it (its progress is the workflow's)."""
    enrollment = get_enrollment(session, enrollment_id)
    patient = session.get(Patient, enrollment.patient_id)
    assert patient is not None
    touchpoints = session.exec(
        select(TouchpointRecord)
        .where(TouchpointRecord.enrollment_id == enrollment_id)
        .order_by(col(TouchpointRecord.due_at))
    ).all()
    alerts = session.exec(
        select(Alert).where(Alert.enrollment_id == enrollment_id).order_by(col(Alert.id))
    ).all()
    answers = session.exec(
        select(Answer).where(Answer.enrollment_id == enrollment_id).order_by(col(Answer.id))
    ).all()
    messages = len(
        session.exec(select(Message.id).where(Message.enrollment_id == enrollment_id)).all()
    )
    locale = patient.locale
    return JourneyDetail(
        **_summary(enrollment, patient),
        risk_score=enrollment.risk_score,
        risk_method=enrollment.risk_method,
        risk_reasons=enrollment.risk_reasons,
        groups=enrollment.groups,
        touchpoints=[TouchpointView.model_validate(t, from_attributes=True) for t in touchpoints],
        alerts=[
            AlertView(
                id=a.id,  # type: ignore[arg-type]
                rule_id=a.rule_id,
                touchpoint_key=a.touchpoint_key,
                tier=a.tier,
                priority=a.priority,
                category=a.category,
                summary=a.summary_en if locale == "en" else a.summary_zh,
                created_at=a.created_at,
                ticket_id=a.ticket_id,
            )
            for a in alerts
        ],
        answers=[AnswerView.model_validate(a, from_attributes=True) for a in answers],
        messages=messages,
        progress=None,
    )


async def _handle(runtime: Runtime, session: Session, enrollment_id: int) -> Any:
    # Two columns in a prepared statement, not the enrollment through the ORM: every answer
    # of every patient comes through here.
    found = await in_session_thread(session, _workflow_of, enrollment_id)
    if found is None:
        raise NotFoundError(f"no journey {enrollment_id}")
    workflow_id, status = found
    if status in _ENDED:
        raise ValidationFailed(f"journey {enrollment_id} has ended ({status})")
    if status == JourneyStatus.PENDING:
        raise ValidationFailed(f"journey {enrollment_id} has not started yet; retry its intake")
    client = await runtime.client()
    return client.get_workflow_handle_for(PatientJourneyWorkflow.run, workflow_id)


def _workflow_of(session: Session, enrollment_id: int) -> tuple[str, str] | None:
    row = session.connection().execute(_WORKFLOW_OF, {"enrollment": enrollment_id}).first()
    return None if row is None else (row.workflow_id, row.status)


async def send_answer(
    runtime: Runtime, session: Session, enrollment_id: int, answer: AnswerEvent
) -> None:
    """Deliver answers (from a channel, or entered by staff for the patient) to the journey."""
    if not answer.answers and not (answer.text or "").strip():
        raise ValidationFailed("give answers or a text")
    handle = await _handle(runtime, session, enrollment_id)
    await handle.signal(PatientJourneyWorkflow.answer, answer)


async def record_observation(
    runtime: Runtime, session: Session, enrollment_id: int, observation: ObservationEvent
) -> None:
    handle = await _handle(runtime, session, enrollment_id)
    await handle.signal(PatientJourneyWorkflow.observe, observation)


async def control_journey(
    runtime: Runtime, session: Session, enrollment_id: int, event: ControlEvent
) -> str:
    """Pause, resume, stop, or report readmission/death/do-not-contact; refused if invalid.

    A readmission reported after the journey ended (completed, or lost after missed
    touchpoints) is still recorded on the enrollment: the 30-day readmission KPI needs it,
    and there is nothing left for the journey to stop.
    """
    if event.at is not None and event.at.tzinfo is None:
        raise ValidationFailed("at: give a timezone, e.g. 2026-11-20T10:00+08:00")
    if event.action == "readmitted" and await in_session_thread(
        session, _readmitted_after_the_end, enrollment_id, event
    ):
        return event.action
    handle = await _handle(runtime, session, enrollment_id)
    try:
        await handle.execute_update(PatientJourneyWorkflow.control, event)
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause.message if exc.cause and hasattr(exc.cause, "message") else str(exc)
        raise ValidationFailed(f"journey {enrollment_id}: cannot {event.action}: {cause}") from None
    return event.action


def _readmitted_after_the_end(session: Session, enrollment_id: int, event: ControlEvent) -> bool:
    """Check a reported readmission; if the journey has ended, record it on the enrollment
    (True: nothing left for the workflow to do)."""
    enrollment = get_enrollment(session, enrollment_id)
    encounter = session.get(Encounter, enrollment.encounter_id)
    if event.at is not None and encounter is not None and event.at < encounter.discharged_at:
        raise ValidationFailed(
            f"at: the readmission ({event.at.isoformat()}) is before the discharge "
            f"({encounter.discharged_at.isoformat()})"
        )
    if enrollment.status not in _ENDED:
        return False
    if enrollment.readmitted_at is None:
        enrollment.readmitted_at = event.at or utcnow()
        session.add(enrollment)
    return True


async def reschedule_journey(
    runtime: Runtime, session: Session, enrollment_id: int, event: RescheduleEvent
) -> None:
    handle = await _handle(runtime, session, enrollment_id)
    try:
        await handle.execute_update(PatientJourneyWorkflow.reschedule, event)
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause.message if exc.cause and hasattr(exc.cause, "message") else str(exc)
        raise ValidationFailed(f"journey {enrollment_id}: cannot reschedule: {cause}") from None


async def withdraw_consent(
    runtime: Runtime,
    session: Session,
    patient_id: int,
    *,
    source: str,
    reason: str = "do_not_contact",
) -> list[int]:
    """Record do-not-contact at once (every send checks it) and stop every active journey."""
    stopped = []
    for enrollment_id in await in_session_thread(session, _record_withdrawal, patient_id, source):
        try:
            await control_journey(
                runtime,
                session,
                enrollment_id,
                ControlEvent(action="do_not_contact", reason=reason),  # type: ignore[arg-type]
            )
            stopped.append(enrollment_id)
        except ValidationFailed:
            continue  # ended meanwhile
    return stopped


def _record_withdrawal(session: Session, patient_id: int, source: str) -> list[int]:
    """Do-not-contact on the patient; the ids of the journeys still to stop."""
    patient = session.get(Patient, patient_id)
    if patient is None:
        raise NotFoundError(f"no patient {patient_id}")
    now = utcnow()
    patient.do_not_contact = True
    patient.do_not_contact_at = now
    patient.do_not_contact_source = source
    patient.contact_consent = False
    patient.consent_at = now
    patient.consent_source = source
    session.add(patient)
    session.commit()
    return list(
        session.exec(
            select(Enrollment.id).where(
                Enrollment.patient_id == patient_id,
                col(Enrollment.status).in_([JourneyStatus.ACTIVE, JourneyStatus.PAUSED]),
            )
        ).all()
    )  # type: ignore[arg-type]


class MigrationOutcome(BaseModel):
    """One running journey's migration: what changes, or why it could not move."""

    enrollment_id: int
    report: MigrationReport | None = None
    error: str | None = None


async def migrate_journeys(
    runtime: Runtime, pathway_id: str, from_version: int, to_version: int, *, dry_run: bool
) -> list[MigrationOutcome]:
    """Move every running journey on ``pathway_id`` v``from_version`` to ``to_version`` at its
    current position (or, with ``dry_run``, say what would change). Each journey's plan is the
    new version resolved for its own risk tier and groups."""
    if to_version <= from_version:
        raise ValidationFailed(f"--to {to_version} must be a newer version than --from")
    catalog = runtime.catalog
    catalog.get(pathway_id, from_version)  # a clear 404 for a version that never existed
    target = catalog.get(pathway_id, to_version)
    journeys = await in_thread(_running_on, runtime, pathway_id, from_version)
    client = await runtime.client()
    outcomes = []
    for enrollment_id, workflow_id, tier, groups in journeys:
        event = MigrateEvent(plan=resolve_plan(target, tier, groups))
        handle = client.get_workflow_handle_for(PatientJourneyWorkflow.run, workflow_id)
        try:
            if dry_run:
                report = await handle.query(PatientJourneyWorkflow.migration_preview, event)
            else:
                report = await handle.execute_update(PatientJourneyWorkflow.migrate, event)
        except WorkflowUpdateFailedError as exc:
            cause = exc.cause.message if exc.cause and hasattr(exc.cause, "message") else str(exc)
            outcomes.append(MigrationOutcome(enrollment_id=enrollment_id, error=cause))
            continue
        except RPCError as exc:
            outcomes.append(MigrationOutcome(enrollment_id=enrollment_id, error=exc.message))
            continue
        if not dry_run:
            await in_thread(_record_migration, runtime, enrollment_id, event.plan)
        outcomes.append(MigrationOutcome(enrollment_id=enrollment_id, report=report))
    return outcomes


def _running_on(
    runtime: Runtime, pathway_id: str, version: int
) -> list[tuple[int, str, str, list[str]]]:
    with Session(runtime.engine) as session:
        running = session.exec(
            select(Enrollment)
            .where(
                Enrollment.pathway_id == pathway_id,
                Enrollment.pathway_version == version,
                col(Enrollment.status).in_([JourneyStatus.ACTIVE, JourneyStatus.PAUSED]),
            )
            .order_by(col(Enrollment.id))
        ).all()
        return [(e.id, e.workflow_id, e.risk_tier, list(e.groups)) for e in running]  # type: ignore[misc]


def _record_migration(runtime: Runtime, enrollment_id: int, plan: JourneyPlan) -> None:
    with Session(runtime.engine) as session:
        enrollment = session.get(Enrollment, enrollment_id)
        if enrollment is not None:
            enrollment.pathway_version = plan.pathway_version
            enrollment.variants = plan.variants
            session.add(enrollment)
            session.commit()
