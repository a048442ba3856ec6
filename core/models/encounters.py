"""Encounters: the discharge (or health check-up) a journey follows up."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON
from sqlmodel import Field, SQLModel

from suifang.core.db import UTCDateTime
from suifang.core.models.base import TimestampField

__all__ = ["ENCOUNTER_KINDS", "Encounter"]

ENCOUNTER_KINDS = ("inpatient", "checkup", "outpatient", "day_surgery")


class Encounter(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    patient_id: int = Field(foreign_key="patient.id", index=True, ondelete="CASCADE")
    external_id: str = Field(max_length=64, unique=True, description="Visit number in the HIS.")
    kind: str = Field(default="inpatient", max_length=16)
    department_code: str = Field(foreign_key="department.code", index=True, max_length=64)
    ward: str | None = Field(default=None, max_length=64)
    diagnosis_codes: list[str] = Field(default_factory=list, sa_type=JSON)
    diagnosis_text: str | None = Field(default=None, max_length=512)
    comorbidity_codes: list[str] = Field(default_factory=list, sa_type=JSON)
    procedure_codes: list[str] = Field(default_factory=list, sa_type=JSON)
    procedure_text: str | None = Field(default=None, max_length=512)
    attending_doctor: str | None = Field(default=None, max_length=128)
    admitted_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    discharged_at: dt.datetime = Field(sa_type=UTCDateTime, index=True)
    length_of_stay_days: float | None = None
    emergency_admission: bool = False
    ed_visits_6_months: int = 0
    charlson_index: int | None = None
    pregnant: bool = False
    discharge_disposition: str | None = Field(default=None, max_length=64)
    created_at: dt.datetime = TimestampField()
