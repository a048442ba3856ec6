"""The forecast of a finished run: tallies, the KPIs by the report's own formulas, the daily
workload and the staffing plan."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from suifang.core.enums import Tier
from suifang.workflows.kpis import Kpi, formulas
from suifang.workflows.simulation.model import (
    WORKDAY_MINUTES,
    SimulatedTicket,
    SimulationResult,
)

if TYPE_CHECKING:
    from suifang.workflows.simulation.run import Simulator

__all__ = ["forecast"]


@dataclasses.dataclass(frozen=True)
class _SlaOutcomes:
    """A routed ticket's two SLA clocks at the end of the run, judged as the KPI report
    judges them from the ticket read model."""

    department: str
    first_response: formulas.SlaOutcome
    resolution: formulas.SlaOutcome
    minutes_to_first_response: float | None
    """Only when the first-response outcome is known, as the report measures it."""


def _sla_outcomes(ticket: SimulatedTicket, as_of: dt.datetime) -> _SlaOutcomes | None:
    core, state = ticket.core, ticket.core.state
    if state.department is None:
        return None  # answered automatically (L1): no SLA clock ran
    first_clock, resolution_clock = core.clock("first_response"), core.clock("resolution")
    first = formulas.sla_outcome(
        state.first_response_at,
        core.clock_due(first_clock) if first_clock else None,
        state.breached_at.get("first_response"),
        as_of,
    )
    resolution = formulas.sla_outcome(
        state.resolved_at,
        core.clock_due(resolution_clock) if resolution_clock else None,
        state.breached_at.get("resolution"),
        as_of,
    )
    minutes = None
    if state.first_response_at is not None and first != "pending":
        minutes = (state.first_response_at - ticket.opened_at).total_seconds() / 60
    return _SlaOutcomes(state.department, first, resolution, minutes)


def _kpis(
    counts: Counter[str],
    journey_outcomes: Counter[str],
    tickets: list[SimulatedTicket],
    routed: list[_SlaOutcomes],
) -> list[Kpi]:
    answered = counts["touchpoint:answered"]
    scores = [t.core.state.satisfaction for t in tickets if t.core.state.satisfaction is not None]
    return [
        formulas.response_rate(answered, counts["touchpoint:missed"]),
        formulas.lost_to_follow_up_rate(journey_outcomes),
        *formulas.alert_rates({t.value: counts[f"alert:{t.value}"] for t in Tier}, answered),
        formulas.sla_compliance("first_response_sla", Counter(r.first_response for r in routed)),
        formulas.sla_compliance("resolution_sla", Counter(r.resolution for r in routed)),
        *formulas.time_to_first_response(
            [r.minutes_to_first_response for r in routed if r.minutes_to_first_response is not None]
        ),
        formulas.tickets_opened(len(tickets)),
        *formulas.satisfaction(scores),
    ]


def _daily(daily: dict[dt.date, Counter[str]]) -> list[dict[str, Any]]:
    departments = sorted({d for c in daily.values() for d in c if d.startswith("tickets:")})
    return [
        {
            "date": day.isoformat(),
            "discharges": daily[day]["discharges"],
            "messages": daily[day]["messages"],
            "nurse_calls": daily[day]["tier:L2"],
            "doctor_callbacks": daily[day]["tier:L3"],
            # Festival and birthday greetings go out together: the chart names the spikes.
            "greetings": {
                k.removeprefix("greeting:"): n
                for k, n in sorted(daily[day].items())
                if k.startswith("greeting:")
            },
            **{d.removeprefix("tickets:"): daily[day][d] for d in departments},
        }
        for day in sorted(daily)
    ]


def _staffing(simulator: Simulator, routed: list[_SlaOutcomes]) -> dict[str, dict[str, float]]:
    by_department: dict[str, list[_SlaOutcomes]] = defaultdict(list)
    for outcome in routed:
        by_department[outcome.department].append(outcome)
    days = max(1, len(simulator.daily))
    staffing = {}
    for department in sorted(set(simulator.staff_minutes) | set(by_department)):
        minutes = simulator.staff_minutes.get(department, {})
        first = Counter(o.first_response for o in by_department[department])
        known = first["met"] + first["breached"]
        peak = max(minutes.values(), default=0.0)
        staffing[department] = {
            "staff": simulator.staff_count(department),
            "tickets": len(by_department[department]),
            "mean_minutes_per_day": round(sum(minutes.values()) / days, 1),
            "peak_minutes_per_day": round(peak, 1),
            "peak_staff_needed": round(peak / WORKDAY_MINUTES, 2),
            "first_response_met": round(first["met"] / known, 4) if known else 1.0,
        }
    return staffing


def forecast(simulator: Simulator, elapsed: float) -> SimulationResult:
    """What ``simulator``'s run forecasts, judged at the end of the simulated time."""
    counts = simulator.counts
    tickets = list(simulator.tickets.values())
    outcomes = Counter(j.core.state.status.value for j in simulator.journeys.values())
    routed = [o for t in tickets if (o := _sla_outcomes(t, simulator.end)) is not None]

    def by(attribute: Callable[[SimulatedTicket], str]) -> dict[str, int]:
        return dict(Counter(attribute(t) for t in tickets).most_common())

    return SimulationResult(
        config=simulator.config,
        journeys=counts["journeys"],
        journey_outcomes=dict(sorted(outcomes.items())),
        touchpoints={
            s: counts[f"touchpoint:{s}"] for s in ("sent", "answered", "missed", "skipped")
        },
        messages={
            k.removeprefix("messages:"): v for k, v in counts.items() if k.startswith("messages:")
        },
        alerts_by_tier={t.value: counts[f"alert:{t.value}"] for t in Tier},
        tickets=counts["tickets"],
        tickets_by_source=by(lambda t: t.core.setup.source.value),
        tickets_by_category=by(lambda t: t.core.state.category),
        tickets_by_department=by(lambda t: t.core.state.department or "-"),
        tickets_by_tier=by(lambda t: t.core.state.tier.value),
        kpis=_kpis(counts, outcomes, tickets, routed),
        daily=_daily(simulator.daily),
        staffing=_staffing(simulator, routed),
        elapsed_seconds=round(elapsed, 2),
        per_patient=(
            [simulator.outcome_of(j) for j in simulator.journeys.values()]
            if simulator.keep_patients
            else []
        ),
    )
