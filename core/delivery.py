"""Delivering one message: the channel cascade, the idempotency ledger, the attempt record.

:func:`deliver` is the body of the send activity. It writes the :class:`Message` row first
(keyed by the idempotency key), then walks the patient's channels in order until one accepts:
a permanent error moves on at once, a transient one is retried by Temporal a few times on the
same channel before the cascade moves on, and a plugin that raises something unexpected,
returns garbage or hangs past its timeout is recorded as an incident and skipped. A retried
activity finds the row it wrote and never sends an accepted message again. When nothing
accepts, the caller opens a task for a person to call (the cascade's last step).

Every database statement here runs in a thread (:func:`~suifang.core.db.in_thread`): the
event loop that awaits the channels also sends every activity's heartbeats, and a statement
stuck behind a lock must not stop them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import functools
import logging
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import Connection, Engine, Executable, bindparam, insert, select, update
from sqlmodel import col

from suifang.core.channel_directory import ChannelDirectory
from suifang.core.channels import (
    AddressKind,
    Channel,
    DeliveryReceipt,
    OutboundMessage,
    PermanentChannelError,
    PermanentRecipientError,
    TransientChannelError,
)
from suifang.core.contacts import contact_system, in_use_order
from suifang.core.db import in_thread, insert_for, update_by_id, utcnow
from suifang.core.errors import ConfigurationError
from suifang.core.models import ContactPoint, DeliveryAttempt, Message, Patient
from suifang.core.security.crypto import blind_index

__all__ = [
    "NOTICE_CHANNELS",
    "RECIPIENT_COLUMNS",
    "DeliveryRequest",
    "MessageLedger",
    "Recipient",
    "RetryableDelivery",
    "SendOutcome",
    "cascade_for",
    "deliver",
    "open_ledger",
    "recipient_from_row",
    "send_through_cascade",
]

log = logging.getLogger("suifang.delivery")

TRANSIENT_ATTEMPTS_PER_CHANNEL = 3
NOTICE_CHANNELS = ["wechat", "sms", "email", "webhook", "outbox"]
"""The cascade of messages that answer the patient (ticket notices, thanks) after the
patient's own preferred channels."""
_DONE = ("accepted", "delivered", "read", "answered")


class SendOutcome(BaseModel):
    """What sending one patient message came to: both domains' send activities report it."""

    delivered: bool
    channel: str | None = None
    message_id: int | None = None
    suppressed: Literal["do_not_contact", "quiet_hours", "undeliverable"] | None = None
    retry_at: dt.datetime | None = None


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
    recipient: str | None = None
    """A member of staff this message is for (a page), not the patient."""
    fail_over_at_once: bool = False
    """On a channel's transient failure try the next channel now, instead of retrying this
    one with backoff: a page cannot wait for a gateway to come back."""


class RetryableDelivery(Exception):
    """A channel failed transiently: let Temporal retry the activity with backoff."""


@dataclasses.dataclass(frozen=True)
class Recipient:
    """What delivery needs to know of a patient: who, whether to contact, which channels first."""

    id: int
    preferred_channels: Sequence[str]
    contactable: bool
    addresses: Mapping[str, str] | None = None
    """The addresses to use by contact system, instead of the patient's contact points (a
    member of staff being paged)."""

    @classmethod
    def of(cls, patient: Patient) -> Recipient:
        return cls(patient.id, patient.preferred_channels, patient.contactable)  # type: ignore[arg-type]


RECIPIENT_COLUMNS = (
    col(Patient.id),
    col(Patient.preferred_channels),
    col(Patient.contact_consent),
    col(Patient.do_not_contact),
    col(Patient.deceased_at),
)
"""The patient columns :meth:`recipient_from_row` reads (callers select them with their own)."""


def recipient_from_row(row: Any) -> Recipient:
    return Recipient(
        id=row.id,
        preferred_channels=row.preferred_channels or [],
        contactable=row.contact_consent and not row.do_not_contact and row.deceased_at is None,
    )


