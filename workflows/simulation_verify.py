"""``suifang simulate --verify N``: replay sampled simulated patients through the real workflows.

The simulator drives the journey and ticket cores directly; this module takes N of its
patients, picked to cover different outcomes, and runs each through the production
system on the Temporal time-skipping test server: the real intake (risk scored from the same
discharge record), the real ``PatientJourney`` and ``FeedbackTicket`` workflows, the real
activities and database, with the patient's answers and messages sent at the simulated
instants. Then it compares what the simulator predicted with what the system did.

Patients are replayed one at a time, each shifted by a whole number of days so it starts at
the test server's current time: the server cannot go back in time, and concurrent
``result()`` waits on it deadlock. Answers are signalled to the journey as the inbound
endpoint does; free-text messages open tickets as ``POST /tickets`` does.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import random
import tempfile
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field
from sqlmodel import Session, col, select
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from suifang.core.binaries import find_binary
from suifang.core.config import Settings
from suifang.core.enums import TicketSource
from suifang.core.models import Alert, Ticket, TicketEvent
from suifang.core.pathways import PathwayTemplate
from suifang.core.plugins import Plugins
from suifang.core.runtime import Runtime
from suifang.core.seed import prepare_database
from suifang.core.temporal import data_converter
from suifang.tickets.service import TicketIn, open_ticket
from suifang.workflows.intake import DischargeIn, register_discharge
from suifang.workflows.journey import PatientJourneyWorkflow
from suifang.workflows.journey_commands import AnswerEvent
from suifang.workflows.journey_core import JourneyProgress
from suifang.workflows.simulation import Simulator
from suifang.workflows.simulation.model import SimulatedJourney
from suifang.workflows.worker import build_worker

__all__ = ["PatientCheck", "VerifyReport", "pick_sample", "verify_on_test_server", "verify_sample"]

_POLL = 0.02
_PARK_LIMIT = 30.0
"""Seconds (real time) a workflow may take to settle after a step before verify gives up."""


class PatientCheck(BaseModel):
    patient: int = Field(description="The simulated patient's number.")
    matches: bool
    differences: list[str]
    simulated: dict[str, Any]
    real: dict[str, Any]


class VerifyReport(BaseModel):
    pathway: str
    checked: int
    matched: int
    patients: list[PatientCheck]
    elapsed_seconds: float

    @property
    def ok(self) -> bool:
        return self.matched == self.checked


def pick_sample(simulator: Simulator, count: int, seed: int) -> list[SimulatedJourney]:
    """``count`` patients, spread over the different outcomes the run produced.

    Patients are grouped by what happened to them (end status, alerts, tickets, misses), and
    the groups take turns, so a small sample still sees the rare paths.
    """
    rng = random.Random(seed)
    groups: dict[tuple[Any, ...], list[SimulatedJourney]] = defaultdict(list)
    for journey in simulator.journeys.values():
        outcome = simulator.outcome_of(journey)
        signature = (
            outcome["status"],
            bool(outcome["alerts"]),
            bool(outcome["tickets"]),
            outcome["missed"] > 0,
            bool(journey.messages),
        )
        groups[signature].append(journey)
    ordered = [groups[key] for key in sorted(groups, key=str)]
    for members in ordered:
        rng.shuffle(members)
    picked: list[SimulatedJourney] = []
    while len(picked) < count and any(ordered):
        for members in ordered:
            if members and len(picked) < count:
                picked.append(members.pop())
    return picked


# --------------------------------------------------------------------------- one patient


def _discharge(simulator: Simulator, journey: SimulatedJourney, shift: dt.timedelta) -> DischargeIn:
    subject = journey.subject
    discharged_at = (journey.core.origin + shift).astimezone(simulator.zone)
    return DischargeIn.model_validate(
        {
            "pathway": simulator.template.id,
            "pathway_version": simulator.template.version,
            "patient": {
                "external_id": f"SIM-{uuid.uuid4().hex[:12]}",
                "name": f"模拟患者{journey.id}",
                "birth_date": (subject.birth_date + shift).isoformat()
                if subject.birth_date
                else None,
                "timezone": simulator.config.timezone,
            },
            "encounter": {
                "external_id": f"SIM-V-{journey.id}-{uuid.uuid4().hex[:8]}",
                "kind": "checkup" if simulator.template.id == "post-checkup" else "inpatient",
                "department": journey.discharge_department,
                "discharged_at": discharged_at.isoformat(),
                "length_of_stay_days": subject.length_of_stay_days,
                "emergency_admission": subject.emergency_admission,
                "comorbidity_codes": list(subject.comorbidity_codes),
                "ed_visits_6_months": subject.ed_visits_6_months,
            },
        }
    )


async def _settled(
    env: WorkflowEnvironment, handle: WorkflowHandle[Any, Any]
) -> JourneyProgress | None:
    """The journey's progress once it is parked on a timer or an event; None once it ended."""
    deadline = time.monotonic() + _PARK_LIMIT
    while True:
        description = await handle.describe()
        if description.status != WorkflowExecutionStatus.RUNNING:
            if description.status == WorkflowExecutionStatus.CONTINUED_AS_NEW:
                await asyncio.sleep(_POLL)
                continue
            return None
        raw = description.raw_description
        if not raw.pending_activities and not raw.HasField("pending_workflow_task"):
            progress: JourneyProgress = await handle.query(PatientJourneyWorkflow.progress)
            if progress.parked:
                return progress
        if time.monotonic() > deadline:
            raise TimeoutError(f"journey {handle.id} did not settle within {_PARK_LIMIT:.0f}s")
        await asyncio.sleep(_POLL)


