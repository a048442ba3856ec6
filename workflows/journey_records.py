"""The journey's records — what they say and the SQL that writes them, each write idempotent.

A journey writes its bookkeeping (touchpoint status, answers, observations, alerts, points,
its own status) as records. Each record carries the key that makes it unique — the
touchpoint's ``(enrollment, key)`` or the ``event_key`` of the command that made it
(workflow id + the command's sequence number, stable across retries and replays) — and is
written under a unique constraint on that key: inserts skip rows that are already there
(``ON CONFLICT DO NOTHING``), the touchpoint upsert sets the same values again, the points
total is recomputed from its entries. A retried write — a worker that died after its commit —
changes nothing the first attempt changed.

These are SQL-expression statements, not the ORM's unit of work: they run for every answer of
every journey, and building, tracking and flushing ORM objects for rows that are only ever
inserted or blindly updated cost the worker several times what the statements themselves do
(see docs/benchmarks.md). Statements are built once per dialect and shape and reused.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import Connection, Executable, bindparam, func, select, update

from suifang.core.db import UTCDateTime, insert_for, insert_new, utcnow
from suifang.core.enums import JourneyStatus, Priority, Tier, TouchpointStatus
from suifang.core.models import (
    Alert,
    Answer,
    Enrollment,
    Observation,
    Patient,
    PointsEntry,
    TouchpointRecord,
)
from suifang.core.pathways import LocalizedText
from suifang.workflows.journey_commands import ObservationValue

__all__ = [
    "AlertInput",
    "AnswersInput",
    "ObservationsInput",
    "PointsInput",
    "RecordBatch",
    "RecordItem",
    "StatusInput",
    "TouchpointInput",
    "UnknownEnrollment",
    "write_record",
    "write_records",
]


class TouchpointInput(BaseModel):
    record: Literal["touchpoint"] = "touchpoint"
    enrollment_id: int
    key: str
    touchpoint_id: str
    day: int
    status: TouchpointStatus
    due_at: dt.datetime
    at: dt.datetime
    detail: str | None = None


class AnswersInput(BaseModel):
    record: Literal["answers"] = "answers"
    event_key: str
    enrollment_id: int
    patient_id: int
    touchpoint_key: str | None
    answers: dict[str, Any]
    invalid: dict[str, str] = Field(default_factory=dict)
    observations: list[ObservationValue] = Field(default_factory=list)
    text: str | None = None
    at: dt.datetime
    late: bool = False
    channel: str | None = None
    source: str = "patient"


class ObservationsInput(BaseModel):
    record: Literal["observations"] = "observations"
    event_key: str
    enrollment_id: int
    patient_id: int
    observations: list[ObservationValue]
    at: dt.datetime
    source: str


class AlertInput(BaseModel):
    record: Literal["alert"] = "alert"
    event_key: str
    enrollment_id: int
    patient_id: int
    rule_id: str
    touchpoint_key: str | None
    tier: Tier
    priority: Priority
    category: str
    summary: LocalizedText
    evidence: dict[str, Any] = Field(default_factory=dict)
    at: dt.datetime
    """The journey's clock when the alert was raised."""


class PointsInput(BaseModel):
    record: Literal["points"] = "points"
    event_key: str
    enrollment_id: int
    patient_id: int
    touchpoint_key: str
    points: int


class StatusInput(BaseModel):
    record: Literal["status"] = "status"
    enrollment_id: int
    status: JourneyStatus
    reason: str | None
    at: dt.datetime


RecordItem = Annotated[
    TouchpointInput | AnswersInput | ObservationsInput | AlertInput | PointsInput | StatusInput,
    Field(discriminator="record"),
]


class RecordBatch(BaseModel):
    """Records a journey made between two sends or waits, written in the order it made them."""

    items: list[RecordItem]


class UnknownEnrollment(LookupError):
    """A record names an enrollment the database does not have (deleted, or another database)."""


_ENDED = (JourneyStatus.COMPLETED, JourneyStatus.LOST, JourneyStatus.STOPPED)
_TIME_COLUMNS = ("sent_at", "answered_at", "closed_at")
_TOUCHPOINT_TIMES = {
    TouchpointStatus.SENT: ("sent_at",),
    TouchpointStatus.ANSWERED: ("answered_at", "closed_at"),
    TouchpointStatus.MISSED: ("closed_at",),
    TouchpointStatus.SKIPPED: ("closed_at",),
}


