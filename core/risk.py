"""Contract of the risk-stratification hook (分层分级): what it sees and what it decides."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, Field

from suifang.core.enums import RiskTier

__all__ = ["RiskAssessment", "RiskInput", "SpecialGroup"]

SpecialGroup = str
"""``elderly``, ``child``, ``pregnant`` (pathway variants may target each)."""


class RiskInput(BaseModel):
    """What the discharge record holds about readmission risk."""

    birth_date: dt.date | None = None
    sex: str | None = None
    pregnant: bool = False
    admitted_at: dt.datetime | None = None
    discharged_at: dt.datetime
    length_of_stay_days: float | None = None
    emergency_admission: bool = Field(False, description="Acuity: admitted through the ED.")
    diagnosis_codes: list[str] = Field(default_factory=list, description="ICD-10, principal first.")
    comorbidity_codes: list[str] = Field(default_factory=list, description="Secondary ICD-10.")
    charlson_index: int | None = Field(None, description="If the HIS already computed it.")
    ed_visits_6_months: int = 0
    department: str | None = None
    pathway_id: str | None = None


class RiskAssessment(BaseModel):
    tier: RiskTier
    score: float | None = None
    method: str = Field(description="e.g. LACE")
    reasons: list[str] = Field(default_factory=list, description="Human-readable, for the record.")
    groups: list[SpecialGroup] = Field(default_factory=list)
