"""Satisfaction survey campaigns (满意度调查): a cohort surveyed once or periodically."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, UniqueConstraint
from sqlmodel import Field, SQLModel

from suifang.core.db import UTCDateTime
from suifang.core.models.base import TimestampField
from suifang.core.security.crypto import EncryptedJSON, EncryptedText

__all__ = ["SurveyCampaign", "SurveyInvitation"]


class SurveyCampaign(SQLModel, table=True):
    """Patients discharged in a period (a department's, or all) surveyed in rounds; round k
    surveys the period moved on by k × ``every_days``."""

    __tablename__ = "survey_campaign"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=128)
    survey_id: str = Field(max_length=64)
    department_code: str | None = Field(default=None, max_length=64)
    discharged_from: dt.date
    discharged_to: dt.date
    rounds: int = 1
    every_days: int | None = None
    channels: list[str] = Field(default_factory=list, sa_type=JSON)
    status: str = Field(default="running", max_length=16, index=True)
    workflow_id: str = Field(max_length=128, unique=True)
    created_by: str = Field(max_length=64)
    created_at: dt.datetime = TimestampField()


class SurveyInvitation(SQLModel, table=True):
    """One patient's survey in one round, and their answers."""

    __tablename__ = "survey_invitation"
    __table_args__ = (UniqueConstraint("campaign_id", "round", "encounter_id"),)

    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="survey_campaign.id", index=True, ondelete="CASCADE")
    round: int
    patient_id: int = Field(foreign_key="patient.id", index=True, ondelete="CASCADE")
    encounter_id: int = Field(foreign_key="encounter.id", ondelete="CASCADE")
    department_code: str = Field(max_length=64, index=True)
    ward: str | None = Field(default=None, max_length=64)
    doctor: str | None = Field(default=None, sa_type=EncryptedText)
    status: str = Field(default="pending", max_length=16, index=True)
    """pending, sent, undeliverable, answered."""
    channel: str | None = Field(default=None, max_length=32)
    sent_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    answered_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    answers: dict[str, Any] | None = Field(default=None, sa_type=EncryptedJSON)
    comment: str | None = Field(default=None, sa_type=EncryptedText)
    ticket_id: int | None = Field(default=None)
