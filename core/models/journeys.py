"""Enrollments in a pathway and everything a journey records: touchpoints, answers,
observations, alerts and points.

Every row written by a workflow activity carries the ``event_key`` of the command that
wrote it (workflow id + command sequence number), unique, so a retried activity writes once.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, UniqueConstraint
from sqlmodel import Field, SQLModel

from suifang.core.db import UTCDateTime
from suifang.core.models.base import TimestampField
from suifang.core.security.crypto import EncryptedFloat, EncryptedJSON, EncryptedText

__all__ = ["Alert", "Answer", "Enrollment", "Observation", "PointsEntry", "TouchpointRecord"]


class Enrollment(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    patient_id: int = Field(foreign_key="patient.id", index=True, ondelete="CASCADE")
    encounter_id: int = Field(foreign_key="encounter.id", index=True, ondelete="CASCADE")
    department_code: str = Field(foreign_key="department.code", index=True, max_length=64)
    pathway_id: str = Field(max_length=64, index=True)
    pathway_version: int
    variants: list[str] = Field(default_factory=list, sa_type=JSON)
    risk_tier: str = Field(max_length=16)
    risk_score: float | None = None
    risk_method: str | None = Field(default=None, max_length=32)
    risk_reasons: list[str] = Field(default_factory=list, sa_type=EncryptedJSON)
    groups: list[str] = Field(default_factory=list, sa_type=JSON)
    workflow_id: str = Field(max_length=128, unique=True)
    status: str = Field(max_length=16, index=True)
    stop_reason: str | None = Field(default=None, sa_type=EncryptedText)
    time_scale: float = 1.0
    idempotency_key: str | None = Field(default=None, max_length=128, unique=True)
    enrolled_at: dt.datetime = TimestampField(index=True)
    started_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    ended_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    readmitted_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    points: int = 0


class TouchpointRecord(SQLModel, table=True):
    __tablename__ = "touchpoint_record"
    __table_args__ = (UniqueConstraint("enrollment_id", "key"),)

    id: int | None = Field(default=None, primary_key=True)
    enrollment_id: int = Field(foreign_key="enrollment.id", index=True, ondelete="CASCADE")
    key: str = Field(max_length=64, description="Touchpoint id, with #n for recurrences.")
    touchpoint_id: str = Field(max_length=64)
    day: int
    status: str = Field(max_length=16, index=True)
    due_at: dt.datetime = Field(sa_type=UTCDateTime, index=True)
    sent_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    answered_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    closed_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    detail: str | None = Field(default=None, sa_type=EncryptedText)
    updated_at: dt.datetime = TimestampField()


class Answer(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("event_key", "question_id"),)

    id: int | None = Field(default=None, primary_key=True)
    event_key: str = Field(max_length=160)
    enrollment_id: int = Field(foreign_key="enrollment.id", index=True, ondelete="CASCADE")
    patient_id: int = Field(foreign_key="patient.id", index=True, ondelete="CASCADE")
    touchpoint_key: str | None = Field(default=None, max_length=64)
    question_id: str = Field(max_length=64, description="'_text' for a free-text reply.")
    value: Any = Field(default=None, sa_type=EncryptedJSON, description="Parsed structured answer.")
    text: str | None = Field(default=None, sa_type=EncryptedText, description="Free text.")
    invalid: str | None = Field(default=None, sa_type=EncryptedText)
    late: bool = False
    channel: str | None = Field(default=None, max_length=32)
    source: str = Field(default="patient", max_length=32)
    received_at: dt.datetime = Field(sa_type=UTCDateTime, index=True)


class Observation(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("event_key", "indicator"),)

    id: int | None = Field(default=None, primary_key=True)
    event_key: str = Field(max_length=160)
    patient_id: int = Field(foreign_key="patient.id", index=True, ondelete="CASCADE")
    enrollment_id: int | None = Field(
        default=None, foreign_key="enrollment.id", ondelete="SET NULL"
    )
    indicator: str = Field(max_length=64, index=True)
    value: float = Field(sa_type=EncryptedFloat)
    unit: str | None = Field(default=None, max_length=16)
    observed_at: dt.datetime = Field(sa_type=UTCDateTime, index=True)
    source: str = Field(default="questionnaire", max_length=32)


class Alert(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    event_key: str = Field(max_length=160, unique=True)
    enrollment_id: int = Field(foreign_key="enrollment.id", index=True, ondelete="CASCADE")
    patient_id: int = Field(foreign_key="patient.id", index=True, ondelete="CASCADE")
    rule_id: str = Field(max_length=64)
    touchpoint_key: str | None = Field(default=None, max_length=64)
    tier: str = Field(max_length=4, index=True)
    priority: str = Field(max_length=16)
    category: str = Field(max_length=32)
    summary_zh: str = Field(sa_type=EncryptedText)
    summary_en: str = Field(sa_type=EncryptedText)
    evidence: dict[str, Any] = Field(default_factory=dict, sa_type=EncryptedJSON)
    ticket_id: int | None = Field(default=None, index=True)
    created_at: dt.datetime = TimestampField(index=True)


class PointsEntry(SQLModel, table=True):
    """积分: credited for each completed follow-up."""

    __tablename__ = "points_entry"

    id: int | None = Field(default=None, primary_key=True)
    event_key: str = Field(max_length=160, unique=True)
    patient_id: int = Field(foreign_key="patient.id", index=True, ondelete="CASCADE")
    enrollment_id: int = Field(foreign_key="enrollment.id", index=True, ondelete="CASCADE")
    touchpoint_key: str | None = Field(default=None, max_length=64)
    points: int
    reason: str = Field(max_length=64)
    created_at: dt.datetime = TimestampField()
