"""Journey throughput: suifang journeys against a bare-Temporal baseline of the same shape.

Both run in one process, on one dev server, in one run (alternating when ``--rounds`` > 1),
so whatever else the machine is doing hits both alike. A suifang journey is enrolled through
intake (``register_discharge``, what ``POST /intake/discharges`` calls) on the ``bench-four``
pathway at ``time_scale`` 100000 (the largest intake accepts: a plan day is 0.864 s), its
four touchpoints are delivered over the ``bench`` channel and answered through the ``answer``
signal (``journey_service.send_answer``, what the answer endpoint calls) by a simulated
patient as soon as the message arrives. The baseline journey sleeps until the same due
instants, runs one no-op activity per touchpoint and waits for the same signal.

Throughput is journeys completed per second: N / (last completion − first start).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import datetime as dt
import time
import uuid
from pathlib import Path
from typing import Any

import baseline
import bench_plugin
import psutil
from harness import Platform, Profiles, log, machine, run_pool, summary_line
from sqlmodel import Session
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from suifang.core.channels import OutboundMessage
from suifang.core.errors import ValidationFailed
from suifang.core.pathways import JourneyPlan, resolve_plan
from suifang.core.runtime import Runtime
from suifang.workflows import journey_service
from suifang.workflows.intake import DischargeIn, register_discharge
from suifang.workflows.journey import JourneyResult
from suifang.workflows.journey_commands import AnswerEvent
from suifang.workflows.journey_core import JourneyCore, JourneySetup
from suifang.workflows.worker import build_worker

TIME_SCALE = 100_000.0
TIMEZONE = "Asia/Shanghai"
ANSWERS = {"feeling": "good", "fever": "no", "pain": "2", "sbp": "126"}
ANSWERERS = 8
HOT_SPOTS = (
    "register_discharge",
    "send_answer",
    "_handle_activation",
    "send_journey_message",
    "record_batch",
    "deliver",
    "render",
    "touchpoint",
    "encode",
    "decode",
    "to_payloads",
    "from_payloads",
    "commit",
)
PHASE_TIMEOUT = 1800.0
"""Seconds before a phase whose journeys do not finish is reported as a failure."""


@dataclasses.dataclass
class Phase:
    name: str
    journeys: int
    seconds: float
    start_seconds: float
    completed: int
    server_cpu: float
    own_cpu: float
    timer_floor: float

    @property
    def per_second(self) -> float:
        return self.journeys / self.seconds if self.seconds else 0.0


class CpuClock:
    """CPU seconds used by this process and the dev server between two points."""

    def __init__(self, server_pid: int) -> None:
        self.own = psutil.Process()
        self.server = psutil.Process(server_pid)
        self.start = self._read()

    def _read(self) -> tuple[float, float]:
        own, server = self.own.cpu_times(), self.server.cpu_times()
        return own.user + own.system, server.user + server.system

    def used(self) -> tuple[float, float]:
        own, server = self._read()
        return own - self.start[0], server - self.start[1]


def due_instants(plan: JourneyPlan, discharged_at: dt.datetime) -> list[dt.datetime]:
    """The real instants a suifang journey discharged at ``discharged_at`` sends at."""
    setup = JourneySetup(
        enrollment_id=0,
        patient_id=0,
        plan=plan,
        discharged_at=discharged_at,
        timezone=TIMEZONE,
        time_scale=TIME_SCALE,
    )
    return [due for _, _, due in JourneyCore(setup).schedule(limit=20)]


def discharge(number: int, run: str) -> DischargeIn:
    return DischargeIn.model_validate(
        {
            "pathway": bench_plugin.PATHWAY_ID,
            "time_scale": TIME_SCALE,
            "patient": {"external_id": f"B-{run}-{number}", "name": "王秀英", "sex": "female"},
            "encounter": {
                "external_id": f"V-{run}-{number}",
                "department": "general_medicine",
                "discharged_at": dt.datetime.now(dt.UTC).isoformat(),
                "length_of_stay_days": 3,
            },
        }
    )


async def run_suifang(
    runtime: Runtime, server_pid: int, journeys: int, concurrency: int
) -> tuple[Phase, list[str]]:
    client = await runtime.client()
    run = uuid.uuid4().hex[:6]
    inbox: asyncio.Queue[tuple[str, str]] = asyncio.Queue()

    def delivered(message: OutboundMessage) -> None:
        if message.metadata.get("kind") == "touchpoint":
            workflow_id, key = message.idempotency_key.rsplit(":", 1)
            inbox.put_nowait((workflow_id, key))

    async def patient() -> None:
        while True:
            workflow_id, key = await inbox.get()
            enrollment_id = int(workflow_id.split("-")[1])  # journey-<enrollment>-<token>
            try:
                with Session(runtime.engine) as session:
                    await journey_service.send_answer(
                        runtime,
                        session,
                        enrollment_id,
                        AnswerEvent(answers=ANSWERS, touchpoint_key=key, channel="bench"),
                    )
            except ValidationFailed:
                # Intake has not marked the enrollment active yet: answer a moment later.
                await asyncio.sleep(0.05)
                inbox.put_nowait((workflow_id, key))

    template = runtime.catalog.get(bench_plugin.PATHWAY_ID)
    floor = _timer_floor(resolve_plan(template))
    bench_plugin.listeners.append(delivered)
    patients = [asyncio.ensure_future(patient()) for _ in range(ANSWERERS)]
    cpu = CpuClock(server_pid)
    began = time.monotonic()
    try:
        enrollments = await run_pool(
            journeys,
            concurrency,
            lambda number: register_discharge(runtime, discharge(number, run)),
        )
        started = time.monotonic() - began
        results: list[Any] = await asyncio.wait_for(
            asyncio.gather(
                *(
                    client.get_workflow_handle(e.workflow_id, result_type=JourneyResult).result()
                    for e in enrollments
                )
            ),
            timeout=PHASE_TIMEOUT,
        )
        elapsed = time.monotonic() - began
    finally:
        bench_plugin.listeners.remove(delivered)
        for task in patients:
            task.cancel()
    own_cpu, server_cpu = cpu.used()
    completed = sum(1 for r in results if r.status == "completed" and r.progress.answered == 4)
    phase = Phase("suifang", journeys, elapsed, started, completed, server_cpu, own_cpu, floor)
    return phase, [e.workflow_id for e in enrollments]


def _timer_floor(plan: JourneyPlan) -> float:
    """Seconds a journey takes if everything but its timers took no time at all."""
    now = dt.datetime.now(dt.UTC)
    return (due_instants(plan, now)[-1] - now).total_seconds()


async def run_baseline(
    plain: Client, plan: JourneyPlan, server_pid: int, journeys: int, concurrency: int
) -> tuple[Phase, list[str]]:
    run = uuid.uuid4().hex[:6]
    inbox: asyncio.Queue[tuple[str, int]] = asyncio.Queue()

    def sent(workflow_id: str, index: int) -> None:
        inbox.put_nowait((workflow_id, index))

    async def patient() -> None:
        while True:
            workflow_id, index = await inbox.get()
            await plain.get_workflow_handle(workflow_id).signal("answer", index)

    async def start(number: int) -> str:
        workflow_id = f"baseline-{run}-{number}"
        await plain.start_workflow(
            baseline.BaselineJourney.run,
            baseline.BaselineInput(
                due_at=[d.timestamp() for d in due_instants(plan, dt.datetime.now(dt.UTC))]
            ),
            id=workflow_id,
            task_queue="baseline",
        )
        return workflow_id

    baseline.listeners.append(sent)
    patients = [asyncio.ensure_future(patient()) for _ in range(ANSWERERS)]
    cpu = CpuClock(server_pid)
    began = time.monotonic()
    try:
        ids = await run_pool(journeys, concurrency, start)
        started = time.monotonic() - began
        results = await asyncio.wait_for(
            asyncio.gather(*(plain.get_workflow_handle(i, result_type=int).result() for i in ids)),
            timeout=PHASE_TIMEOUT,
        )
        elapsed = time.monotonic() - began
    finally:
        baseline.listeners.remove(sent)
        for task in patients:
            task.cancel()
    own_cpu, server_cpu = cpu.used()
    completed = sum(1 for r in results if r == 4)
    phase = Phase(
        "baseline", journeys, elapsed, started, completed, server_cpu, own_cpu, _timer_floor(plan)
    )
    return phase, ids


async def history_profile(client: Client, workflow_id: str) -> dict[str, int]:
    """Events of one journey's history by kind, and the bytes of payload it carried."""
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    kinds: collections.Counter[str] = collections.Counter()
    payload_bytes = 0
    local_activities = 0
    for event in history.events:
        kinds[EventType.Name(event.event_type)] += 1
        payload_bytes += _payload_bytes(event)
        # A local activity leaves no ActivityTaskScheduled, only a marker on the task's result.
        if event.marker_recorded_event_attributes.marker_name == "core_local_activity":
            local_activities += 1
    return {
        "events": len(history.events),
        "activities": kinds["EVENT_TYPE_ACTIVITY_TASK_SCHEDULED"],
        "local_activities": local_activities,
        "timers": kinds["EVENT_TYPE_TIMER_STARTED"],
        "workflow_tasks": kinds["EVENT_TYPE_WORKFLOW_TASK_COMPLETED"],
        "signals": kinds["EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED"],
        "payload_bytes": payload_bytes,
    }