def write_record(connection: Connection, record: BaseModel) -> None:
    """Write one record in ``connection``'s transaction (the caller commits)."""
    _WRITERS[type(record)](connection, record)


def write_records(connection: Connection, records: Sequence[BaseModel]) -> None:
    """Write a batch in ``connection``'s transaction; a touchpoint's states in it are one upsert.

    A batch often holds one touchpoint twice — sent, then answered by the time the journey
    next writes — and only its last state, with the times of each state, needs writing.
    No other record reads touchpoint rows, so they are written last.
    """
    touchpoints: dict[tuple[int, str], tuple[dict[str, Any], tuple[str, ...]]] = {}
    for record in records:
        if not isinstance(record, TouchpointInput):
            write_record(connection, record)
            continue
        row, times = _touchpoint_row(record)
        earlier = touchpoints.get((record.enrollment_id, record.key))
        if earlier is not None:
            earlier_row, earlier_times = earlier
            for name in earlier_times:
                if name not in times:
                    row[name] = earlier_row[name]
            times = tuple(t for t in _TIME_COLUMNS if t in times or t in earlier_times)
        touchpoints[(record.enrollment_id, record.key)] = (row, times)
    for row, times in touchpoints.values():
        connection.execute(_touchpoint_upsert(connection.dialect.name, times), row)


# ------------------------------------------------------------------ statements


@functools.cache
def _touchpoint_upsert(dialect: str, times: tuple[str, ...]) -> Executable:
    table = TouchpointRecord.__table__  # type: ignore[attr-defined]
    changed = ("status", "due_at", "detail", "updated_at", *times)
    statement = insert_for(dialect, table)
    return statement.on_conflict_do_update(
        index_elements=["enrollment_id", "key"],
        set_={name: statement.excluded[name] for name in changed},
    )


@functools.cache
def _recount_points() -> Executable:
    enrollment = Enrollment.__table__  # type: ignore[attr-defined]
    entries = PointsEntry.__table__  # type: ignore[attr-defined]
    total = (
        select(func.coalesce(func.sum(entries.c.points), 0))
        .where(entries.c.enrollment_id == bindparam("enrollment"))
        .scalar_subquery()
    )
    return update(enrollment).where(enrollment.c.id == bindparam("enrollment")).values(points=total)


@functools.cache
def _set_status(ended: bool, readmitted: bool) -> Executable:
    enrollment = Enrollment.__table__  # type: ignore[attr-defined]
    at = bindparam("at", type_=UTCDateTime())
    values: dict[str, Any] = {
        "status": bindparam("status"),
        "stop_reason": bindparam("reason"),
        # The first end stands: a journey stopped again later keeps when it ended.
        "ended_at": func.coalesce(enrollment.c.ended_at, at) if ended else None,
    }
    if readmitted:
        values["readmitted_at"] = func.coalesce(enrollment.c.readmitted_at, at)
    return update(enrollment).where(enrollment.c.id == bindparam("enrollment")).values(values)


@functools.cache
def _mark_patient(reason: str) -> Executable:
    """The patient-level fact a journey's stop reason records, the first time only."""
    patient = Patient.__table__  # type: ignore[attr-defined]
    enrollment = Enrollment.__table__  # type: ignore[attr-defined]
    at = bindparam("at", type_=UTCDateTime())
    owner = select(enrollment.c.patient_id).where(enrollment.c.id == bindparam("enrollment"))
    statement = update(patient).where(patient.c.id == owner.scalar_subquery())
    if reason == "do_not_contact":
        return statement.where(patient.c.do_not_contact.is_(False)).values(
            do_not_contact=True,
            do_not_contact_at=at,
            do_not_contact_source=func.coalesce(patient.c.do_not_contact_source, "journey"),
        )
    return statement.where(patient.c.deceased_at.is_(None)).values(deceased_at=at)


# ------------------------------------------------------------------ writers


def _write_touchpoint(connection: Connection, record: TouchpointInput) -> None:
    row, times = _touchpoint_row(record)
    connection.execute(_touchpoint_upsert(connection.dialect.name, times), row)