@dataclasses.dataclass
class MessageLedger:
    """The message row as delivery sees it, and every attempt made on it so far."""

    id: int
    status: str
    channel: str | None
    locale: str
    subject: str
    body: str
    attempts: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    """(channel, outcome) of each attempt, in no particular order."""


def cascade_for(patient: Patient | Recipient, channels: Sequence[str]) -> list[str]:
    """The patient's preferred channels first, then the pathway's, each once."""
    ordered: list[str] = []
    for name in [*patient.preferred_channels, *channels]:
        if name not in ordered:
            ordered.append(name)
    return ordered


def _address(
    engine: Engine, patient_id: int, channel: Channel, addresses: Mapping[str, str] | None = None
) -> str | None:
    if channel.address_kind == AddressKind.NONE:
        return ""
    system = contact_system(channel)
    if system is None:
        return None
    if addresses is not None:
        return addresses.get(system)
    with engine.connect() as connection:
        return connection.execute(
            _first_address(), {"patient": patient_id, "system": system}
        ).scalar()


def _exhausted(attempts: Sequence[tuple[str, str]], channel: str) -> bool:
    mine = [outcome for name, outcome in attempts if name == channel]
    if any(o in ("permanent_error", "unavailable", "no_address", "incident") for o in mine):
        return True
    return mine.count("transient_error") >= TRANSIENT_ATTEMPTS_PER_CHANNEL


async def deliver(
    engine: Engine,
    directory: ChannelDirectory,
    request: DeliveryRequest,
    *,
    now: dt.datetime | None = None,
    channel_timeout: float = 30.0,
    patient: Patient | Recipient | None = None,
) -> SendOutcome:
    """Send ``request`` over the first channel of the cascade that accepts it (idempotent).

    ``now`` stamps the message (activities pass the time Temporal scheduled them, so a
    journey's records follow the workflow's clock). ``patient`` is the request's patient if
    the caller has just loaded it (read only: consent, channel preferences).
    """
    known = Recipient.of(patient) if isinstance(patient, Patient) else patient
    recipient, ledger = await in_thread(_open_delivery, engine, request, known)
    return await send_through_cascade(
        engine, directory, request, ledger, recipient, now=now, channel_timeout=channel_timeout
    )


def _open_delivery(
    engine: Engine, request: DeliveryRequest, recipient: Recipient | None
) -> tuple[Recipient, MessageLedger]:
    with engine.begin() as connection:
        if recipient is None or recipient.id != request.patient_id:
            row = connection.execute(
                select(*RECIPIENT_COLUMNS).where(col(Patient.id) == request.patient_id)
            ).first()
            if row is None:
                raise ConfigurationError(f"patient {request.patient_id} does not exist")
            recipient = recipient_from_row(row)
        return recipient, open_ledger(connection, request)