def _payload_bytes(message: Any) -> int:
    """Bytes of every Payload inside a protobuf message (as stored: encoded, encrypted)."""
    if message.DESCRIPTOR.full_name == "temporal.api.common.v1.Payload":
        return len(message.data)
    total = 0
    for field, value in message.ListFields():
        if field.type != field.TYPE_MESSAGE:
            continue
        if field.message_type.GetOptions().map_entry:
            items = list(value.values())
        elif field.is_repeated:
            items = list(value)
        else:
            items = [value]
        total += sum(_payload_bytes(item) for item in items if hasattr(item, "ListFields"))
    return total


def _report_profile(profiles: Profiles) -> None:
    busy = profiles.by_package()
    total = sum(seconds for _, seconds in busy)
    log(f"profile of the suifang phases: {total:.1f} s of CPU in this process (under cProfile)")
    for package, seconds in busy[:20]:
        log(f"  {package:<32} {seconds:7.2f} s  {seconds / total:6.1%}")
    log("where it goes (CPU inside each, including what it calls):")
    for name, calls, seconds in profiles.cumulative(HOT_SPOTS):
        log(f"  {name:<32} {calls:7d} calls {seconds:7.2f} s  {seconds / total:6.1%}")
    log("busiest functions:\n" + profiles.top_functions(30))


