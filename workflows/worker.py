"""The worker: suifang's workflows and activities on one task queue."""

from __future__ import annotations

from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker

from suifang.core.runtime import Runtime
from suifang.workflows.journey import PatientJourneyWorkflow
from suifang.workflows.journey_activities import JourneyActivities
from suifang.workflows.ticket import FeedbackTicketWorkflow
from suifang.workflows.ticket_activities import TicketActivities

__all__ = ["WORKFLOWS", "build_worker", "run_worker"]

WORKFLOWS: list[type] = [PatientJourneyWorkflow, FeedbackTicketWorkflow]


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
    return Worker(
        client,
        task_queue=task_queue or runtime.settings.task_queue,
        workflows=WORKFLOWS,
        activities=activities if activities is not None else activities_for(runtime),
        **options,
    )


async def run_worker(runtime: Runtime) -> None:
    client = await runtime.client()
    worker = build_worker(client, runtime)
    await worker.run()
