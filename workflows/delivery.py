"""Delivering one message: the channel cascade, the idempotency ledger, the attempt record.

:func:`deliver` is the body of the send activity. It writes the :class:`Message` row first
(keyed by the idempotency key), then walks the patient's channels in order until one accepts:
a permanent error moves on at once, a transient one is retried by Temporal a few times on the
same channel before the cascade moves on, and a plugin that raises something unexpected,
returns garbage or hangs past its timeout is recorded as an incident and skipped. A retried
activity finds the row it wrote and never sends an accepted message again. When nothing
accepts, the caller opens a task for a person to call (the cascade's last step).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Sequence

from pydantic import BaseModel, Field
from sqlalchemy import Engine
from sqlmodel import Session, select

from suifang.core.channel_directory import ChannelDirectory
from suifang.core.channels import (
    AddressKind,
    Channel,
    DeliveryReceipt,
    OutboundMessage,
    PermanentChannelError,
    TransientChannelError,
)
from suifang.core.db import utcnow
from suifang.core.errors import ConfigurationError
from suifang.core.models import ContactPoint, DeliveryAttempt, Message, Patient
from suifang.workflows.journey_core import SendOutcome

__all__ = [
    "DeliveryRequest",
    "RetryableDelivery",
    "cascade_for",
    "deliver",
]

log = logging.getLogger("suifang.delivery")

TRANSIENT_ATTEMPTS_PER_CHANNEL = 3
_ADDRESS_SYSTEM = {
    AddressKind.PHONE: "phone",
    AddressKind.EMAIL: "email",
    AddressKind.WECHAT_OPENID: "wechat",
    AddressKind.APP_USER: "app",
}
_DONE = ("accepted", "delivered", "read", "answered")


class DeliveryRequest(BaseModel):
    idempotency_key: str
    patient_id: int
    kind: str
    subject: str
    body: str
    locale: str
    channels: list[str]
    enrollment_id: int | None = None
    ticket_id: int | None = None
    touchpoint_key: str | None = None
    template_id: str | None = None
    template_params: dict[str, str] = Field(default_factory=dict)
    link: str | None = None


class RetryableDelivery(Exception):
    """A channel failed transiently: let Temporal retry the activity with backoff."""


def cascade_for(patient: Patient, channels: Sequence[str]) -> list[str]:
    """The patient's preferred channels first, then the pathway's, each once."""
    ordered: list[str] = []
    for name in [*patient.preferred_channels, *channels]:
        if name not in ordered:
            ordered.append(name)
    return ordered


def _address(session: Session, patient: Patient, channel: Channel) -> str | None:
    if channel.address_kind == AddressKind.NONE:
        return ""
    system = _ADDRESS_SYSTEM.get(channel.address_kind)
    if system is None:
        return None
    contact = session.exec(
        select(ContactPoint)
        .where(ContactPoint.patient_id == patient.id, ContactPoint.system == system)
        .order_by(ContactPoint.rank, ContactPoint.id)
    ).first()
    return contact.value if contact else None


def _record_attempt(
    session: Session,
    message: Message,
    attempts: list[DeliveryAttempt],
    channel: str,
    outcome: str,
    *,
    error: str | None = None,
    receipt: DeliveryReceipt | None = None,
    commit: bool = True,
) -> None:
    """Add the next attempt to ``attempts`` (every attempt of ``message`` so far).

    Attempts are numbered under a unique constraint with the message: two activity attempts
    racing on one message cannot both record attempt n, the loser's commit fails and it retries.
    """
    attempt = DeliveryAttempt(
        message_id=message.id,  # type: ignore[arg-type]
        attempt=len(attempts) + 1,
        channel=channel,
        outcome=outcome,
        error=error[:256] if error else None,
        provider_message_id=receipt.provider_message_id if receipt else None,
        cost=receipt.cost if receipt else None,
        currency=receipt.currency if receipt else None,
        detail=receipt.detail if receipt else {},
    )
    attempts.append(attempt)
    session.add(attempt)
    if commit:
        session.commit()


def _exhausted(attempts: Sequence[DeliveryAttempt], channel: str) -> bool:
    mine = [a for a in attempts if a.channel == channel]
    if any(a.outcome in ("permanent_error", "unavailable", "no_address", "incident") for a in mine):
        return True
    return sum(a.outcome == "transient_error" for a in mine) >= TRANSIENT_ATTEMPTS_PER_CHANNEL


async def deliver(
    engine: Engine,
    directory: ChannelDirectory,
    request: DeliveryRequest,
    *,
    now: dt.datetime | None = None,
    channel_timeout: float = 30.0,
    patient: Patient | None = None,
) -> SendOutcome:
    """Send ``request`` over the first channel of the cascade that accepts it (idempotent).

    ``now`` stamps the message (activities pass the time Temporal scheduled them, so a
    journey's records follow the workflow's clock). ``patient`` is the request's patient if
    the caller has just loaded it (read only: consent, channel preferences, addresses).
    """
    with Session(engine, expire_on_commit=False) as session:
        message = session.exec(
            select(Message).where(Message.idempotency_key == request.idempotency_key)
        ).first()
        if message is not None and message.status in _DONE:
            return SendOutcome(delivered=True, channel=message.channel, message_id=message.id)
        if patient is None or patient.id != request.patient_id:
            patient = session.get(Patient, request.patient_id)
        if patient is None:
            raise ConfigurationError(f"patient {request.patient_id} does not exist")
        created = message is None
        if message is None:
            message = Message(
                idempotency_key=request.idempotency_key,
                patient_id=request.patient_id,
                enrollment_id=request.enrollment_id,
                ticket_id=request.ticket_id,
                kind=request.kind,
                touchpoint_key=request.touchpoint_key,
                locale=request.locale,
                subject=request.subject,
                body=request.body,
            )
            session.add(message)
            session.commit()
        if not patient.contactable:
            message.status = "suppressed"
            message.status_detail = "do not contact"
            session.add(message)
            session.commit()
            return SendOutcome(delivered=False, message_id=message.id, suppressed="do_not_contact")
        attempts: list[DeliveryAttempt] = []
        if not created:
            # An earlier attempt of this activity wrote the message: what it tried counts.
            attempts = list(
                session.exec(
                    select(DeliveryAttempt).where(DeliveryAttempt.message_id == message.id)
                ).all()
            )
        for name in cascade_for(patient, request.channels):
            if _exhausted(attempts, name):
                continue
            channel = directory.get(name)
            if channel is None:
                _record_attempt(
                    session, message, attempts, name, "unavailable", error=directory.problem(name)
                )
                continue
            address = _address(session, patient, channel)
            if address is None:
                _record_attempt(
                    session, message, attempts, name, "no_address", error="patient has no address"
                )
                continue
            outbound = OutboundMessage(
                idempotency_key=request.idempotency_key,
                patient_id=request.patient_id,
                address=address,
                # The ledger's text, not this attempt's rendering: a retry resends the very
                # message the first attempt may already have handed to the provider.
                locale=message.locale,
                subject=message.subject or "",
                body=message.body,
                link=request.link,
                template_id=request.template_id,
                template_params=request.template_params,
                metadata={"kind": request.kind, "message_id": str(message.id)},
            )
            await directory.bucket(channel).acquire()
            try:
                receipt = await asyncio.wait_for(
                    channel.send(outbound),
                    timeout=min(channel.config.timeout_seconds + 5, channel_timeout),
                )
                receipt = DeliveryReceipt.model_validate(receipt)
            except PermanentChannelError as exc:
                _record_attempt(session, message, attempts, name, "permanent_error", error=str(exc))
                continue
            except (TransientChannelError, TimeoutError) as exc:
                reason = str(exc) or f"no answer within {channel.config.timeout_seconds:g}s"
                _record_attempt(session, message, attempts, name, "transient_error", error=reason)
                transient = sum(
                    a.outcome == "transient_error" for a in attempts if a.channel == name
                )
                if transient < TRANSIENT_ATTEMPTS_PER_CHANNEL:
                    raise RetryableDelivery(f"channel {name!r}: {reason}") from None
                continue
            except Exception as exc:  # noqa: BLE001 -- a misbehaving plugin must not stall the journey
                # Record the incident and move on to the next channel.
                log.warning("channel %s misbehaved: %s", name, type(exc).__name__)
                _record_attempt(
                    session,
                    message,
                    attempts,
                    name,
                    "incident",
                    error=f"{type(exc).__name__}: {exc}"[:256],
                )
                continue
            # The accepted attempt and the message's new status are one commit: a worker
            # killed between two commits would leave an accepted attempt on a message still
            # pending, and the retried activity would send it again.
            _record_attempt(
                session, message, attempts, name, "accepted", receipt=receipt, commit=False
            )
            message.status = "delivered" if receipt.status == "delivered" else "accepted"
            message.channel = name
            message.provider_message_id = receipt.provider_message_id
            message.sent_at = now or utcnow()
            if receipt.status == "delivered":
                message.delivered_at = message.sent_at
            session.add(message)
            session.commit()
            return SendOutcome(delivered=True, channel=name, message_id=message.id)

        message.status = "failed"
        message.status_detail = "no channel accepted the message"
        session.add(message)
        session.commit()
        return SendOutcome(delivered=False, message_id=message.id, suppressed="undeliverable")