async def _advance(
    env: WorkflowEnvironment, handle: WorkflowHandle[Any, Any], target: dt.datetime
) -> None:
    """Move the server's clock to ``target``, stopping at every journey timer on the way."""
    while True:
        progress = await _settled(env, handle)
        now = await env.get_current_time()
        wakes_at = progress.wakes_at if progress is not None else None
        if wakes_at is not None and wakes_at <= target:
            # A timer exactly at the server's time fires on the next tick.
            await env.sleep(max(wakes_at - now, dt.timedelta(milliseconds=1)))
            continue
        if target > now:
            await env.sleep(target - now)
        return


def _real_outcome(
    runtime: Runtime, enrollment_id: int, progress: JourneyProgress, patient: int
) -> dict[str, Any]:
    with Session(runtime.engine) as session:
        alerts = session.exec(
            select(Alert.rule_id, Alert.touchpoint_key).where(Alert.enrollment_id == enrollment_id)
        ).all()
        tickets = session.exec(
            select(Ticket).where(Ticket.enrollment_id == enrollment_id).order_by(col(Ticket.id))
        ).all()
        opened = []
        for ticket in tickets:
            route = session.exec(
                select(TicketEvent)
                .where(TicketEvent.ticket_id == ticket.id, TicketEvent.action == "route")
                .order_by(col(TicketEvent.seq))
            ).first()
            detail = route.detail if route is not None else {}
            opened.append(
                (
                    ticket.source,
                    ticket.category,
                    detail.get("tier", ticket.tier),
                    detail.get("priority", ticket.priority),
                    detail.get("department"),
                )
            )
    return {
        "id": patient,
        "variants": list(progress.variants),
        "status": progress.status.value,
        "reason": progress.stop_reason,
        "sent": progress.sent,
        "answered": progress.answered,
        "missed": progress.missed,
        "alerts": sorted(((rule, key) for rule, key in alerts), key=str),
        "tickets": sorted(opened, key=str),
    }


def _comparable(outcome: dict[str, Any]) -> dict[str, Any]:
    """JSON-shaped (lists, not tuples), as both sides are reported."""
    return {
        **outcome,
        "alerts": [list(a) for a in outcome["alerts"]],
        "tickets": [list(t) for t in outcome["tickets"]],
    }


