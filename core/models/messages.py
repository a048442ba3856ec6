"""The message ledger: every outbound message, every delivery attempt, every verified inbound call.

``Message.idempotency_key`` is unique: a retried send activity finds the row it wrote and
never sends twice. The outbox channel's messages are read from here (``suifang outbox``).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy import Numeric, UniqueConstraint
from sqlmodel import Field, SQLModel

from suifang.core.db import UTCDateTime
from suifang.core.models.base import TimestampField
from suifang.core.security.crypto import EncryptedJSON, EncryptedText

__all__ = ["DeliveryAttempt", "InboundRecord", "Message"]


class Message(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    idempotency_key: str = Field(max_length=160, unique=True)
    patient_id: int = Field(foreign_key="patient.id", index=True, ondelete="CASCADE")
    enrollment_id: int | None = Field(default=None, foreign_key="enrollment.id", index=True)
    ticket_id: int | None = Field(default=None, index=True)
    kind: str = Field(max_length=32, description="touchpoint, reminder, greeting, advice, ticket…")
    recipient: str | None = Field(
        default=None, max_length=64, description="A member of staff (a page), not the patient."
    )
    touchpoint_key: str | None = Field(default=None, max_length=64)
    locale: str = Field(default="zh-CN", max_length=8)
    subject: str | None = Field(default=None, sa_type=EncryptedText)
    body: str = Field(sa_type=EncryptedText)
    status: str = Field(default="pending", max_length=16, index=True)
    channel: str | None = Field(default=None, max_length=32, index=True)
    provider_message_id: str | None = Field(default=None, max_length=128, index=True)
    created_at: dt.datetime = TimestampField(index=True)
    sent_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    delivered_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    read_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    status_detail: str | None = Field(
        default=None,
        sa_type=EncryptedText,
        description="Why it failed: a provider may quote the address.",
    )


class DeliveryAttempt(SQLModel, table=True):
    __tablename__ = "delivery_attempt"
    __table_args__ = (UniqueConstraint("message_id", "attempt"),)

    id: int | None = Field(default=None, primary_key=True)
    message_id: int = Field(foreign_key="message.id", index=True, ondelete="CASCADE")
    attempt: int
    channel: str = Field(max_length=32)
    outcome: str = Field(max_length=24, description="accepted, permanent_error, transient_error…")
    # A provider's error text and reply may quote the patient's number or address.
    error: str | None = Field(default=None, sa_type=EncryptedText)
    provider_message_id: str | None = Field(default=None, max_length=128)
    cost: Decimal | None = Field(default=None, sa_type=Numeric(12, 4))
    currency: str | None = Field(default=None, max_length=8)
    detail: dict[str, Any] = Field(default_factory=dict, sa_type=EncryptedJSON)
    at: dt.datetime = TimestampField()


class InboundRecord(SQLModel, table=True):
    """What a verified provider callback carried (encrypted), so nothing it said is dropped.

    Refused calls are not stored here: they are kept as metadata only
    (:class:`~suifang.core.models.webhooks.WebhookRejection`)."""

    __tablename__ = "inbound_record"

    id: int | None = Field(default=None, primary_key=True)
    channel: str = Field(max_length=32, index=True)
    kind: str = Field(max_length=16, index=True, description="answer, feedback, status…")
    sender_hash: str | None = Field(default=None, max_length=64, index=True)
    provider_message_id: str | None = Field(default=None, max_length=128)
    payload: str = Field(sa_type=EncryptedText)
    patient_id: int | None = Field(default=None, foreign_key="patient.id", index=True)
    enrollment_id: int | None = Field(default=None, foreign_key="enrollment.id")
    touchpoint_key: str | None = Field(default=None, max_length=64)
    ticket_id: int | None = Field(default=None)
    error: str | None = Field(default=None, max_length=256)
    received_at: dt.datetime = TimestampField(index=True)
