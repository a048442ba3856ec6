"""The department-facing ticket service: open tickets, list queues, act on tickets.

Every ticket is a :class:`~suifang.tickets.workflow.FeedbackTicketWorkflow`, the single writer
of its state; this service creates the row and the workflow, reads the read model for queues
(always filtered by the departments the caller may see), and sends department actions to the
workflow as validated updates.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import uuid
from typing import Any

from pydantic import BaseModel, Field
from sqlmodel import Session, col, select
from temporalio.client import WorkflowExecutionStatus, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from suifang.core.db import in_session_thread, in_thread, utcnow
from suifang.core.delivery import NOTICE_CHANNELS, DeliveryRequest, deliver
from suifang.core.enums import TicketSource, TicketStatus
from suifang.core.errors import NotFoundError, ValidationFailed
from suifang.core.models import (
    Department,
    Enrollment,
    Patient,
    PraiseRecord,
    Ticket,
    TicketEvent,
    TicketNote,
)
from suifang.core.rendering import MessageContext, MessageRenderer, patient_context
from suifang.core.runtime import Runtime
from suifang.core.triage import TriageRequest, TriageResult
from suifang.tickets.core import ActorAction, PatientEvent
from suifang.tickets.opening import TicketStart, build_ticket
from suifang.tickets.praise import record_praise
from suifang.tickets.workflow import (
    FeedbackTicketWorkflow,
    TicketInput,
    TicketResult,
)

__all__ = [
    "PatientMessageOutcome",
    "TicketDetail",
    "TicketIn",
    "TicketSummary",
    "act_on_ticket",
    "list_tickets",
    "open_ticket",
    "patient_event",
    "receive_patient_message",
    "ticket_detail",
]


class TicketIn(BaseModel):
    """A ticket opened by staff or an integrator: a patient's message, complaint or suggestion."""

    patient_id: int
    text: str = Field(min_length=1, max_length=4000)
    source: TicketSource = TicketSource.PATIENT_MESSAGE
    enrollment_id: int | None = None
    category: str | None = Field(None, max_length=32, description="Skip classification.")
    department: str | None = Field(None, max_length=64, description="Skip routing.")
    idempotency_key: str | None = Field(None, max_length=160)


class TicketSummary(BaseModel):
    id: int
    source: str
    patient_id: int
    enrollment_id: int | None
    category: str
    department: str | None
    tier: str
    priority: str
    status: str
    assignee: str | None
    first_response_due: dt.datetime | None
    resolution_due: dt.datetime | None
    breached: bool
    opened_at: dt.datetime
    summary: str


class TicketEventView(BaseModel):
    seq: int
    at: dt.datetime
    actor: str
    action: str
    from_status: str | None
    to_status: str | None
    reason: str | None
    detail: dict[str, Any]


class TicketNoteView(BaseModel):
    seq: int
    author: str
    visible_to_patient: bool
    body: str
    created_at: dt.datetime


class TicketDetail(TicketSummary):
    workflow_id: str
    parent_ticket_id: int | None
    red_flags: list[str]
    paging: str | None = None
    """paging, acknowledged, unanswered or notified (an urgent ticket's on-call notice)."""
    acknowledged_at: dt.datetime | None = None
    acknowledged_by: str | None = None
    first_response_at: dt.datetime | None
    first_response_breached_at: dt.datetime | None
    resolved_at: dt.datetime | None
    resolution_breached_at: dt.datetime | None
    sla_paused: bool
    reopen_count: int
    satisfaction: int | None
    closed_at: dt.datetime | None
    events: list[TicketEventView]
    notes: list[TicketNoteView]


def _summary(ticket: Ticket) -> dict[str, Any]:
    return {
        "id": ticket.id,
        "source": ticket.source,
        "patient_id": ticket.patient_id,
        "enrollment_id": ticket.enrollment_id,
        "category": ticket.category,
        "department": ticket.department_code,
        "tier": ticket.tier,
        "priority": ticket.priority,
        "status": ticket.status,
        "assignee": ticket.assignee,
        "first_response_due": ticket.first_response_due,
        "resolution_due": ticket.resolution_due,
        "breached": ticket.breached,
        "opened_at": ticket.opened_at,
        "summary": ticket.summary,
    }