def _touchpoint_row(record: TouchpointInput) -> tuple[dict[str, Any], tuple[str, ...]]:
    """The row a touchpoint state writes, and the time columns that state sets."""
    times = _TOUCHPOINT_TIMES.get(record.status, ())
    row: dict[str, Any] = {
        "enrollment_id": record.enrollment_id,
        "key": record.key,
        "touchpoint_id": record.touchpoint_id,
        "day": record.day,
        "status": record.status,
        "due_at": record.due_at,
        "detail": record.detail,
        "updated_at": utcnow(),
        "sent_at": None,
        "answered_at": None,
        "closed_at": None,
    }
    for name in times:
        row[name] = record.at
    return row, times


def _write_answers(connection: Connection, record: AnswersInput) -> None:
    rows = [_answer_row(record, name, value=value) for name, value in record.answers.items()]
    for question, problem in record.invalid.items():
        rows.append(_answer_row(record, question, invalid=problem))
    if record.text:
        rows.append(_answer_row(record, "_text", text=record.text))
    if rows:
        statement = insert_new(connection.dialect.name, Answer, "event_key", "question_id")
        connection.execute(statement, rows)
    _insert_observations(connection, record, "questionnaire")


def _answer_row(record: AnswersInput, question_id: str, **values: Any) -> dict[str, Any]:
    return {
        "event_key": record.event_key,
        "enrollment_id": record.enrollment_id,
        "patient_id": record.patient_id,
        "touchpoint_key": record.touchpoint_key,
        "question_id": question_id,
        "late": record.late,
        "channel": record.channel,
        "source": record.source,
        "received_at": record.at,
        # Every row names every column: one executemany statement for all of them.
        "value": None,
        "text": None,
        "invalid": None,
    } | values


def _insert_observations(
    connection: Connection,
    record: AnswersInput | ObservationsInput,
    source: str,
) -> None:
    rows = [
        {
            "event_key": record.event_key,
            "patient_id": record.patient_id,
            "enrollment_id": record.enrollment_id,
            "indicator": observation.indicator,
            "value": observation.value,
            "unit": observation.unit,
            "observed_at": record.at,
            "source": source,
        }
        for observation in record.observations
    ]
    if rows:
        statement = insert_new(connection.dialect.name, Observation, "event_key", "indicator")
        connection.execute(statement, rows)


def _write_observations(connection: Connection, record: ObservationsInput) -> None:
    _insert_observations(connection, record, record.source)


def _write_alert(connection: Connection, alert: AlertInput) -> None:
    row = {
        "event_key": alert.event_key,
        "enrollment_id": alert.enrollment_id,
        "patient_id": alert.patient_id,
        "rule_id": alert.rule_id,
        "touchpoint_key": alert.touchpoint_key,
        "tier": alert.tier,
        "priority": alert.priority,
        "category": alert.category,
        "summary_zh": alert.summary.zh_cn,
        "summary_en": alert.summary.en,
        "evidence": alert.evidence,
        "ticket_id": None,
        "created_at": alert.at,
    }
    connection.execute(insert_new(connection.dialect.name, Alert, "event_key"), row)


def _write_points(connection: Connection, credit: PointsInput) -> None:
    entry = {
        "event_key": credit.event_key,
        "patient_id": credit.patient_id,
        "enrollment_id": credit.enrollment_id,
        "touchpoint_key": credit.touchpoint_key,
        "points": credit.points,
        "reason": "follow-up completed",
        "created_at": utcnow(),
    }
    connection.execute(insert_new(connection.dialect.name, PointsEntry, "event_key"), entry)
    # The total is recounted, not incremented: a retried credit cannot count twice.
    connection.execute(_recount_points(), {"enrollment": credit.enrollment_id})


def _write_status(connection: Connection, record: StatusInput) -> None:
    statement = _set_status(record.status in _ENDED, record.reason == "readmitted")
    changed = connection.execute(
        statement,
        {
            "enrollment": record.enrollment_id,
            "status": record.status,
            "reason": record.reason,
            "at": record.at,
        },
    )
    if changed.rowcount == 0:
        raise UnknownEnrollment(f"enrollment {record.enrollment_id} missing")
    if record.reason in ("do_not_contact", "deceased"):
        connection.execute(
            _mark_patient(record.reason), {"enrollment": record.enrollment_id, "at": record.at}
        )


_WRITERS: dict[type[BaseModel], Callable[[Connection, Any], None]] = {
    TouchpointInput: _write_touchpoint,
    AnswersInput: _write_answers,
    ObservationsInput: _write_observations,
    AlertInput: _write_alert,
    PointsInput: _write_points,
    StatusInput: _write_status,
}
