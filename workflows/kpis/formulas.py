"""Each KPI's formula, once: from counts (or measurements) to a :class:`Kpi`.

The database report (:mod:`.queries`) and the workload forecast (:mod:`suifang.workflows.
simulation`) count differently (SQL aggregates over a period, tallies of simulated journeys
and tickets) but both hand their counts to these functions, so a forecast's "response rate"
is the report's response rate.
"""

from __future__ import annotations

import datetime as dt
import math
import statistics
from collections.abc import Iterable, Mapping
from typing import Literal

from suifang.core.enums import JourneyStatus, TouchpointStatus
from suifang.workflows.kpis.definitions import KPI_DEFINITIONS, Kpi

__all__ = [
    "ENDED",
    "REACHED",
    "SATISFIED_SCORE",
    "SETTLED",
    "TIERS",
    "SlaOutcome",
    "alert_rates",
    "discharges_enrolled",
    "follow_up_coverage",
    "kpi",
    "lost_to_follow_up_rate",
    "nearest_rank",
    "rate",
    "readmission_30d",
    "response_rate",
    "satisfaction",
    "sla_compliance",
    "sla_outcome",
    "tickets_opened",
    "time_to_first_response",
]

SATISFIED_SCORE = 4
"""Scores 4 and 5 count as satisfied (top-two box; the ticket core reopens below 3)."""
TIERS = ("L1", "L2", "L3")

REACHED = (TouchpointStatus.SENT, TouchpointStatus.ANSWERED, TouchpointStatus.MISSED)
"""A touchpoint in one of these statuses went out to the patient."""
SETTLED = (TouchpointStatus.ANSWERED, TouchpointStatus.MISSED)
"""A touchpoint in one of these statuses has its answer window closed."""
ENDED = (JourneyStatus.COMPLETED, JourneyStatus.LOST, JourneyStatus.STOPPED)

SlaOutcome = Literal["met", "breached", "pending"]


def kpi(
    key: str,
    value: float | None,
    numerator: int | None,
    denominator: int | None,
    pending: int = 0,
) -> Kpi:
    spec = KPI_DEFINITIONS[key]
    return Kpi(
        key=key,
        name=spec.name,
        name_zh=spec.name_zh,
        unit=spec.unit,
        value=None if value is None else round(value, 2),
        numerator=numerator,
        denominator=denominator,
        pending=pending,
        short=spec.short,
        definition=spec.definition,
    )


def rate(
    key: str, numerator: int, denominator: int, *, scale: float = 100, pending: int = 0
) -> Kpi:
    """``numerator × scale ÷ denominator``; no value without a denominator."""
    value = numerator * scale / denominator if denominator else None
    return kpi(key, value, numerator, denominator, pending)


def nearest_rank(values: Iterable[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


# --------------------------------------------------------------------------- journeys


def follow_up_coverage(reached: int, due: int, pending: int) -> Kpi:
    """``reached`` of the ``due`` enrollments; ``pending`` of them are still waiting to go out."""
    return rate("follow_up_coverage", reached, due - pending, pending=pending)


def discharges_enrolled(enrolled: int, discharged: int) -> Kpi:
    return rate("discharges_enrolled", enrolled, discharged)


def response_rate(answered: int, missed: int) -> Kpi:
    """Touchpoints answered ÷ those whose answer window closed (answered + missed)."""
    return rate("response_rate", answered, answered + missed)


def lost_to_follow_up_rate(ended: Mapping[str, int]) -> Kpi:
    """Journeys lost ÷ journeys ended, from the count of ended journeys by status."""
    total = sum(count for status, count in ended.items() if status in ENDED)
    return rate("lost_to_follow_up_rate", ended.get(JourneyStatus.LOST, 0), total)


def alert_rates(alerts_by_tier: Mapping[str, int], answered: int) -> list[Kpi]:
    """Alerts per 100 answered touchpoints, overall and by tier."""
    return [
        rate("alert_rate", sum(alerts_by_tier.get(tier, 0) for tier in TIERS), answered),
        *(
            rate(f"alert_rate_{tier.lower()}", alerts_by_tier.get(tier, 0), answered)
            for tier in TIERS
        ),
    ]


def readmission_30d(readmitted: int, complete: int, pending: int) -> Kpi:
    return rate("readmission_30d", readmitted, complete, pending=pending)


# --------------------------------------------------------------------------- tickets


def sla_outcome(
    done_at: dt.datetime | None,
    due: dt.datetime | None,
    breached_at: dt.datetime | None,
    as_of: dt.datetime,
) -> SlaOutcome:
    """One SLA clock: breached (recorded, or running past its due time), met, or pending.

    The read model shows a running clock as its due time (None once met, while paused, or
    before routing), so a due time wins over an earlier ``done_at``: a reopened ticket, or
    an L1 answer taken over by a department, is working to a new target.
    """
    if breached_at is not None:
        return "breached"
    if due is not None:
        return "breached" if due <= as_of else "pending"
    return "met" if done_at is not None else "pending"


def sla_compliance(key: str, outcomes: Mapping[SlaOutcome, int]) -> Kpi:
    """Clocks met ÷ clocks whose outcome is known (met + breached); the rest are pending."""
    met, breached = outcomes.get("met", 0), outcomes.get("breached", 0)
    return rate(key, met, met + breached, pending=outcomes.get("pending", 0))


def time_to_first_response(minutes: list[float]) -> list[Kpi]:
    """Median and nearest-rank 90th percentile of the minutes to a first response."""
    median = statistics.median(minutes) if minutes else None
    p90 = nearest_rank(minutes, 0.9) if minutes else None
    return [
        kpi("time_to_first_response_median", median, None, len(minutes)),
        kpi("time_to_first_response_p90", p90, None, len(minutes)),
    ]


def tickets_opened(count: int) -> Kpi:
    return kpi("tickets_opened", count, count, None)


def satisfaction(scores: list[int]) -> list[Kpi]:
    """The mean score (numerator: their sum) and the share scored 4 or 5."""
    total = sum(scores)
    satisfied = sum(1 for score in scores if score >= SATISFIED_SCORE)
    return [
        kpi("satisfaction_mean", total / len(scores) if scores else None, total, len(scores)),
        rate("satisfaction_rate", satisfied, len(scores)),
    ]
