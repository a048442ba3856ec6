"""SLA timer lateness: how late ticket workflows handle their SLA warnings and breaches.

N tickets are opened the way ``POST /tickets`` opens them (L1 triage of the text, the ticket
row, the FeedbackTicket workflow) except that each carries an SLA policy whose resolution
target makes its breach fall due at ``T0 + window * i / N`` and its warning 20 s before
(``--warning-lead``) — so every timer of every ticket falls due within ``window`` (+ 20 s),
after all tickets are open. The real worker runs in its own process with its default cache.

Lateness = the instant the workflow handled the timer (the ``at`` of the ``sla_warning`` /
``sla_breach`` ticket event that ``sync_ticket`` writes: the workflow's clock when the timer
fired) minus its due instant (the clock's start, from the ``route`` event, plus the target,
computed with the same ``deadline`` function the ticket core uses). "Recorded" lateness
also counts the ``notify_staff`` activity: the staff notification row's ``created_at``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import time
from typing import Any

from harness import (
    Platform,
    describe_latencies,
    log,
    machine,
    run_pool,
    summary_line,
)
from sqlmodel import Session, col, select
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from suifang.core.enums import Priority, TicketSource, Tier
from suifang.core.models import Encounter, Patient, StaffNotification, TicketEvent
from suifang.core.runtime import Runtime
from suifang.core.triage import TriageRequest
from suifang.tickets.opening import build_ticket, sla_policy
from suifang.tickets.sla import SlaPolicy, SlaTarget, deadline
from suifang.tickets.workflow import FeedbackTicketWorkflow, TicketInput

WARNING_LEAD = dt.timedelta(seconds=20)  # the default; --warning-lead
TEXT = "出院后伤口有点痒,需要换药吗?"


@dataclasses.dataclass(frozen=True)
class Planned:
    ticket_id: int
    workflow_id: str
    target: dt.timedelta
    warn_at: float


def policy_with(target: dt.timedelta, warn_at: float) -> SlaPolicy:
    """The shipped policy (calendars and all) with one 24/7 target for every tier and priority."""
    shipped = sla_policy()
    only = SlaTarget(
        calendar="always", resolution=target, warn_at=warn_at, on_breach=("notify_supervisor",)
    )
    return SlaPolicy(
        calendars=shipped.calendars,
        targets={tier: dict.fromkeys(Priority, only) for tier in Tier},
        departments={},
    )


def make_patient(runtime: Runtime) -> int:
    with Session(runtime.engine) as session:
        patient = Patient(external_id="SLA-BENCH-1", name="张伟", sex="male")
        session.add(patient)
        session.flush()
        session.add(
            Encounter(
                patient_id=patient.id,  # type: ignore[arg-type]
                external_id="SLA-BENCH-V1",
                department_code="general_medicine",
                discharged_at=dt.datetime.now(dt.UTC),
            )
        )
        session.commit()
        return patient.id  # type: ignore[return-value]


async def open_ticket(
    runtime: Runtime,
    patient_id: int,
    due: dt.datetime | None,
    warning_lead: dt.timedelta = WARNING_LEAD,
) -> Planned:
    """``tickets.service.open_ticket`` with the benchmark's policy in the workflow's setup: its
    breach falls due at ``due``. With ``due`` None, the shipped policy, as the API opens it."""
    client = await runtime.client()
    with Session(runtime.engine, expire_on_commit=False) as session:
        triage = runtime.plugins.triage(
            TriageRequest(text=TEXT, locale="zh-CN", source=TicketSource.PATIENT_MESSAGE)
        )
        now = dt.datetime.now(dt.UTC)
        start = build_ticket(
            session,
            patient_id=patient_id,
            source=TicketSource.PATIENT_MESSAGE,
            summary=TEXT,
            triage=triage,
            opened_at=now,
            department="general_medicine",
            tier=Tier.L2,
        )
    setup, target, warn_at = start.setup, dt.timedelta(0), 0.0
    if due is not None:
        target = max(due - now, warning_lead * 2)
        warn_at = 1 - warning_lead / target
        setup = setup.model_copy(update={"policy": policy_with(target, warn_at)})
    await client.start_workflow(
        FeedbackTicketWorkflow.run,
        TicketInput(setup=setup),
        id=start.workflow_id,
        task_queue=runtime.settings.task_queue,
    )
    return Planned(start.ticket_id, start.workflow_id, target, warn_at)


def handled(runtime: Runtime) -> int:
    with Session(runtime.engine) as session:
        return len(
            session.exec(
                select(TicketEvent.id).where(
                    col(TicketEvent.action).in_(["sla_warning", "sla_breach"])
                )
            ).all()
        )


def lateness(runtime: Runtime, planned: dict[int, Planned]) -> dict[str, list[float]]:
    """Seconds late per kind: handled by the workflow, and recorded by notify_staff."""
    calendar = sla_policy().calendar("always")
    with Session(runtime.engine) as session:
        events = session.exec(
            select(TicketEvent).where(
                col(TicketEvent.action).in_(["route", "sla_warning", "sla_breach"])
            )
        ).all()
        notices = session.exec(select(StaffNotification)).all()
    started = {e.ticket_id: e.at for e in events if e.action == "route"}
    result: dict[str, list[float]] = {"warning": [], "breach": [], "recorded": []}
    due_of: dict[tuple[int, str], dt.datetime] = {}
    for ticket_id, plan in planned.items():
        begin = started[ticket_id]
        due_of[(ticket_id, "breach")] = deadline(begin, plan.target, calendar, [])
        due_of[(ticket_id, "warning")] = deadline(begin, plan.target * plan.warn_at, calendar, [])
    for event in events:
        if event.action == "route":
            continue
        kind = event.action.removeprefix("sla_")
        due = due_of[(event.ticket_id, kind)]
        result[kind].append((event.at - due).total_seconds())
    for notice in notices:
        due = due_of[(notice.ticket_id, notice.kind)]
        result["recorded"].append((notice.created_at - due).total_seconds())
    return result


async def timer_breakdown(client: Client, workflow_ids: list[str]) -> dict[str, list[float]]:
    """Where a fired timer's lateness arises, from workflow histories (seconds):

    - ``start_skew``: the server starts a timer when the workflow task that asked for it
      completes, not at the workflow's ``now`` the duration was computed from;
    - ``fire``: the server fires it after start + duration;
    - ``dispatch``: the next workflow task starts (a worker picked it up) after the firing.
    """
    parts: dict[str, list[float]] = {"start_skew": [], "fire": [], "dispatch": []}
    for workflow_id in workflow_ids:
        history = await client.get_workflow_handle(workflow_id).fetch_history()
        task_started: dt.datetime | None = None
        timers: dict[str, tuple[dt.datetime, dt.timedelta]] = {}
        fired_at: dt.datetime | None = None
        for event in history.events:
            at = event.event_time.ToDatetime(dt.UTC)
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
                if fired_at is not None:
                    parts["dispatch"].append((at - fired_at).total_seconds())
                    fired_at = None
                task_started = at
            elif event.event_type == EventType.EVENT_TYPE_TIMER_STARTED:
                attributes = event.timer_started_event_attributes
                duration = attributes.start_to_fire_timeout.ToTimedelta()
                timers[attributes.timer_id] = (at, duration)
                if task_started is not None:
                    parts["start_skew"].append((at - task_started).total_seconds())
            elif event.event_type == EventType.EVENT_TYPE_TIMER_FIRED:
                started, duration = timers[event.timer_fired_event_attributes.timer_id]
                parts["fire"].append((at - started - duration).total_seconds())
                fired_at = at
    return parts


async def main(args: Any) -> str:
    async with Platform(keep=args.keep) as platform:
        runtime = platform.runtime
        assert runtime is not None
        worker = platform.start_worker_process(max_cached_workflows=args.max_cached)
        patient_id = make_patient(runtime)
        # Tickets open at a steady pace, as they would over the hours before their timers
        # fall due: a burst would only measure how far behind it leaves the worker.
        warning_lead = dt.timedelta(seconds=args.warning_lead)
        lead = args.tickets / args.open_rate + warning_lead.total_seconds() + 15
        window_start = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=lead)
        log(
            f"opening {args.tickets} tickets at {args.open_rate:g}/s; their breaches fall due "
            f"from {lead:.0f} s from now over {args.window:.0f} s"
        )
        step = dt.timedelta(seconds=args.window) / args.tickets
        began = time.monotonic()

        async def paced(number: int) -> Planned:
            delay = began + number / args.open_rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            return await open_ticket(
                runtime, patient_id, window_start + step * number, warning_lead
            )

        opened = await run_pool(args.tickets, args.concurrency, paced)
        open_seconds = time.monotonic() - began
        early_start = dt.datetime.now(dt.UTC) > window_start - warning_lead
        if early_start:
            log("warning: opening overran the start of the window; timers overlapped it")
        planned = {p.ticket_id: p for p in opened}
        expected = 2 * args.tickets
        window_end = window_start + dt.timedelta(seconds=args.window)
        while handled(runtime) < expected + 0:
            remaining = (window_end - dt.datetime.now(dt.UTC)).total_seconds()
            if remaining < -600:
                raise RuntimeError(f"only {handled(runtime)} of {expected} timers handled")
            await asyncio.sleep(1.0)
        await asyncio.sleep(2.0)
        late = lateness(runtime, planned)
        worker_rss = worker.rss()
        sampled = [p.workflow_id for p in opened[:: max(1, len(opened) // args.histories)]]
        parts = await timer_breakdown(await runtime.client(), sampled)
    for name, values in parts.items():
        shown = describe_latencies(values)
        log(
            f"timer {name:<10} p50 {shown['p50_ms']:7.1f} ms  p99 {shown['p99_ms']:7.1f} ms  "
            f"max {shown['max_ms']:7.1f} ms  ({len(values)} timers of {len(sampled)} tickets)"
        )
    every = late["warning"] + late["breach"]
    both = describe_latencies(every)
    warning = describe_latencies(late["warning"])
    breach = describe_latencies(late["breach"])
    recorded = describe_latencies(late["recorded"])
    return summary_line(
        "sla_lateness",
        {
            "tickets": args.tickets,
            "timers": len(every),
            "window_s": args.window,
            "open_per_s": args.tickets / open_seconds,
            "p50_ms": both["p50_ms"],
            "p99_ms": both["p99_ms"],
            "max_ms": both["max_ms"],
            "early": sum(1 for value in every if value < 0),
            "warning_p99_ms": warning["p99_ms"],
            "breach_p99_ms": breach["p99_ms"],
            "recorded_p50_ms": recorded["p50_ms"],
            "recorded_p99_ms": recorded["p99_ms"],
            "recorded_max_ms": recorded["max_ms"],
            "server_fire_p99_ms": describe_latencies(parts["fire"])["p99_ms"],
            "start_skew_p99_ms": describe_latencies(parts["start_skew"])["p99_ms"],
            "dispatch_p99_ms": describe_latencies(parts["dispatch"])["p99_ms"],
            "opening_overlapped_window": early_start,
            "worker_max_cached": (
                runtime.settings.worker_max_cached_workflows
                if args.max_cached is None
                else args.max_cached
            ),
            "worker_rss_mb": worker_rss / 2**20,
            "load1": machine()["load1"],
        },
    )