def _triage_request(
    session: Session, patient: Patient, text: str, source: TicketSource, enrollment_id: int | None
) -> TriageRequest:
    """What the triage needs to know of the patient: language, pathway, department."""
    enrollment = session.get(Enrollment, enrollment_id) if enrollment_id is not None else None
    if enrollment is None:
        enrollment = session.exec(
            select(Enrollment)
            .where(Enrollment.patient_id == patient.id)
            .order_by(col(Enrollment.id).desc())
        ).first()
    return TriageRequest(
        text=text,
        locale=patient.locale,
        source=source,
        pathway_id=enrollment.pathway_id if enrollment else None,
        discharge_department=enrollment.department_code if enrollment else None,
    )


async def open_ticket(
    runtime: Runtime,
    data: TicketIn,
    *,
    actor: str = "api",
    triage: TriageResult | None = None,
) -> TicketSummary:
    """Classify the text (L1 triage) unless ``triage`` is given, create the ticket and start
    its workflow.

    The database work runs in threads, and no session is open while triage (maybe an AI
    call) or Temporal is awaited."""
    request = await in_thread(_check_ticket_request, runtime, data)
    if triage is None:
        triage = await runtime.plugins.triage_async(request)
    if data.category:
        triage = triage.model_copy(update={"category": data.category})
    start = await in_thread(_build_ticket_row, runtime, data, triage)
    client = await runtime.client()
    with contextlib.suppress(WorkflowAlreadyStartedError):  # an earlier try started it
        await client.start_workflow(
            FeedbackTicketWorkflow.run,
            TicketInput(setup=start.setup),
            id=start.workflow_id,
            task_queue=runtime.settings.task_queue,
        )
    return await in_thread(_ticket_summary, runtime, start.ticket_id)


def _check_ticket_request(runtime: Runtime, data: TicketIn) -> TriageRequest:
    """What triage needs to know of the ticket's patient, once the patient and journey are
    found to exist and belong together."""
    with Session(runtime.engine, expire_on_commit=False) as session:
        patient = session.get(Patient, data.patient_id)
        if patient is None:
            raise NotFoundError(f"no patient {data.patient_id}")
        if data.enrollment_id is not None:
            enrollment = session.get(Enrollment, data.enrollment_id)
            if enrollment is None or enrollment.patient_id != data.patient_id:
                raise ValidationFailed(
                    f"enrollment_id: journey {data.enrollment_id} is not this patient's"
                )
        return _triage_request(session, patient, data.text, data.source, data.enrollment_id)


def _build_ticket_row(runtime: Runtime, data: TicketIn, triage: TriageResult) -> TicketStart:
    with Session(runtime.engine, expire_on_commit=False) as session:
        return build_ticket(
            session,
            patient_id=data.patient_id,
            source=data.source,
            summary=data.text,
            triage=triage,
            opened_at=utcnow(),
            enrollment_id=data.enrollment_id,
            department=data.department,
            idempotency_key=data.idempotency_key,
        )


def _ticket_summary(runtime: Runtime, ticket_id: int) -> TicketSummary:
    with Session(runtime.engine, expire_on_commit=False) as session:
        ticket = session.get(Ticket, ticket_id)
        assert ticket is not None
        return TicketSummary(**_summary(ticket))


