"""Inbound: a provider's webhook → a verified reply matched to its patient, touchpoint and journey.

Every call is stored (encrypted) before anything else happens, so nothing is ever dropped:
a bad signature, a malformed body, a sender no patient has — each is kept as an
:class:`InboundRecord` and answered with a clear 4xx. A patient's reply goes to their
journey, which takes out what answers the open questionnaire and triages everything else
(a ticket, an emergency, or thanks); with no journey running, the text is triaged here. A
reply to a ticket waiting on the patient goes to that ticket — unless it raises danger, which
is triaged as a new message. A reply from a member of staff to a page acknowledges it.
Delivery receipts update the message ledger.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel, Field
from sqlmodel import Session, col, select
from temporalio.client import WorkflowQueryFailedError, WorkflowQueryRejectedError
from temporalio.service import RPCError

from suifang.core.channel_directory import ChannelDirectory
from suifang.core.channels import (
    AddressKind,
    DeliveryStatusUpdate,
    InboundMessage,
    InboundRejected,
    InboundRequest,
)
from suifang.core.contacts import in_use_order
from suifang.core.db import utcnow
from suifang.core.enums import JourneyStatus, TicketStatus
from suifang.core.errors import NotFoundError, TryAgainLater, ValidationFailed
from suifang.core.models import (
    ContactPoint,
    Enrollment,
    InboundRecord,
    Message,
    StaffContact,
    StaffUser,
    Ticket,
)
from suifang.core.pathways import Questionnaire, resolve_plan
from suifang.core.runtime import Runtime
from suifang.core.security.crypto import blind_index
from suifang.core.triage import TriageRequest
from suifang.tickets.core import ActorAction, PatientEvent
from suifang.tickets.service import (
    act_on_ticket,
    patient_event,
    receive_patient_message,
)
from suifang.workflows.journey import PatientJourneyWorkflow
from suifang.workflows.journey_core import FREE_TEXT_REVISION, AnswerEvent
from suifang.workflows.replies import parse_reply, split_reply

__all__ = ["InboundOutcome", "InboundResult", "receive_inbound"]

MAX_BODY_BYTES = 256 * 1024
_SYSTEM = {
    AddressKind.PHONE: "phone",
    AddressKind.EMAIL: "email",
    AddressKind.WECHAT_OPENID: "wechat",
    AddressKind.APP_USER: "app",
}
_STATUS_FIELD = {"delivered": "delivered_at", "read": "read_at", "answered": "read_at"}


class InboundOutcome(BaseModel):
    record_id: int
    kind: str = Field(description="answer, feedback, status, unmatched…")
    patient_id: int | None = None
    enrollment_id: int | None = None
    touchpoint_key: str | None = None
    detail: str | None = None


class InboundResult(BaseModel):
    channel: str
    outcomes: list[InboundOutcome]
    reply_body: str = '{"ok": true}'
    reply_media_type: str = "application/json"


class InboundFailure(InboundRejected):
    """Refused after the call was stored; carries the id of the stored record."""

    def __init__(self, message: str, *, status_code: int, record_id: int) -> None:
        super().__init__(message, status_code=status_code)
        self.record_id = record_id


def _store(session: Session, channel: str, kind: str, payload: Any, **fields: Any) -> InboundRecord:
    text = (
        payload
        if isinstance(payload, str)
        else json.dumps(payload, ensure_ascii=False, default=str)
    )
    record = InboundRecord(channel=channel, kind=kind, payload=text, **fields)
    session.add(record)
    session.commit()
    session.refresh(record)
    return record


def _raw(request: InboundRequest) -> str:
    return request.body.decode("utf-8", errors="replace")


async def receive_inbound(
    runtime: Runtime, directory: ChannelDirectory, channel_name: str, request: InboundRequest
) -> InboundResult:
    """Verify, store, match and route one webhook call; raise InboundRejected for a 4xx."""
    with Session(runtime.engine, expire_on_commit=False) as session:
        if len(request.body) > MAX_BODY_BYTES:
            record = _store(
                session, channel_name, "rejected", _raw(request)[:4096], error="too large"
            )
            raise InboundFailure(
                f"body of {len(request.body)} bytes is over the {MAX_BODY_BYTES} byte limit",
                status_code=413,
                record_id=record.id,  # type: ignore[arg-type]
            )
        channel = directory.get(channel_name)
        if channel is None:
            problem = directory.problem(channel_name) or "unknown channel"
            record = _store(session, channel_name, "rejected", _raw(request), error=problem[:256])
            raise InboundFailure(
                f"channel {channel_name!r}: {problem}",
                status_code=404,
                record_id=record.id,  # type: ignore[arg-type]
            )
        try:
            items = await channel.parse_inbound(request)
        except InboundRejected as exc:
            record = _store(session, channel_name, "rejected", _raw(request), error=str(exc)[:256])
            raise InboundFailure(
                str(exc), status_code=exc.status_code, record_id=record.id
            ) from None  # type: ignore[arg-type]
        outcomes = []
        for item in items:
            if isinstance(item, DeliveryStatusUpdate):
                outcomes.append(_status_update(session, channel_name, item))
            else:
                outcomes.append(await _reply(runtime, session, channel, item))
        body, media_type = channel.inbound_response(items)
        unmatched = [o for o in outcomes if o.kind.startswith("unmatched")]
        if unmatched and len(unmatched) == len(outcomes):
            raise InboundFailure(
                unmatched[0].detail or "not matched",
                status_code=404,
                record_id=unmatched[0].record_id,
            )
        return InboundResult(
            channel=channel_name, outcomes=outcomes, reply_body=body, reply_media_type=media_type
        )


def _status_update(session: Session, channel: str, update: DeliveryStatusUpdate) -> InboundOutcome:
    message = session.exec(
        select(Message).where(
            Message.provider_message_id == update.provider_message_id, Message.channel == channel
        )
    ).first()
    payload = update.model_dump(mode="json")
    if message is None:
        record = _store(
            session,
            channel,
            "unmatched_status",
            payload,
            provider_message_id=update.provider_message_id,
        )
        return InboundOutcome(
            record_id=record.id,  # type: ignore[arg-type]
            kind="unmatched_status",
            detail=f"no message with provider id {update.provider_message_id!r} on {channel}",
        )
    at = update.at or utcnow()
    if update.status == "failed":
        message.status = "failed"
        message.status_detail = (update.error or "provider reported failure")[:256]
    else:
        message.status = update.status
        setattr(message, _STATUS_FIELD[update.status], at)
    session.add(message)
    record = _store(
        session,
        channel,
        "status",
        payload,
        provider_message_id=update.provider_message_id,
        patient_id=message.patient_id,
        enrollment_id=message.enrollment_id,
        touchpoint_key=message.touchpoint_key,
    )
    return InboundOutcome(
        record_id=record.id,  # type: ignore[arg-type]
        kind="status",
        patient_id=message.patient_id,
        enrollment_id=message.enrollment_id,
        touchpoint_key=message.touchpoint_key,
        detail=update.status,
    )


def _match(
    session: Session, channel: Any, reply: InboundMessage
) -> tuple[int | None, Message | None, str | None]:
    """(patient id, the message replied to, sender hash) — by reply reference, else by sender."""
    replied: Message | None = None
    if reply.in_reply_to:
        replied = session.exec(
            select(Message).where(
                (Message.idempotency_key == reply.in_reply_to)
                | (Message.provider_message_id == reply.in_reply_to)
            )
        ).first()
    system = _SYSTEM.get(channel.address_kind)
    sender_hash = blind_index(system, reply.sender) if system and reply.sender else None
    if replied is not None:
        return replied.patient_id, replied, sender_hash
    if sender_hash is None:
        return None, None, None
    contact = session.exec(
        select(ContactPoint)
        .where(
            ContactPoint.system == system,
            ContactPoint.value_hash == sender_hash,
            col(ContactPoint.retired_at).is_(None),  # a retired number may be someone else's now
        )
        .order_by(*in_use_order())
    ).first()
    return (contact.patient_id if contact else None), None, sender_hash


_SCORE = re.compile(r"^\s*([1-5])\s*(分|星|stars?)?\s*[。.!！]?\s*$", re.IGNORECASE)


async def _reply(
    runtime: Runtime, session: Session, channel: Any, reply: InboundMessage
) -> InboundOutcome:
    """Route a patient's reply: to the ticket waiting for them, else to their journey.

    Free text that is not an answer is kept as feedback *and* opens a ticket, so a person
    (or the L1 knowledge base) answers it.
    """
    payload = reply.model_dump(mode="json", exclude={"extra"})
    staff = _staff_reply(session, channel, reply)
    if staff is not None:
        return await _acknowledge_page(runtime, session, channel, reply, payload, *staff)
    patient_id, replied, sender_hash = _match(session, channel, reply)
    common = {"sender_hash": sender_hash, "provider_message_id": reply.provider_message_id}
    if patient_id is None:
        record = _store(session, channel.name, "unmatched", payload, **common)
        return InboundOutcome(
            record_id=record.id,  # type: ignore[arg-type]
            kind="unmatched",
            detail="no patient has this sender address; the message is kept for review",
        )
    text = (reply.text or "").strip()
    ticket = _ticket_awaiting(session, patient_id, replied)
    if ticket is not None and text and not await _raises_danger(runtime, text, patient_id, session):
        return await _ticket_reply(
            runtime, session, channel, reply, ticket, replied, payload, common
        )
    enrollment = _active_enrollment(session, patient_id, replied)
    touchpoint_key: str | None = None
    questionnaire: Questionnaire | None = None
    answers: dict[str, Any] = dict(reply.answers or {})
    journey_triages = False
    if enrollment is not None:
        touchpoint_key, questionnaire, revision = await _open_touchpoint(
            runtime, enrollment, replied
        )
        journey_triages = revision >= FREE_TEXT_REVISION
        if not journey_triages and not answers and text and questionnaire is not None:
            answers = parse_reply(text, questionnaire) or {}
        if answers or text:
            client = await runtime.client()
            handle = client.get_workflow_handle_for(
                PatientJourneyWorkflow.run, enrollment.workflow_id
            )
            await handle.signal(
                PatientJourneyWorkflow.answer,
                AnswerEvent(
                    answers=answers,
                    # The journey takes out what answers its questions and triages the rest;
                    # a journey from before it could is given the text only when it is not
                    # an answer, and the text is triaged here.
                    text=(text or None) if journey_triages or not answers else None,
                    touchpoint_key=touchpoint_key,
                    received_at=reply.received_at,
                    channel=channel.name,
                ),
            )
    ticket_id = praise_id = None
    if text and not journey_triages and not (answers and enrollment is not None):
        outcome = await receive_patient_message(
            runtime,
            patient_id=patient_id,
            text=text[:4000],
            enrollment_id=enrollment.id if enrollment else None,
            key=f"inbound:{channel.name}:{reply.provider_message_id}"
            if reply.provider_message_id
            else None,
            channel=channel.name,
        )
        ticket_id, praise_id = outcome.ticket_id, outcome.praise_id
    kind = _record_kind(text, questionnaire)
    record = _store(
        session,
        channel.name,
        kind,
        payload,
        patient_id=patient_id,
        enrollment_id=enrollment.id if enrollment else None,
        touchpoint_key=touchpoint_key,
        ticket_id=ticket_id,
        **common,
    )
    if journey_triages:
        detail = "delivered to the journey: answers recorded, free text triaged there"
    elif ticket_id is not None:
        detail = f"free text: ticket {ticket_id} opened"
    elif praise_id is not None:
        detail = "thanks recorded for the department"
    elif text:
        detail = "nothing to act on: kept as a record"
    else:
        detail = "answers delivered to the journey"
    return InboundOutcome(
        record_id=record.id,  # type: ignore[arg-type]
        kind=kind,
        patient_id=patient_id,
        enrollment_id=enrollment.id if enrollment else None,
        touchpoint_key=touchpoint_key,
        detail=detail,
    )


def _record_kind(text: str, questionnaire: Questionnaire | None) -> str:
    """How the stored record is filed: "answer" when the reply only answers questions,
    "feedback" when it says anything else (the journey does the authoritative split)."""
    if not text:
        return "answer"
    if questionnaire is not None:
        answered, rest = split_reply(text, questionnaire)
        if answered and not rest:
            return "answer"
    return "feedback"


async def _raises_danger(runtime: Runtime, text: str, patient_id: int, session: Session) -> bool:
    """Whether a reply meant for a waiting ticket is something a clinician must see at once
    (then it is triaged as a new message, not filed as a reply to a complaint)."""
    from suifang.core.models import Patient

    patient = session.get(Patient, patient_id)
    result = await runtime.plugins.triage_async(
        TriageRequest(text=text, locale=patient.locale if patient else None)
    )
    return bool(result.red_flags or result.warning_signs)


_ACK_ROLES = ("admin", "agent", "nurse", "doctor")


def _staff_reply(
    session: Session, channel: Any, reply: InboundMessage
) -> tuple[StaffUser, Message | None] | None:
    """The member of staff a reply comes from (by the page it answers, or their contact),
    and the page it answers, if known."""
    page: Message | None = None
    if reply.in_reply_to:
        page = session.exec(
            select(Message).where(
                (Message.idempotency_key == reply.in_reply_to)
                | (Message.provider_message_id == reply.in_reply_to),
                Message.kind == "page",
            )
        ).first()
    system = _SYSTEM.get(channel.address_kind)
    user: StaffUser | None = None
    if system and reply.sender:
        contact = session.exec(
            select(StaffContact).where(
                StaffContact.system == system,
                StaffContact.value_hash == blind_index(system, reply.sender),
            )
        ).first()
        if contact is not None:
            user = session.get(StaffUser, contact.user_id)
    if user is None and page is not None and page.recipient:
        # Only the person paged may answer a page by replying to it.
        return None
    if user is None or not user.active or user.role not in _ACK_ROLES:
        return None
    if page is None:
        page = session.exec(
            select(Message)
            .join(Ticket, col(Ticket.id) == col(Message.ticket_id))
            .where(
                Message.kind == "page",
                Message.recipient == user.username,
                Ticket.paging == "paging",
            )
            .order_by(col(Message.id).desc())
        ).first()
    return (user, page) if page is not None else None


async def _acknowledge_page(
    runtime: Runtime,
    session: Session,
    channel: Any,
    reply: InboundMessage,
    payload: dict[str, Any],
    user: StaffUser,
    page: Message | None,
) -> InboundOutcome:
    ticket_id = page.ticket_id if page is not None else None
    detail = "reply from staff: no page to acknowledge"
    if ticket_id is not None:
        try:
            await act_on_ticket(
                runtime,
                session,
                ticket_id,
                ActorAction(
                    action="acknowledge",
                    actor=user.username,
                    text=(reply.text or "")[:4000] or None,
                ),
            )
            detail = f"page for ticket {ticket_id} acknowledged by {user.username}"
        except ValidationFailed as exc:
            detail = f"page for ticket {ticket_id}: {exc}"
    record = _store(
        session,
        channel.name,
        "page_reply",
        payload,
        ticket_id=ticket_id,
        provider_message_id=reply.provider_message_id,
    )
    return InboundOutcome(
        record_id=record.id,  # type: ignore[arg-type]
        kind="page_reply",
        detail=detail,
    )


def _ticket_awaiting(session: Session, patient_id: int, replied: Message | None) -> Ticket | None:
    """The ticket a reply is for: the one replied to, else one waiting on this patient."""
    if replied is not None and replied.ticket_id is not None:
        return session.get(Ticket, replied.ticket_id)
    return session.exec(
        select(Ticket)
        .where(
            Ticket.patient_id == patient_id,
            col(Ticket.status).in_([TicketStatus.WAITING_ON_PATIENT, TicketStatus.RESOLVED]),
        )
        .order_by(col(Ticket.updated_at).desc())
    ).first()


async def _ticket_reply(
    runtime: Runtime,
    session: Session,
    channel: Any,
    reply: InboundMessage,
    ticket: Ticket,
    replied: Message | None,
    payload: dict[str, Any],
    common: dict[str, Any],
) -> InboundOutcome:
    text = reply.text or ""
    # A reply to the satisfaction question is a score even if the read model does not show
    # the ticket resolved yet: the question goes out before the ticket's state is saved, and
    # a quick patient (or a worker restart in between) would otherwise reopen the ticket.
    asked = replied is not None and replied.kind == "ticket_satisfaction"
    score = _SCORE.match(text) if asked or ticket.status == TicketStatus.RESOLVED else None
    event = (
        PatientEvent(kind="satisfaction", score=int(score.group(1)))
        if score
        else PatientEvent(kind="reply", text=text[:4000])
    )
    await patient_event(runtime, session, ticket.id, event)  # type: ignore[arg-type]
    record = _store(
        session,
        channel.name,
        "ticket_reply",
        payload,
        patient_id=ticket.patient_id,
        enrollment_id=ticket.enrollment_id,
        ticket_id=ticket.id,
        **common,
    )
    return InboundOutcome(
        record_id=record.id,  # type: ignore[arg-type]
        kind="ticket_reply",
        patient_id=ticket.patient_id,
        enrollment_id=ticket.enrollment_id,
        detail=f"satisfaction {event.score}/5 for ticket {ticket.id}"
        if event.kind == "satisfaction"
        else f"reply to ticket {ticket.id}",
    )


def _active_enrollment(
    session: Session, patient_id: int, replied: Message | None
) -> Enrollment | None:
    if replied is not None and replied.enrollment_id is not None:
        enrollment = session.get(Enrollment, replied.enrollment_id)
        if enrollment is not None and enrollment.status in (
            JourneyStatus.ACTIVE,
            JourneyStatus.PAUSED,
        ):
            return enrollment
    return session.exec(
        select(Enrollment)
        .where(
            Enrollment.patient_id == patient_id,
            col(Enrollment.status).in_([JourneyStatus.ACTIVE, JourneyStatus.PAUSED]),
        )
        .order_by(col(Enrollment.id).desc())
    ).first()


async def _open_touchpoint(
    runtime: Runtime, enrollment: Enrollment, replied: Message | None
) -> tuple[str | None, Questionnaire | None, int]:
    """The touchpoint a reply answers (the one replied to, else the open one), its questions,
    and the journey's workflow revision."""
    client = await runtime.client()
    handle = client.get_workflow_handle_for(PatientJourneyWorkflow.run, enrollment.workflow_id)
    try:
        progress = await handle.query(PatientJourneyWorkflow.progress)
    except (RPCError, WorkflowQueryFailedError, WorkflowQueryRejectedError) as exc:
        # The journey cannot say which question it waits for now (its worker is restarting):
        # the provider retries a 503, and the reply is handled then, once.
        raise TryAgainLater(
            f"journey {enrollment.id} cannot take the reply right now ({type(exc).__name__}); "
            "retry shortly"
        ) from None
    key = replied.touchpoint_key if replied is not None else None
    if key is None:
        key = progress.open_touchpoints[-1] if progress.open_touchpoints else None
    if key is None:
        return None, None, progress.revision
    try:
        template = runtime.catalog.get(enrollment.pathway_id, enrollment.pathway_version)
    except NotFoundError:
        return key, None, progress.revision  # an old version no longer registered
    plan = resolve_plan(template, enrollment.risk_tier, enrollment.groups)
    touchpoint_id = key.split("#", 1)[0]
    planned = next((t for t in plan.touchpoints if t.id == touchpoint_id), None)
    return key, planned.questionnaire if planned else None, progress.revision
