"""The worker: suifang's workflows and activities on one task queue."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from temporalio import activity
from temporalio.client import Client
from temporalio.worker import (
    ActivityInboundInterceptor,
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

__all__ = ["WORKFLOWS", "HeartbeatInterceptor", "build_worker", "run_worker"]

WORKFLOWS: list[type] = [PatientJourneyWorkflow, FeedbackTicketWorkflow]


class _BeatWhileRunning(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        timeout = activity.info().heartbeat_timeout
        if not timeout:
            return await self.next.execute_activity(input)

        async def beat() -> None:
            while True:
                await asyncio.sleep(timeout.total_seconds() / 4)
                activity.heartbeat()

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
    """

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _BeatWhileRunning(next)


def activities_for(runtime: Runtime) -> list[Any]:
    return [*JourneyActivities(runtime).all(), *TicketActivities(runtime).all()]


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
    # Activities touch the database synchronously and never await with a connection checked
    # out (tests/workflows/test_worker.py checks each one), so however many run at once they
    # hold at most one connection between them: the pool does not bound them. Local
    # activities (the journey's records, the ticket's read-model save) get as many slots.
    if "max_concurrent_activities" not in options:
        options["max_concurrent_activities"] = runtime.settings.worker_max_concurrent_activities
    options.setdefault("max_concurrent_local_activities", options["max_concurrent_activities"])
    return Worker(
        client,
        task_queue=task_queue or runtime.settings.task_queue,
        workflows=WORKFLOWS,
        activities=activities if activities is not None else activities_for(runtime),
        interceptors=[HeartbeatInterceptor(), *options.pop("interceptors", ())],
        **options,
    )


async def run_worker(runtime: Runtime) -> None:
    client = await runtime.client(wait=runtime.settings.temporal_connect_wait)
    worker = build_worker(client, runtime)
    await worker.run()
