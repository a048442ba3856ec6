"""The worker: suifang's workflows and activities on one task queue."""

from __future__ import annotations

import asyncio
import contextlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from temporalio import activity
from temporalio.client import Client
from temporalio.worker import (
    ActivityInboundInterceptor,
    ActivityOutboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
    UnsandboxedWorkflowRunner,
    Worker,
)

from suifang.core.runtime import Runtime
from suifang.tickets.activities import TicketActivities
from suifang.tickets.workflow import FeedbackTicketWorkflow
from suifang.workflows.journey import PatientJourneyWorkflow
from suifang.workflows.journey_activities import JourneyActivities
from suifang.workflows.survey_workflow import SurveyCampaignWorkflow
from suifang.workflows.surveys import SurveyActivities

__all__ = ["WORKFLOWS", "HeartbeatInterceptor", "activity_threads", "build_worker", "run_worker"]

WORKFLOWS: list[type] = [PatientJourneyWorkflow, FeedbackTicketWorkflow, SurveyCampaignWorkflow]


class _BeatWhileRunning(ActivityInboundInterceptor):
    def init(self, outbound: ActivityOutboundInterceptor) -> None:
        self.outbound = outbound
        super().init(outbound)

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        timeout = activity.info().heartbeat_timeout
        if not timeout:
            return await self.next.execute_activity(input)

        async def beat() -> None:
            while True:
                await asyncio.sleep(timeout.total_seconds() / 4)
                # Straight to the worker, not activity.heartbeat(): for a sync activity
                # that hands the beat to the event loop and blocks until the loop takes it,
                # which from the loop itself would block the loop.
                self.outbound.heartbeat()

        beating = asyncio.ensure_future(beat())
        try:
            return await self.next.execute_activity(input)
        finally:
            beating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beating


class HeartbeatInterceptor(Interceptor):
    """Heartbeats every activity that has a heartbeat timeout, for as long as it runs.

    Without heartbeats the server learns that a worker died (SIGKILL, OOM, a lost node) only
    when the activity's start-to-close timeout runs out — two minutes for a send — and every
    journey waiting on it stalls that long. With them, the activity is retried on a live
    worker as soon as the heartbeat timeout passes; activities are idempotent, so a retry of
    one that did finish changes nothing.

    The beats come from the event loop, whatever runs the activity: a sync activity in its
    thread, stuck in a slow statement, is still heard from, and so is every other activity
    while it is stuck (tests/workflows/test_worker.py).
    """

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _BeatWhileRunning(next)


def activities_for(runtime: Runtime) -> list[Any]:
    return [
        *JourneyActivities(runtime).all(),
        *TicketActivities(runtime).all(),
        *SurveyActivities(runtime).all(),
    ]


def build_worker(
    client: Client,
    runtime: Runtime,
    *,
    task_queue: str | None = None,
    activities: list[Any] | None = None,
    **options: Any,
) -> Worker:
    """A worker for ``runtime`` (tests pass a random task queue)."""
    if "max_cached_workflows" not in options:
        options["max_cached_workflows"] = runtime.settings.worker_max_cached_workflows
    if "workflow_runner" not in options and not runtime.settings.worker_workflow_sandbox:
        # Determinism is checked where it is cheap: the replay test and the test suite run
        # every workflow sandboxed (see SUIFANG_WORKER_WORKFLOW_SANDBOX).
        options["workflow_runner"] = UnsandboxedWorkflowRunner()
    # Local activities (the journey's records, the ticket's read-model save) get as many
    # slots as activities.
    if "max_concurrent_activities" not in options:
        options["max_concurrent_activities"] = runtime.settings.worker_max_concurrent_activities
    options.setdefault("max_concurrent_local_activities", options["max_concurrent_activities"])
    if "activity_executor" not in options:
        options["activity_executor"] = activity_threads(
            options["max_concurrent_activities"] + options["max_concurrent_local_activities"]
        )
    return Worker(
        client,
        task_queue=task_queue or runtime.settings.task_queue,
        workflows=options.pop("workflows", WORKFLOWS),
        activities=activities if activities is not None else activities_for(runtime),
        interceptors=[HeartbeatInterceptor(), *options.pop("interceptors", ())],
        **options,
    )


def activity_threads(slots: int) -> ThreadPoolExecutor:
    """The threads the worker's database activities run on, one per activity slot.

    Activities that only use the database are sync (``def``) and run here; those that also
    await a provider run their database sections with :func:`~suifang.core.db.in_thread`
    (AnyIO's threads, 40 by default). Either way no statement runs on the event loop, where
    one stuck behind a lock (up to the statement timeout, 30 s) would stop every heartbeat
    and every other activity with it. A thread that finds the connection pool empty waits
    in its own thread, up to the pool timeout.
    """
    return ThreadPoolExecutor(max_workers=slots, thread_name_prefix="suifang-activity")


async def run_worker(runtime: Runtime) -> None:
    client = await runtime.client(wait=runtime.settings.temporal_connect_wait)
    worker = build_worker(client, runtime)
    await worker.run()