async def main(args: Any) -> str:
    async with Platform(keep=args.keep) as platform:
        runtime = platform.runtime
        assert runtime is not None
        assert platform.server.process is not None
        server_pid = platform.server.process.pid
        client = await runtime.client()
        plain = await Client.connect(runtime.settings.temporal_address)
        plan = resolve_plan(runtime.catalog.get(bench_plugin.PATHWAY_ID))
        profiles = Profiles() if args.profile else None
        worker = build_worker(
            client,
            runtime,
            **({"workflow_task_executor": profiles.executor()} if profiles else {}),
        )
        bare_worker = Worker(
            plain,
            task_queue="baseline",
            workflows=[baseline.BaselineJourney],
            activities=[baseline.baseline_send],
            # Whatever runner suifang's worker uses (unsandboxed unless
            # SUIFANG_WORKER_WORKFLOW_SANDBOX is on): the ratio is suifang's own overhead.
            workflow_runner=worker.config().get("workflow_runner") or SandboxedWorkflowRunner(),
        )
        phases: list[Phase] = []
        async with worker, bare_worker:
            if args.warmup:
                log(f"warm-up: {args.warmup} journeys of each kind")
                await run_baseline(plain, plan, server_pid, args.warmup, args.concurrency)
                await run_suifang(runtime, server_pid, args.warmup, args.concurrency)
            for round_number in range(args.rounds):
                order = (
                    ("baseline", "suifang") if round_number % 2 == 0 else ("suifang", "baseline")
                )
                for kind in order:
                    log(f"round {round_number + 1}: {args.journeys} {kind} journeys")
                    if kind == "suifang":
                        with profiles.main_thread() if profiles else contextlib.nullcontext():
                            phase, ids = await run_suifang(
                                runtime, server_pid, args.journeys, args.concurrency
                            )
                        suifang_profile = await history_profile(client, ids[0])
                    else:
                        phase, ids = await run_baseline(
                            plain, plan, server_pid, args.journeys, args.concurrency
                        )
                        baseline_profile = await history_profile(plain, ids[0])
                    log(
                        f"  {phase.per_second:.1f} journeys/s ({phase.seconds:.1f} s, starts "
                        f"{phase.start_seconds:.1f} s, {phase.completed}/{phase.journeys} "
                        f"completed; CPU: this process {phase.own_cpu:.1f} s, dev server "
                        f"{phase.server_cpu:.1f} s)"
                    )
                    phases.append(phase)
    ours = [p for p in phases if p.name == "suifang"]
    bare = [p for p in phases if p.name == "baseline"]
    suifang_rate = sum(p.journeys for p in ours) / sum(p.seconds for p in ours)
    baseline_rate = sum(p.journeys for p in bare) / sum(p.seconds for p in bare)
    if profiles:
        _report_profile(profiles)
        if args.profile_out:
            profiles.dump(Path(args.profile_out))
            log(f"profile written to {args.profile_out}")
    log(f"one suifang journey's history: {suifang_profile}")
    log(f"one baseline journey's history: {baseline_profile}")
    return summary_line(
        "journey_throughput",
        {
            "journeys": args.journeys,
            "rounds": args.rounds,
            "suifang_per_s": suifang_rate,
            "baseline_per_s": baseline_rate,
            "ratio": suifang_rate / baseline_rate,
            "suifang_completed": sum(p.completed for p in ours),
            "baseline_completed": sum(p.completed for p in bare),
            "timer_floor_s": ours[0].timer_floor,
            "workflow_sandbox": runtime.settings.worker_workflow_sandbox,
            "suifang_activities_per_journey": suifang_profile["activities"],
            "baseline_activities_per_journey": baseline_profile["activities"],
            "suifang_local_activities_per_journey": suifang_profile["local_activities"],
            "suifang_workflow_tasks_per_journey": suifang_profile["workflow_tasks"],
            "baseline_workflow_tasks_per_journey": baseline_profile["workflow_tasks"],
            "suifang_history_payload_bytes": suifang_profile["payload_bytes"],
            "baseline_history_payload_bytes": baseline_profile["payload_bytes"],
            "suifang_cpu_own_s": sum(p.own_cpu for p in ours),
            "suifang_cpu_server_s": sum(p.server_cpu for p in ours),
            "baseline_cpu_own_s": sum(p.own_cpu for p in bare),
            "baseline_cpu_server_s": sum(p.server_cpu for p in bare),
            "load1": machine()["load1"],
        },
    )