async def send_through_cascade(
    engine: Engine,
    directory: ChannelDirectory,
    request: DeliveryRequest,
    ledger: MessageLedger,
    recipient: Recipient,
    *,
    now: dt.datetime | None = None,
    channel_timeout: float = 30.0,
) -> SendOutcome:
    """The second half of :func:`deliver`, for callers that opened the ledger themselves.

    A caller that has its own writes to make before anything is sent (a journey's records)
    opens the ledger in that transaction, commits, then calls this.
    """
    if ledger.status in _DONE:
        return SendOutcome(delivered=True, channel=ledger.channel, message_id=ledger.id)
    if not recipient.contactable:
        await in_thread(_finish, engine, ledger, status="suppressed", detail="do not contact")
        return SendOutcome(delivered=False, message_id=ledger.id, suppressed="do_not_contact")
    for name in cascade_for(recipient, request.channels):
        if _exhausted(ledger.attempts, name):
            continue
        channel = directory.get(name)
        if channel is None:
            await in_thread(
                _record_attempt, engine, ledger, name, "unavailable", error=directory.problem(name)
            )
            continue
        address = await in_thread(_address, engine, recipient.id, channel, recipient.addresses)
        if address is None:
            who = "recipient" if recipient.addresses is not None else "patient"
            await in_thread(
                _record_attempt, engine, ledger, name, "no_address", error=f"{who} has no address"
            )
            continue
        outbound = OutboundMessage(
            idempotency_key=request.idempotency_key,
            patient_id=request.patient_id,
            address=address,
            # The ledger's text, not this attempt's rendering: a retry resends the very
            # message the first attempt may already have handed to the provider.
            locale=ledger.locale,
            subject=ledger.subject,
            body=ledger.body,
            link=request.link,
            template_id=request.template_id,
            template_params=request.template_params,
            metadata={"kind": request.kind, "message_id": str(ledger.id)},
        )
        await directory.bucket(channel).acquire()
        try:
            receipt = await asyncio.wait_for(
                channel.send(outbound),
                timeout=min(channel.config.timeout_seconds + 5, channel_timeout),
            )
            receipt = DeliveryReceipt.model_validate(receipt)
        except PermanentChannelError as exc:
            await in_thread(
                _record_attempt, engine, ledger, name, "permanent_error", error=str(exc)
            )
            if isinstance(exc, PermanentRecipientError) and recipient.addresses is None:
                await in_thread(
                    _mark_contact_failed, engine, recipient.id, channel, address, str(exc)
                )
            continue
        except (TransientChannelError, TimeoutError) as exc:
            reason = str(exc) or f"no answer within {channel.config.timeout_seconds:g}s"
            await in_thread(_record_attempt, engine, ledger, name, "transient_error", error=reason)
            transient = sum(o == "transient_error" for c, o in ledger.attempts if c == name)
            if transient < TRANSIENT_ATTEMPTS_PER_CHANNEL and not request.fail_over_at_once:
                raise RetryableDelivery(f"channel {name!r}: {reason}") from None
            continue
        except Exception as exc:  # noqa: BLE001 -- a misbehaving plugin must not stall the journey
            # Record the incident and move on to the next channel.
            log.warning("channel %s misbehaved: %s", name, type(exc).__name__)
            await in_thread(
                _record_attempt,
                engine,
                ledger,
                name,
                "incident",
                error=f"{type(exc).__name__}: {exc}"[:256],
            )
            continue
        await in_thread(_record_acceptance, engine, ledger, name, receipt, now or utcnow())
        return SendOutcome(delivered=True, channel=name, message_id=ledger.id)
    await in_thread(
        _finish, engine, ledger, status="failed", detail="no channel accepted the message"
    )
    return SendOutcome(delivered=False, message_id=ledger.id, suppressed="undeliverable")


def open_ledger(connection: Connection, request: DeliveryRequest) -> MessageLedger:
    """The request's message row: written now, or found with its attempts if a retry wrote it."""
    created = connection.execute(
        _insert_message(connection.dialect.name),
        {
            "idempotency_key": request.idempotency_key,
            "patient_id": request.patient_id,
            "enrollment_id": request.enrollment_id,
            "ticket_id": request.ticket_id,
            "kind": request.kind,
            "recipient": request.recipient,
            "touchpoint_key": request.touchpoint_key,
            "locale": request.locale,
            "subject": request.subject,
            "body": request.body,
            "status": "pending",
            "created_at": utcnow(),
        },
    ).scalar()
    if created is not None:
        return MessageLedger(
            created, "pending", None, request.locale, request.subject, request.body
        )
    # An earlier attempt of this activity wrote the message: what it tried counts.
    row = connection.execute(
        select(
            col(Message.id),
            col(Message.status),
            col(Message.channel),
            col(Message.locale),
            col(Message.subject),
            col(Message.body),
        ).where(col(Message.idempotency_key) == request.idempotency_key)
    ).one()
    attempts = connection.execute(
        select(col(DeliveryAttempt.channel), col(DeliveryAttempt.outcome)).where(
            col(DeliveryAttempt.message_id) == row.id
        )
    ).all()
    return MessageLedger(
        row.id,
        row.status,
        row.channel,
        row.locale,
        row.subject or "",
        row.body,
        [(a.channel, a.outcome) for a in attempts],
    )


