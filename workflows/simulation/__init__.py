"""Workload simulation: the real journey and ticket state machines on simulated time.

"If we roll this pathway out to 300 discharges a day, how many nurse calls and doctor
callbacks will it create, and will we meet the SLAs?" The simulator answers with the very
code production runs: the journey core and ticket core the workflows drive, the real pathway
templates and alert rules, the LACE risk model, the bilingual triage classifier (on real
labelled patient messages), the routing table and the SLA policy with its business-hours
calendar — in a discrete-event loop, with synthetic patients whose behaviour (answer rate,
answer delay, abnormal answers, free-text messages, satisfaction) is configurable, and
department staff who work their queues. The same seed gives the same forecast.

Not simulated: channel failures (every send is delivered), transfers, collaboration and
waiting on the patient, and routing plugins (the routing table and discharge department
decide).

The forecast's KPIs are the KPI report's (:mod:`suifang.workflows.kpis.formulas`), counted
from the simulated journeys and tickets instead of the database.

The package, by concept: :mod:`~suifang.workflows.simulation.model` (configuration, state,
result), :mod:`~suifang.workflows.simulation.answers` (simulated patients' answers),
:mod:`~suifang.workflows.simulation.run` (the event loop) and
:mod:`~suifang.workflows.simulation.result` (the forecast of a run).
"""

from __future__ import annotations

from suifang.workflows.simulation.answers import abnormal_answers, normal_answers
from suifang.workflows.simulation.model import (
    SERVICE_MINUTES,
    TEMPLATES,
    WORKDAY_MINUTES,
    PatientBehaviour,
    SimulationConfig,
    SimulationResult,
)
from suifang.workflows.simulation.run import Simulator, build_simulator, simulate

__all__ = [
    "SERVICE_MINUTES",
    "TEMPLATES",
    "WORKDAY_MINUTES",
    "PatientBehaviour",
    "SimulationConfig",
    "SimulationResult",
    "Simulator",
    "abnormal_answers",
    "build_simulator",
    "normal_answers",
    "simulate",
]
