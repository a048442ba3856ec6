"""Inbound: a provider's webhook → a verified reply matched to its patient, touchpoint and journey.

A call is refused with :class:`InboundRejected` (a clear 4xx, which the API records as
metadata only) when it is too large, nests too deep, names no channel or fails the channel's
signature or format checks. A verified call is then claimed in the replay cache
(:mod:`suifang.core.security.replay`): a replay of it, or a message id already taken, has no
second effect. What it carries is stored (encrypted) as an :class:`InboundRecord`, a sender
no patient has included (answered 404). A patient's reply goes to their
journey, which takes out what answers the open questionnaire and triages everything else
(a ticket, an emergency, or thanks); with no journey running, the text is triaged here. A
reply to a ticket waiting on the patient goes to that ticket — unless it raises danger, which
is triaged as a new message. A reply from a member of staff to a page acknowledges it.
Delivery receipts update the message ledger.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

from pydantic import BaseModel, Field
from sqlmodel import Session, col, select
from temporalio.service import RPCError, RPCStatusCode

from suifang.core.channel_directory import ChannelDirectory
from suifang.core.channels import (
    DeliveryStatusUpdate,
    InboundMessage,
    InboundRejected,
    InboundRequest,
    fingerprint,
)
from suifang.core.contacts import contact_system, in_use_order
from suifang.core.db import in_session_thread, in_thread, utcnow
from suifang.core.enums import JourneyStatus, TicketStatus, TouchpointStatus
from suifang.core.errors import NotFoundError, TryAgainLater, ValidationFailed
from suifang.core.models import (
    ContactPoint,
    Enrollment,
    InboundRecord,
    Message,
    Patient,
    StaffContact,
    StaffUser,
    Ticket,
    TouchpointRecord,
)
from suifang.core.nesting import TooDeep, check_nesting
from suifang.core.pathways import Questionnaire, resolve_plan
from suifang.core.runtime import Runtime
from suifang.core.security.crypto import blind_index
from suifang.core.security.replay import Claim, ClaimOutcome, ReplayScope, claim, settle
from suifang.core.triage import TriageRequest
from suifang.tickets.core import ActorAction, PatientEvent
from suifang.tickets.service import (
    act_on_ticket,
    patient_event,
    receive_patient_message,
)
from suifang.workflows.journey import PatientJourneyWorkflow
from suifang.workflows.journey_activities import ASKING_KINDS
from suifang.workflows.journey_commands import AnswerEvent
from suifang.workflows.replies import split_reply

__all__ = ["InboundFailure", "InboundOutcome", "InboundResult", "receive_inbound"]

MAX_BODY_BYTES = 256 * 1024
_STATUS_FIELD = {"delivered": "delivered_at", "read": "read_at", "answered": "read_at"}


class InboundOutcome(BaseModel):
    record_id: int
    kind: str = Field(description="answer, feedback, status, unmatched…")
    patient_id: int | None = None
    enrollment_id: int | None = None
    touchpoint_key: str | None = None
    ticket_id: int | None = None
    detail: str | None = None


class InboundResult(BaseModel):
    channel: str
    outcomes: list[InboundOutcome]
    replayed: bool = Field(
        False, description="A replay of a call already taken: answered as usual, no effect."
    )
    reply_body: str = '{"ok": true}'
    reply_media_type: str = "application/json"


class InboundFailure(InboundRejected):
    """Refused after the verified call was stored; carries the id of the stored record."""

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


async def receive_inbound(
    runtime: Runtime, directory: ChannelDirectory, channel_name: str, request: InboundRequest
) -> InboundResult:
    """Verify, claim, store, match and route one webhook call.

    Raises :class:`InboundRejected` for a call refused before it was verified (nothing is
    stored here: the caller records its metadata), :class:`InboundFailure` for a verified
    call whose every message was stored but matched nobody (404), and
    :class:`~suifang.core.errors.TryAgainLater` when the same call is being processed right
    now or the journey cannot take it yet (503: the provider retries).
    """
    if len(request.body) > MAX_BODY_BYTES:
        raise InboundRejected(
            f"body of {len(request.body)} bytes is over the {MAX_BODY_BYTES} byte limit",
            status_code=413,
        )
    try:
        check_nesting(request.body, runtime.settings.webhook_max_nesting)
    except TooDeep as exc:
        raise InboundRejected(
            f"{exc} (SUIFANG_WEBHOOK_MAX_NESTING); send a flatter body", status_code=400
        ) from None
    channel = directory.get(channel_name)
    if channel is None:
        problem = directory.problem(channel_name) or "unknown channel"
        raise InboundRejected(f"channel {channel_name!r}: {problem}", status_code=404)
    items = await channel.parse_inbound(request)
    retention = dt.timedelta(seconds=runtime.settings.webhook_replay_retention_seconds)
    # One session for the call, its transaction ended after each step (in_session_thread):
    # no connection is held while a channel, triage or Temporal is awaited.
    session = Session(runtime.engine, expire_on_commit=False)
    try:
        call = await in_session_thread(
            session,
            claim,
            channel=channel_name,
            scope=ReplayScope.REQUEST,
            fingerprint=channel.replay_fingerprint(request),
            retention=retention,
        )
        body, media_type = channel.inbound_response(items)
        if call.outcome is ClaimOutcome.DUPLICATE:
            return InboundResult(
                channel=channel_name,
                outcomes=[],
                replayed=True,
                reply_body=body,
                reply_media_type=media_type,
            )
        if call.outcome is ClaimOutcome.BUSY:
            raise TryAgainLater("the same call is being processed right now; retry shortly")
        claims = [call]
        try:
            outcomes = await _take(runtime, session, channel, items, call, claims)
        except BaseException:
            await in_thread(session.rollback)  # whatever the failure left half-done
            await in_session_thread(session, settle, claims, succeeded=False)
            raise
        await in_session_thread(session, settle, claims, succeeded=True)
    finally:
        await in_thread(session.close)
    unmatched = [o for o in outcomes if o.kind.startswith("unmatched")]
    # By default a sender nobody matches is acknowledged like any other call (stored as
    # unmatched, for staff): a provider that retries on errors would otherwise send it forever.
    refuse_unmatched = runtime.settings.inbound_unmatched_status == 404
    if refuse_unmatched and unmatched and len(unmatched) == len(outcomes):
        raise InboundFailure(
            unmatched[0].detail or "not matched",
            status_code=404,
            record_id=unmatched[0].record_id,
        )
    return InboundResult(
        channel=channel_name, outcomes=outcomes, reply_body=body, reply_media_type=media_type
    )


async def _take(
    runtime: Runtime,
    session: Session,
    channel: Any,
    items: list[InboundMessage | DeliveryStatusUpdate],
    call: Claim,
    claims: list[Claim],
) -> list[InboundOutcome]:
    """Act on the items of a claimed call; a message whose provider id was taken is skipped.

    ``claims`` collects every claim made, so the caller can settle them all.
    """
    outcomes = []
    for index, item in enumerate(items):
        if isinstance(item, DeliveryStatusUpdate):
            outcomes.append(await in_session_thread(session, _status_update, channel.name, item))
            continue
        effect_key = f"{call.effect_key}:{index}"
        if item.provider_message_id:
            message = await in_session_thread(
                session,
                claim,
                channel=channel.name,
                scope=ReplayScope.MESSAGE,
                fingerprint=fingerprint(item.provider_message_id),
                retention=None,
            )
            if message.outcome is ClaimOutcome.BUSY:
                raise TryAgainLater(
                    "a call with the same message is being processed right now; retry shortly"
                )
            if message.outcome is ClaimOutcome.DUPLICATE:
                continue  # the provider delivered this message before: it was taken then
            claims.append(message)
            effect_key = message.effect_key
        outcomes.append(await _reply(runtime, session, channel, item, effect_key))
    return outcomes


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
    system = contact_system(channel)
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
    runtime: Runtime, session: Session, channel: Any, reply: InboundMessage, effect_key: str
) -> InboundOutcome:
    """Route a patient's reply: to the ticket waiting for them, else to their journey.

    Free text that is not an answer is kept as feedback *and* opens a ticket, so a person
    (or the L1 knowledge base) answers it. ``effect_key`` (random, from the replay cache)
    makes that ticket idempotent when a failed call is retried; it is unguessable, so no
    one can reach the ticket through it.
    """
    payload = reply.model_dump(mode="json", exclude={"extra"})
    staff = await in_session_thread(session, _staff_reply, channel, reply)
    if staff is not None:
        return await _acknowledge_page(runtime, session, channel, reply, payload, *staff)
    patient_id, replied, sender_hash = await in_session_thread(session, _match, channel, reply)
    common = {"sender_hash": sender_hash, "provider_message_id": reply.provider_message_id}
    if patient_id is None:
        record = await in_session_thread(
            session, _store, channel.name, "unmatched", payload, **common
        )
        return InboundOutcome(
            record_id=record.id,  # type: ignore[arg-type]
            kind="unmatched",
            detail="no patient has this sender address; the message is kept for review",
        )
    text = (reply.text or "").strip()
    ticket = await in_session_thread(session, _ticket_awaiting, patient_id, replied)
    if ticket is not None and text and not await _raises_danger(runtime, text, patient_id, session):
        return await _ticket_reply(
            runtime, session, channel, reply, ticket, replied, payload, common
        )
    enrollment = await in_session_thread(session, _active_enrollment, patient_id, replied)
    touchpoint_key: str | None = None
    questionnaire: Questionnaire | None = None
    answers: dict[str, Any] = dict(reply.answers or {})
    journey_triages = enrollment is not None
    if enrollment is not None:
        touchpoint_key, questionnaire = await _open_touchpoint(
            runtime, session, enrollment, replied
        )
        if answers or text:
            client = await runtime.client()
            handle = client.get_workflow_handle_for(
                PatientJourneyWorkflow.run, enrollment.workflow_id
            )
            try:
                await handle.signal(
                    PatientJourneyWorkflow.answer,
                    AnswerEvent(
                        answers=answers,
                        # The journey takes out what answers its questions and triages the rest.
                        text=text or None,
                        touchpoint_key=touchpoint_key,
                        received_at=reply.received_at,
                        channel=channel.name,
                    ),
                )
            except RPCError as exc:
                if exc.status not in _TRY_AGAIN:
                    raise
                # The provider retries a 503, and the reply is handled then, once.
                raise TryAgainLater(
                    f"journey {enrollment.id} cannot take the reply right now "
                    f"({type(exc).__name__}); retry shortly"
                ) from None
    ticket_id = praise_id = None
    if text and not journey_triages:
        outcome = await receive_patient_message(
            runtime,
            patient_id=patient_id,
            text=text[:4000],
            enrollment_id=enrollment.id if enrollment else None,
            key=f"inbound-{effect_key}",
            channel=channel.name,
        )
        ticket_id, praise_id = outcome.ticket_id, outcome.praise_id
    kind = _record_kind(text, questionnaire)
    record = await in_session_thread(
        session,
        _store,
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
        ticket_id=ticket_id,
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

    def locale(session: Session) -> str | None:
        patient = session.get(Patient, patient_id)
        return patient.locale if patient else None

    result = await runtime.plugins.triage_async(
        TriageRequest(text=text, locale=await in_session_thread(session, locale))
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
    system = contact_system(channel)
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
    record = await in_session_thread(
        session,
        _store,
        channel.name,
        "page_reply",
        payload,
        ticket_id=ticket_id,
        provider_message_id=reply.provider_message_id,
    )
    return InboundOutcome(
        record_id=record.id,  # type: ignore[arg-type]
        kind="page_reply",
        ticket_id=ticket_id,
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
    record = await in_session_thread(
        session,
        _store,
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
        ticket_id=ticket.id,
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
    runtime: Runtime, session: Session, enrollment: Enrollment, replied: Message | None
) -> tuple[str | None, Questionnaire | None]:
    """The touchpoint a reply answers (the one replied to, else the open one), and its
    questions.

    Read from the database, not by querying the journey: a reply is then taken while the
    journey's worker restarts, and a query cannot rebuild a journey on a worker from a
    workflow task that is still in flight on a dead one (docs/reliability.md). The journey
    has the last word: it treats an answer to a touchpoint that closed meanwhile as late.
    """
    key = replied.touchpoint_key if replied is not None else None
    if key is None:
        key = await in_session_thread(session, _last_open_touchpoint, enrollment.id)
    if key is None:
        return None, None
    try:
        template = runtime.catalog.get(enrollment.pathway_id, enrollment.pathway_version)
    except NotFoundError:
        return key, None  # an old version no longer registered
    plan = resolve_plan(template, enrollment.risk_tier, enrollment.groups)
    touchpoint_id = key.split("#", 1)[0]
    planned = next((t for t in plan.touchpoints if t.id == touchpoint_id), None)
    return key, planned.questionnaire if planned else None


# Unreachable or restarting; NOT_FOUND: the journey ended a moment ago and its enrollment
# row is about to say so (the retry then takes the reply as a message on its own).
_TRY_AGAIN = (
    RPCStatusCode.NOT_FOUND,
    RPCStatusCode.UNAVAILABLE,
    RPCStatusCode.DEADLINE_EXCEEDED,
    RPCStatusCode.RESOURCE_EXHAUSTED,
)
_STILL_OPEN = (TouchpointStatus.SCHEDULED, TouchpointStatus.SENT)


def _last_open_touchpoint(session: Session, enrollment_id: int | None) -> str | None:
    """The touchpoint asked most recently that is still waiting for its answer."""
    still_open = select(TouchpointRecord.key).where(
        TouchpointRecord.enrollment_id == enrollment_id,
        col(TouchpointRecord.status).in_(_STILL_OPEN),
    )
    return session.exec(
        select(Message.touchpoint_key)
        .where(
            Message.enrollment_id == enrollment_id,
            col(Message.kind).in_(ASKING_KINDS),
            col(Message.touchpoint_key).in_(still_open),
        )
        .order_by(col(Message.created_at).desc(), col(Message.id).desc())
    ).first()
