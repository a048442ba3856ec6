"""What a simulation is given (the pathway's patients, their behaviour, the staff), what it
keeps per journey and ticket while it runs, and the forecast it returns."""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from suifang.core.enums import Tier
from suifang.core.risk import RiskInput
from suifang.core.timezones import IanaTimezone
from suifang.tickets.core import TicketCore
from suifang.workflows.journey_core import JourneyCore
from suifang.workflows.kpis import Kpi

__all__ = [
    "SERVICE_MINUTES",
    "TEMPLATES",
    "WORKDAY_MINUTES",
    "PatientBehaviour",
    "SimulatedJourney",
    "SimulatedTicket",
    "SimulationConfig",
    "SimulationResult",
]

TEMPLATES = Path(__file__).parent.parent.parent / "templates"
SERVICE_MINUTES = {Tier.L1: 0.0, Tier.L2: 15.0, Tier.L3: 20.0}
"""Minutes of a person's time per ticket: an L2 nurse call, an L3 doctor callback."""
WORKDAY_MINUTES = 8 * 60


class PatientBehaviour(BaseModel):
    answer_rate: float = Field(0.8, ge=0, le=1, description="Share of touchpoints answered.")
    answer_delay_hours: float = Field(4.0, gt=0, description="Median time to answer.")
    abnormal_rate: float = Field(
        0.08, ge=0, le=1, description="Share of answers that are abnormal."
    )
    message_rate: float = Field(0.05, ge=0, le=1, description="Free-text messages per touchpoint.")
    low_satisfaction_rate: float = Field(
        0.1, ge=0, le=1, description="Scores of 1–2 after a ticket."
    )
    satisfaction_reply_rate: float = Field(0.6, ge=0, le=1)


class SimulationConfig(BaseModel):
    pathway: str
    patients_per_day: int = Field(300, ge=1, le=100_000)
    days: int = Field(60, ge=1, le=3650)
    tail_days: int = Field(35, ge=0, le=400, description="Days simulated after the last discharge.")
    seed: int = 1
    start: dt.date = dt.date(2026, 11, 2)
    timezone: IanaTimezone = "Asia/Shanghai"
    behaviour: PatientBehaviour = Field(default_factory=PatientBehaviour)
    staff: dict[str, int] = Field(default_factory=dict, description="People per department.")
    default_staff: int = Field(2, ge=1)


@dataclasses.dataclass
class SimulatedJourney:
    id: int
    core: JourneyCore
    rng: random.Random
    discharge_department: str
    subject: RiskInput
    script: list[tuple[dt.datetime, str | None, dict[str, Any], str | None]] = dataclasses.field(
        default_factory=list
    )
    alerts: list[tuple[str, str | None]] = dataclasses.field(default_factory=list)
    tickets: list[int] = dataclasses.field(default_factory=list)
    messages: list[tuple[dt.datetime, str]] = dataclasses.field(default_factory=list)
    wake: dt.datetime | None = None
    """The one timer the journey waits on; earlier wake-ups left in the heap are stale."""


@dataclasses.dataclass
class SimulatedTicket:
    id: int
    core: TicketCore
    opened_at: dt.datetime
    queued: bool = False
    wake: dt.datetime | None = None
    opened_as: tuple[str, str, str, str, str | None] | None = None
    """(source, category, tier, priority, department) once triaged and routed."""


class SimulationResult(BaseModel):
    config: SimulationConfig
    journeys: int
    journey_outcomes: dict[str, int]
    touchpoints: dict[str, int]
    messages: dict[str, int]
    alerts_by_tier: dict[str, int]
    tickets: int
    tickets_by_source: dict[str, int]
    tickets_by_category: dict[str, int]
    tickets_by_department: dict[str, int]
    tickets_by_tier: dict[str, int]
    kpis: list[Kpi] = Field(
        description="The KPIs of the KPI report that a forecast can know, by the same formulas."
    )
    daily: list[dict[str, Any]]
    staffing: dict[str, dict[str, float]] = Field(
        description="Per department: staff, tickets, minutes of work per day, people needed "
        "at the peak, share of first responses within SLA."
    )
    elapsed_seconds: float = 0.0
    per_patient: list[dict[str, Any]] = Field(default_factory=list, exclude=True)

    def kpi(self, key: str) -> Kpi:
        for kpi in self.kpis:
            if kpi.key == key:
                return kpi
        raise KeyError(f"the forecast has no KPI {key!r}")