def _record_acceptance(
    engine: Engine,
    ledger: MessageLedger,
    channel: str,
    receipt: DeliveryReceipt,
    sent_at: dt.datetime,
) -> None:
    """The accepted attempt and the message's new status, in one transaction: a worker
    killed between two commits would leave an accepted attempt on a message still pending,
    and the retried activity would send it again."""
    delivered = receipt.status == "delivered"
    with engine.begin() as connection:
        _insert_attempt(connection, ledger, channel, "accepted", receipt=receipt)
        connection.execute(
            update_by_id(Message, "message"),
            {
                "message": ledger.id,
                "status": "delivered" if delivered else "accepted",
                "channel": channel,
                "provider_message_id": receipt.provider_message_id,
                "sent_at": sent_at,
                "delivered_at": sent_at if delivered else None,
                "status_detail": None,
            },
        )


def _record_attempt(
    engine: Engine, ledger: MessageLedger, channel: str, outcome: str, *, error: str | None = None
) -> None:
    """Record a failed attempt at once: the next activity attempt must count it."""
    with engine.begin() as connection:
        _insert_attempt(connection, ledger, channel, outcome, error=error)


def _insert_attempt(
    connection: Connection,
    ledger: MessageLedger,
    channel: str,
    outcome: str,
    *,
    error: str | None = None,
    receipt: DeliveryReceipt | None = None,
) -> None:
    """Number the attempt after those of ``ledger`` so far, and add it to them.

    Attempts are numbered under a unique constraint with the message: two activity attempts
    racing on one message cannot both record attempt n, the loser's commit fails and it retries.
    """
    connection.execute(
        _insert_attempt_statement(),
        {
            "message_id": ledger.id,
            "attempt": len(ledger.attempts) + 1,
            "channel": channel,
            "outcome": outcome,
            "error": error[:256] if error else None,
            "provider_message_id": receipt.provider_message_id if receipt else None,
            "cost": receipt.cost if receipt else None,
            "currency": receipt.currency if receipt else None,
            "detail": receipt.detail if receipt else {},
            "at": utcnow(),
        },
    )
    ledger.attempts.append((channel, outcome))


def _finish(engine: Engine, ledger: MessageLedger, *, status: str, detail: str) -> None:
    """Close a message nothing was sent for (suppressed, or every channel failed)."""
    with engine.begin() as connection:
        connection.execute(
            update(Message.__table__)  # type: ignore[attr-defined]
            .where(col(Message.id) == ledger.id)
            .values(status=status, status_detail=detail)
        )


# ------------------------------------------------------------------ statements
#
# SQL-expression statements, built once: every touchpoint of every journey comes through
# here, and the ORM's unit of work for rows that are only inserted or blindly updated cost
# the send activity more than the statements themselves (see docs/benchmarks.md).


@functools.cache
def _insert_message(dialect: str) -> Executable:
    table = Message.__table__  # type: ignore[attr-defined]
    return (
        insert_for(dialect, table)
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
        .returning(table.c.id)
    )


@functools.cache
def _insert_attempt_statement() -> Executable:
    return insert(DeliveryAttempt.__table__)  # type: ignore[attr-defined]


def _mark_contact_failed(
    engine: Engine, patient_id: int, channel: Channel, address: str, reason: str
) -> None:
    """The patient's contact point a permanent recipient error was about: failed, so that no
    later message (a reminder, the next touchpoint) is sent to it again."""
    system = contact_system(channel)
    if system is None:
        return
    with engine.begin() as connection:
        connection.execute(
            update(ContactPoint)
            .where(
                col(ContactPoint.patient_id) == patient_id,
                col(ContactPoint.system) == system,
                col(ContactPoint.value_hash) == blind_index(system, address),
                col(ContactPoint.failed_at).is_(None),
            )
            .values(failed_at=utcnow(), failed_reason=f"{channel.name}: {reason}"[:256])
        )


@functools.cache
def _first_address() -> Executable:
    return (
        select(col(ContactPoint.value))
        .where(
            col(ContactPoint.patient_id) == bindparam("patient"),
            col(ContactPoint.system) == bindparam("system"),
            col(ContactPoint.retired_at).is_(None),
            col(ContactPoint.failed_at).is_(None),
        )
        .order_by(*in_use_order())
        .limit(1)
    )