async def replay_patient(
    simulator: Simulator, journey: SimulatedJourney, runtime: Runtime, env: WorkflowEnvironment
) -> PatientCheck:
    """Run one simulated patient through the real system; compare the outcomes."""
    end = simulator.end
    now = await env.get_current_time()
    origin = journey.core.origin
    shift = dt.timedelta(days=max(0, math.ceil((now - origin) / dt.timedelta(days=1))) + 1)
    await env.sleep(origin + shift - now)
    enrollment = await register_discharge(runtime, _discharge(simulator, journey, shift))
    client = await runtime.client()
    handle = client.get_workflow_handle_for(PatientJourneyWorkflow.run, enrollment.workflow_id)
    events: list[tuple[dt.datetime, str, Any]] = [
        (at, "answer", (key, answers, text)) for at, key, answers, text in journey.script
    ]
    events += [(at, "message", text) for at, text in journey.messages]
    for at, kind, payload in sorted(events, key=lambda e: e[0]):
        if at >= end:
            continue
        await _advance(env, handle, at + shift)
        if kind == "answer":
            key, answers, text = payload
            await handle.signal(
                PatientJourneyWorkflow.answer,
                AnswerEvent(answers=answers, text=text, touchpoint_key=key),
            )
        else:
            await open_ticket(
                runtime,
                TicketIn(
                    patient_id=enrollment.patient_id,
                    text=payload,
                    source=TicketSource.PATIENT_MESSAGE,
                    enrollment_id=enrollment.enrollment_id,
                ),
            )
    await _advance(env, handle, end + shift - dt.timedelta(seconds=1))
    await _settled(env, handle)
    progress = await handle.query(PatientJourneyWorkflow.progress)
    simulated = _comparable(simulator.outcome_of(journey))
    real = _comparable(_real_outcome(runtime, enrollment.enrollment_id, progress, journey.id))
    differences = [
        f"{field}: simulated {simulated[field]!r}, real {real.get(field)!r}"
        for field in simulated
        if field != "id" and simulated[field] != real.get(field)
    ]
    return PatientCheck(
        patient=journey.id,
        matches=not differences,
        differences=differences,
        simulated=simulated,
        real=real,
    )


async def verify_sample(
    simulator: Simulator,
    journeys: list[SimulatedJourney],
    runtime: Runtime,
    env: WorkflowEnvironment,
    *,
    progress: Any = None,
) -> VerifyReport:
    """Replay ``journeys`` one at a time on ``env`` (a worker for ``runtime`` must be running)."""
    started = time.perf_counter()
    checks = []
    for number, journey in enumerate(journeys, 1):
        checks.append(await replay_patient(simulator, journey, runtime, env))
        if progress is not None:
            progress(number / len(journeys))
    return VerifyReport(
        pathway=simulator.template.id,
        checked=len(checks),
        matched=sum(check.matches for check in checks),
        patients=checks,
        elapsed_seconds=round(time.perf_counter() - started, 2),
    )


async def verify_on_test_server(
    simulator: Simulator,
    count: int,
    settings: Settings,
    plugins: Plugins,
    *,
    template: PathwayTemplate | None = None,
    progress: Any = None,
) -> VerifyReport:
    """Start a time-skipping test server and a worker on a scratch database; verify ``count``.

    The replay writes only to a temporary database, never to the hospital's. ``template``
    (a dry-run file not installed yet) is added to the scratch runtime's catalog.
    """

    journeys = pick_sample(simulator, count, simulator.config.seed)
    with tempfile.TemporaryDirectory(prefix="suifang-verify-") as scratch:
        data_dir = Path(scratch)
        scratch_settings = settings.model_copy(
            update={
                "data_dir": data_dir,
                "database_url": f"sqlite:///{data_dir / 'verify.db'}",
                "task_queue": f"verify-{uuid.uuid4().hex[:8]}",
            }
        )
        scratch_runtime = Runtime.from_settings(scratch_settings, plugins=plugins)
        catalog = plugins.pathway_catalog()
        if template is not None and template.key not in {t.key for t in catalog.current()}:
            catalog.add(template, "--template")
        scratch_runtime._catalog = catalog
        prepare_database(scratch_runtime.engine)
        env = await WorkflowEnvironment.start_time_skipping(
            test_server_existing_path=str(find_binary("temporal-test-server")),
            data_converter=data_converter(scratch_runtime.codec),
        )
        try:
            scratch_runtime.with_client(env.client)
            async with build_worker(env.client, scratch_runtime):
                return await verify_sample(
                    simulator, journeys, scratch_runtime, env, progress=progress
                )
        finally:
            await env.shutdown()
            scratch_runtime.close()
