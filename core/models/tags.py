"""Auto-tags (自动设置标签): the tags a patient has now, and every change, kept as history."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

from suifang.core.models.base import TimestampField

__all__ = ["PatientTag", "PatientTagChange"]


class PatientTag(SQLModel, table=True):
    """A tag the patient has now (one row per patient and tag)."""

    __tablename__ = "patient_tag"
    __table_args__ = (UniqueConstraint("patient_id", "tag"),)

    id: int | None = Field(default=None, primary_key=True)
    patient_id: int = Field(foreign_key="patient.id", index=True, ondelete="CASCADE")
    tag: str = Field(max_length=64, index=True)
    since: dt.datetime = TimestampField()


class PatientTagChange(SQLModel, table=True):
    """A tag given or taken away, and what was being recorded when it happened."""

    __tablename__ = "patient_tag_change"

    id: int | None = Field(default=None, primary_key=True)
    patient_id: int = Field(foreign_key="patient.id", index=True, ondelete="CASCADE")
    tag: str = Field(max_length=64, index=True)
    change: str = Field(max_length=8, description="added or removed")
    reason: str = Field(max_length=64, description="intake, answers, observations, alerts…")
    at: dt.datetime = TimestampField(index=True)
