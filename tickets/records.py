"""The ticket's read model — its row, its history lines and notes, its staff notices — as SQL.

The ticket workflow saves after every change (``sync_ticket``) and records every SLA warning
and breach (``notify_staff``); when thousands of tickets' deadlines fall due together
(every "next working day 09:00"), these writes are most of what the worker does. As in
``journey_records``, they are SQL-expression statements built once per dialect, not the ORM's
unit of work: loading a ticket to overwrite its columns decrypted its summary, tracked every
attribute and flushed them back, for a row the workflow overwrites whole anyway.

Each write is idempotent on the key that makes it unique: history lines and notes on
``(ticket_id, seq)``, staff notices on their ``event_key``. A retried save — a worker that
died after its commit — changes nothing the first attempt wrote.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
from typing import Any

from sqlalchemy import Connection, Executable, bindparam, select

from suifang.core.db import insert_new, update_by_id, utcnow
from suifang.core.enums import TicketStatus
from suifang.core.models import Department, StaffNotification, Ticket, TicketEvent, TicketNote
from suifang.tickets.core import TicketSnapshot

__all__ = [
    "Supervisor",
    "UnknownTicket",
    "recorded_staff_notice",
    "save_snapshot",
    "save_staff_notice",
    "supervisor_of",
]


class UnknownTicket(LookupError):
    """A snapshot names a ticket the database does not have (deleted, or another database)."""


@dataclasses.dataclass(frozen=True)
class Supervisor:
    """Who hears about a department's SLA warnings and breaches."""

    department_name: str
    email: str | None


def save_snapshot(connection: Connection, snapshot: TicketSnapshot) -> None:
    """Overwrite the ticket's row with ``snapshot`` and add its new history lines and notes."""
    state = snapshot.state
    changed = connection.execute(
        update_by_id(Ticket, "ticket"),
        {
            "ticket": snapshot.ticket_id,
            "status": state.status,
            "tier": state.tier,
            "priority": state.priority,
            "category": state.category,
            "clinical": state.clinical,
            "department_code": state.department,
            "assignee": state.assignee,
            "red_flags": state.red_flags,
            "first_response_due": snapshot.first_response_due,
            "resolution_due": snapshot.resolution_due,
            "first_response_at": state.first_response_at,
            "first_response_breached_at": snapshot.first_response_breached_at,
            "resolution_breached_at": snapshot.resolution_breached_at,
            "breached": bool(state.breached_at),
            "resolved_at": state.resolved_at,
            "closed_at": state.closed_at,
            "reopen_count": state.reopen_count,
            "satisfaction": state.satisfaction,
            "sla_paused": state.status == TicketStatus.WAITING_ON_PATIENT,
            "paging": snapshot.paging,
            "acknowledged_at": snapshot.acknowledged_at,
            "acknowledged_by": snapshot.acknowledged_by,
            "updated_at": utcnow(),
        },
    )
    if changed.rowcount == 0:
        raise UnknownTicket(f"ticket {snapshot.ticket_id} missing")
    dialect = connection.dialect.name
    events = [
        {
            "ticket_id": snapshot.ticket_id,
            "seq": event.seq,
            "at": event.at,
            "actor": event.actor,
            "action": event.action,
            "from_status": event.from_status,
            "to_status": event.to_status,
            "reason": event.reason,
            "detail": _jsonable(event.detail),
        }
        for event in snapshot.events
    ]
    if events:
        connection.execute(insert_new(dialect, TicketEvent, "ticket_id", "seq"), events)
    notes = [
        {
            "ticket_id": snapshot.ticket_id,
            "seq": event.seq,
            "author": event.actor,
            "visible_to_patient": event.visible_to_patient,
            "body": event.note,
            "created_at": event.at,
        }
        for event in snapshot.events
        if event.note
    ]
    if notes:
        connection.execute(insert_new(dialect, TicketNote, "ticket_id", "seq"), notes)


def recorded_staff_notice(connection: Connection, event_key: str) -> tuple[bool, str | None]:
    """Whether the notice with ``event_key`` is recorded, and how it was delivered."""
    row = connection.execute(_staff_notice_by_key(), {"key": event_key}).first()
    return (False, None) if row is None else (True, row.delivered_via)


def supervisor_of(connection: Connection, department: str) -> Supervisor | None:
    row = connection.execute(_supervisor(), {"code": department}).first()
    return None if row is None else Supervisor(row.name_en, row.supervisor_email)


def save_staff_notice(connection: Connection, notice: dict[str, Any]) -> None:
    """Record a warning or breach notice; one already recorded under its event key stands."""
    row = {"delivered_via": None, "created_at": utcnow()} | notice
    connection.execute(insert_new(connection.dialect.name, StaffNotification, "event_key"), row)


# ------------------------------------------------------------------ statements


@functools.cache
def _staff_notice_by_key() -> Executable:
    table = StaffNotification.__table__  # type: ignore[attr-defined]
    return select(table.c.delivered_via).where(table.c.event_key == bindparam("key"))


@functools.cache
def _supervisor() -> Executable:
    table = Department.__table__  # type: ignore[attr-defined]
    return select(table.c.name_en, table.c.supervisor_email).where(
        table.c.code == bindparam("code")
    )


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if hasattr(value, "value"):
        return value.value
    return value
