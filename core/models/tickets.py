"""Feedback tickets: the read model the ticket workflow keeps, its history and its messages.

The ticket workflow is the single writer of a ticket's state; the rows here are what it
wrote last (``sync_ticket``), so department queues are plain, scoped database queries.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, UniqueConstraint
from sqlmodel import Field, SQLModel

from suifang.core.db import UTCDateTime
from suifang.core.models.base import TimestampField
from suifang.core.security.crypto import EncryptedText

__all__ = [
    "PraiseRecord",
    "RoutingRule",
    "StaffNotification",
    "Ticket",
    "TicketEvent",
    "TicketNote",
]


class Ticket(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    workflow_id: str = Field(max_length=128, unique=True)
    idempotency_key: str | None = Field(default=None, max_length=160, unique=True)
    source: str = Field(max_length=24, index=True)
    patient_id: int = Field(foreign_key="patient.id", index=True, ondelete="CASCADE")
    enrollment_id: int | None = Field(default=None, foreign_key="enrollment.id", index=True)
    alert_id: int | None = Field(default=None, foreign_key="alert.id")
    parent_ticket_id: int | None = Field(default=None, foreign_key="ticket.id", index=True)
    category: str = Field(max_length=32, index=True)
    clinical: bool = True
    department_code: str | None = Field(
        default=None, foreign_key="department.code", index=True, max_length=64
    )
    tier: str = Field(max_length=4, index=True)
    priority: str = Field(max_length=16, index=True)
    status: str = Field(max_length=24, index=True)
    assignee: str | None = Field(default=None, max_length=64, index=True)
    summary: str = Field(
        sa_type=EncryptedText, description="What it is about (patient text, alert)."
    )
    red_flags: list[str] = Field(default_factory=list, sa_type=JSON)
    first_response_due: dt.datetime | None = Field(default=None, sa_type=UTCDateTime, index=True)
    first_response_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    first_response_breached_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    resolution_due: dt.datetime | None = Field(default=None, sa_type=UTCDateTime, index=True)
    resolved_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    resolution_breached_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    sla_paused: bool = False
    breached: bool = Field(default=False, index=True)
    reopen_count: int = 0
    satisfaction: int | None = None
    paging: str | None = Field(
        default=None,
        max_length=16,
        index=True,
        description="paging, acknowledged or unanswered: an emergency's page to the on-call.",
    )
    acknowledged_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    acknowledged_by: str | None = Field(default=None, max_length=64)
    opened_at: dt.datetime = Field(sa_type=UTCDateTime, index=True)
    closed_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    updated_at: dt.datetime = TimestampField()


class TicketEvent(SQLModel, table=True):
    """One line of a ticket's history: who did what, when, and why."""

    __tablename__ = "ticket_event"
    __table_args__ = (UniqueConstraint("ticket_id", "seq"),)

    id: int | None = Field(default=None, primary_key=True)
    ticket_id: int = Field(foreign_key="ticket.id", index=True, ondelete="CASCADE")
    seq: int
    at: dt.datetime = Field(sa_type=UTCDateTime)
    actor: str = Field(max_length=64)
    action: str = Field(max_length=32)
    from_status: str | None = Field(default=None, max_length=24)
    to_status: str | None = Field(default=None, max_length=24)
    reason: str | None = Field(default=None, sa_type=EncryptedText)
    detail: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)


class TicketNote(SQLModel, table=True):
    """An internal note, or a reply the patient sees."""

    __tablename__ = "ticket_note"
    __table_args__ = (UniqueConstraint("ticket_id", "seq"),)

    id: int | None = Field(default=None, primary_key=True)
    ticket_id: int = Field(foreign_key="ticket.id", index=True, ondelete="CASCADE")
    seq: int
    author: str = Field(max_length=64)
    visible_to_patient: bool = False
    body: str = Field(sa_type=EncryptedText)
    created_at: dt.datetime = Field(sa_type=UTCDateTime)


class RoutingRule(SQLModel, table=True):
    """Administrators' routing table: a ticket category → the department that owns it."""

    __tablename__ = "routing_rule"

    category: str = Field(primary_key=True, max_length=32)
    department_code: str = Field(foreign_key="department.code", max_length=64)
    updated_at: dt.datetime = TimestampField()


class PraiseRecord(SQLModel, table=True):
    """Thanks a patient sent ("谢谢，一切都好"): acknowledged, and counted for the department —
    not opened as a ticket."""

    __tablename__ = "praise_record"

    id: int | None = Field(default=None, primary_key=True)
    event_key: str = Field(max_length=160, unique=True)
    patient_id: int = Field(foreign_key="patient.id", index=True, ondelete="CASCADE")
    enrollment_id: int | None = Field(default=None, foreign_key="enrollment.id")
    department_code: str | None = Field(
        default=None, foreign_key="department.code", index=True, max_length=64
    )
    text: str = Field(sa_type=EncryptedText)
    received_at: dt.datetime = Field(sa_type=UTCDateTime, index=True)


class StaffNotification(SQLModel, table=True):
    """An SLA warning or breach, or another notice, for a department (and its supervisor)."""

    __tablename__ = "staff_notification"

    id: int | None = Field(default=None, primary_key=True)
    event_key: str = Field(max_length=160, unique=True)
    ticket_id: int = Field(foreign_key="ticket.id", index=True, ondelete="CASCADE")
    department_code: str | None = Field(default=None, max_length=64, index=True)
    kind: str = Field(max_length=16)
    clock: str = Field(max_length=24)
    due_at: dt.datetime = Field(sa_type=UTCDateTime)
    actions: list[str] = Field(default_factory=list, sa_type=JSON)
    delivered_via: str | None = Field(default=None, max_length=32)
    created_at: dt.datetime = TimestampField(index=True)
