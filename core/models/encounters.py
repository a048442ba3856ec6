"""Encounters: the discharge (or health check-up) a journey follows up."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.engine.default import DefaultExecutionContext
from sqlmodel import Field, SQLModel

from suifang.core.db import UTCDateTime
from suifang.core.models.base import TimestampField
from suifang.core.security.crypto import EncryptedJSON, EncryptedText, identifier_index

__all__ = ["ENCOUNTER_KINDS", "Encounter"]

ENCOUNTER_KINDS = ("inpatient", "checkup", "outpatient", "day_surgery")


def _visit_index(context: DefaultExecutionContext) -> str:
    """Every insert, ORM or statement, gets the visit number's keyed hash without naming it."""
    return identifier_index("visit", context.get_current_parameters()["external_id"])


class Encounter(SQLModel, table=True):
    """Diagnoses, procedures, the doctor and the visit number are encrypted at rest; what
    scheduling and reports need in the clear (department, dates, length of stay) is not."""

    id: int | None = Field(default=None, primary_key=True)
    patient_id: int = Field(foreign_key="patient.id", index=True, ondelete="CASCADE")
    external_id: str = Field(sa_type=EncryptedText, description="Visit number in the HIS.")
    external_id_hash: str | None = Field(
        default=None,
        max_length=64,
        unique=True,
        nullable=False,
        sa_column_kwargs={"default": _visit_index},
        description="Keyed hash of the visit number: how intake finds a known visit.",
    )
    kind: str = Field(default="inpatient", max_length=16)
    department_code: str = Field(foreign_key="department.code", index=True, max_length=64)
    ward: str | None = Field(default=None, max_length=64)
    diagnosis_codes: list[str] = Field(default_factory=list, sa_type=EncryptedJSON)
    diagnosis_text: str | None = Field(default=None, sa_type=EncryptedText)
    comorbidity_codes: list[str] = Field(default_factory=list, sa_type=EncryptedJSON)
    procedure_codes: list[str] = Field(default_factory=list, sa_type=EncryptedJSON)
    procedure_text: str | None = Field(default=None, sa_type=EncryptedText)
    attending_doctor: str | None = Field(default=None, sa_type=EncryptedText)
    admitted_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    discharged_at: dt.datetime = Field(sa_type=UTCDateTime, index=True)
    length_of_stay_days: float | None = None
    emergency_admission: bool = False
    ed_visits_6_months: int = 0
    charlson_index: int | None = None
    pregnant: bool = False
    discharge_disposition: str | None = Field(default=None, sa_type=EncryptedText)
    created_at: dt.datetime = TimestampField()
