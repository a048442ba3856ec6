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
    """For age (LACE has none; a plugin may use it; ``elderly`` and ``child`` groups)."""
    sex: str | None = None
    """As the HIS gives it (``male``, ``female``, ``other``), if it does."""
    pregnant: bool = False
    """Puts the patient in the ``pregnant`` group."""
    admitted_at: dt.datetime | None = None
    """The admission (with ``discharged_at``, the length of stay when that is not given)."""
    discharged_at: dt.datetime
    """The discharge (timezone-aware)."""
    length_of_stay_days: float | None = None
    """Days in hospital, when the HIS states it."""
    emergency_admission: bool = Field(False, description="Acuity: admitted through the ED.")
    diagnosis_codes: list[str] = Field(default_factory=list, description="ICD-10, principal first.")
    comorbidity_codes: list[str] = Field(default_factory=list, description="Secondary ICD-10.")
    charlson_index: int | None = Field(None, description="If the HIS already computed it.")
    ed_visits_6_months: int = 0
    """Emergency department visits in the six months before admission (LACE's E)."""
    department: str | None = None
    """The discharging department's code."""
    pathway_id: str | None = None
    """The pathway the patient is being enrolled on, if already chosen."""


class RiskAssessment(BaseModel):
    """A readmission-risk judgement: the first plugin to return one decides the tier."""

    tier: RiskTier
    """``low``, ``medium`` or ``high``: pathways' variants and follow-up intensity key on it."""
    score: float | None = None
    """The method's own score (LACE 0–19), if it has one."""
    method: str = Field(description="e.g. LACE")
    reasons: list[str] = Field(default_factory=list, description="Human-readable, for the record.")
    groups: list[SpecialGroup] = Field(default_factory=list)
    """Special groups found (``elderly``, ``child``, ``pregnant``)."""