def list_tickets(
    session: Session,
    *,
    departments: list[str] | None,
    department: str | None = None,
    status: str | None = None,
    tier: str | None = None,
    assignee: str | None = None,
    due_before: dt.datetime | None = None,
    breached: bool | None = None,
    open_only: bool = False,
    patient_id: int | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[TicketSummary]:
    """A department queue. ``departments`` (None = all) scopes the query itself, not the caller."""
    query = select(Ticket)
    if departments is not None:
        query = query.where(col(Ticket.department_code).in_(departments))
    if department:
        query = query.where(Ticket.department_code == department)
    if status:
        query = query.where(Ticket.status == status)
    if tier:
        query = query.where(Ticket.tier == tier)
    if assignee:
        query = query.where(Ticket.assignee == assignee)
    if breached is not None:
        query = query.where(Ticket.breached == breached)
    if open_only:
        query = query.where(col(Ticket.status).not_in([TicketStatus.RESOLVED, TicketStatus.CLOSED]))
    if patient_id is not None:
        query = query.where(Ticket.patient_id == patient_id)
    if due_before is not None:
        query = query.where(
            (col(Ticket.first_response_due) <= due_before)
            | (col(Ticket.resolution_due) <= due_before)
        )
    order = [col(Ticket.resolution_due).is_(None), col(Ticket.resolution_due), col(Ticket.id)]
    rows = session.exec(query.order_by(*order).offset(offset).limit(limit)).all()
    return [TicketSummary(**_summary(t)) for t in rows]


def get_ticket(session: Session, ticket_id: int, departments: list[str] | None = None) -> Ticket:
    ticket = session.get(Ticket, ticket_id)
    if ticket is None or (departments is not None and ticket.department_code not in departments):
        # Out of scope looks exactly like missing: no probing for other departments' tickets.
        raise NotFoundError(f"no ticket {ticket_id}")
    return ticket


def ticket_detail(
    session: Session, ticket_id: int, departments: list[str] | None = None
) -> TicketDetail:
    ticket = get_ticket(session, ticket_id, departments)
    events = session.exec(
        select(TicketEvent).where(TicketEvent.ticket_id == ticket_id).order_by(col(TicketEvent.seq))
    ).all()
    notes = session.exec(
        select(TicketNote).where(TicketNote.ticket_id == ticket_id).order_by(col(TicketNote.seq))
    ).all()
    return TicketDetail(
        **_summary(ticket),
        workflow_id=ticket.workflow_id,
        parent_ticket_id=ticket.parent_ticket_id,
        red_flags=ticket.red_flags,
        paging=ticket.paging,
        acknowledged_at=ticket.acknowledged_at,
        acknowledged_by=ticket.acknowledged_by,
        first_response_at=ticket.first_response_at,
        first_response_breached_at=ticket.first_response_breached_at,
        resolved_at=ticket.resolved_at,
        resolution_breached_at=ticket.resolution_breached_at,
        sla_paused=ticket.sla_paused,
        reopen_count=ticket.reopen_count,
        satisfaction=ticket.satisfaction,
        closed_at=ticket.closed_at,
        events=[TicketEventView.model_validate(e, from_attributes=True) for e in events],
        notes=[TicketNoteView.model_validate(n, from_attributes=True) for n in notes],
    )


async def _deliver(
    runtime: Runtime, ticket: tuple[int, str], event: ActorAction | PatientEvent
) -> None:
    """Hand ``event`` to the ticket's workflow; a closed ticket's workflow is started again."""
    ticket_id, workflow_id = ticket
    client = await runtime.client()
    handle = client.get_workflow_handle_for(FeedbackTicketWorkflow.run, workflow_id)
    description = await handle.describe()
    if description.status == WorkflowExecutionStatus.RUNNING:
        if isinstance(event, PatientEvent):
            await handle.signal(FeedbackTicketWorkflow.patient, event)
            return
        try:
            await handle.execute_update(FeedbackTicketWorkflow.act, event)
        except WorkflowUpdateFailedError as exc:
            cause = getattr(exc.cause, "message", None) or str(exc)
            raise ValidationFailed(f"ticket {ticket_id}: cannot {event.action}: {cause}") from None
        return
    # Closed: the last run's result holds the state; a new run picks it up with this event.
    previous: TicketResult = await handle.result()
    if isinstance(event, ActorAction) and event.action != "reopen":
        raise ValidationFailed(
            f"ticket {ticket_id}: cannot {event.action}: the ticket is closed (reopen it first)"
        )
    await client.start_workflow(
        FeedbackTicketWorkflow.run,
        TicketInput(
            setup=previous.setup,
            state=previous.state,
            first_event=event,
        ),
        id=workflow_id,
        task_queue=runtime.settings.task_queue,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
    )


async def act_on_ticket(
    runtime: Runtime,
    session: Session,
    ticket_id: int,
    action: ActorAction,
    *,
    departments: list[str] | None = None,
) -> TicketDetail:
    """Send a department action to the ticket's workflow; refused with a reason if invalid."""

    def check(session: Session) -> tuple[int, str]:
        ticket = get_ticket(session, ticket_id, departments)
        if action.department is not None and session.get(Department, action.department) is None:
            raise ValidationFailed(f"department: unknown department {action.department!r}")
        return ticket_id, ticket.workflow_id

    def detail(session: Session) -> TicketDetail:
        session.expire_all()  # the workflow has just written the ticket
        return ticket_detail(session, ticket_id)

    await _deliver(runtime, await in_session_thread(session, check), action)
    return await in_session_thread(session, detail)


async def patient_event(
    runtime: Runtime, session: Session, ticket_id: int, event: PatientEvent
) -> None:
    """The patient's reply or satisfaction score (from a channel or an integrator)."""
    await _deliver(runtime, await in_session_thread(session, _workflow_of, ticket_id), event)


def _workflow_of(session: Session, ticket_id: int) -> tuple[int, str]:
    return ticket_id, get_ticket(session, ticket_id).workflow_id


class PatientMessageOutcome(BaseModel):
    """What became of a message a patient sent outside a journey: a ticket, thanks, or —
    for a reply with nothing to act on ("没有", "ok") — neither."""

    ticket_id: int | None = None
    praise_id: int | None = None


async def receive_patient_message(
    runtime: Runtime,
    *,
    patient_id: int,
    text: str,
    enrollment_id: int | None = None,
    key: str | None = None,
    channel: str | None = None,
) -> PatientMessageOutcome:
    """Triage a patient's own message: thanks are recorded for the department and answered
    with a thank-you; everything else becomes a ticket (``key`` makes it idempotent)."""

    def triage_request() -> TriageRequest:
        with Session(runtime.engine, expire_on_commit=False) as session:
            patient = session.get(Patient, patient_id)
            if patient is None:
                raise NotFoundError(f"no patient {patient_id}")
            return _triage_request(
                session, patient, text, TicketSource.PATIENT_MESSAGE, enrollment_id
            )

    def thanks() -> tuple[PraiseRecord, bool, str, MessageContext, list[str]]:
        """The praise, recorded once, and what the thank-you needs."""
        with Session(runtime.engine, expire_on_commit=False) as session:
            patient = session.get(Patient, patient_id)
            assert patient is not None
            department = session.get(Department, request.discharge_department or "")
            record, created = record_praise(
                session,
                event_key=key or f"praise:{patient_id}:{uuid.uuid4().hex}",
                patient_id=patient_id,
                text=text,
                received_at=utcnow(),
                department=request.discharge_department,
                enrollment_id=enrollment_id,
            )
            locale = patient.locale
            context = patient_context(
                patient,
                department,
                hospital=runtime.settings.hospital_name,
                today=utcnow().date(),
            )
            return record, created, locale, context, list(patient.preferred_channels)

    # No session is open while triage (maybe an AI call) or a channel is awaited.
    request = await in_thread(triage_request)
    triage = await runtime.plugins.triage_async(request)
    if triage.intent == "nothing":
        return PatientMessageOutcome()
    if triage.intent != "praise":
        summary = await open_ticket(
            runtime,
            TicketIn(
                patient_id=patient_id, text=text, enrollment_id=enrollment_id, idempotency_key=key
            ),
            triage=triage,
        )
        return PatientMessageOutcome(ticket_id=summary.id)
    record, created, locale, context, preferred = await in_thread(thanks)
    if created:
        body = MessageRenderer().file("praise_ack", locale, context)
        await deliver(
            runtime.engine,
            runtime.channels,
            DeliveryRequest(
                idempotency_key=f"{record.event_key}:thanks",
                patient_id=patient_id,
                enrollment_id=enrollment_id,
                kind="praise_ack",
                subject=body[:40],
                body=body,
                locale=locale,
                channels=[*preferred, *([channel] if channel else []), *NOTICE_CHANNELS],
            ),
        )
    return PatientMessageOutcome(praise_id=record.id)
