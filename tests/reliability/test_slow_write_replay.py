"""A journey whose record write outlives its workflow tasks still replays as it ran.

The fault drill found it under CPU load: a write slow enough to outlast a workflow task, with
the patient's messages arriving meanwhile, left journeys whose history could not be replayed
(``[TMPRL1100] Nondeterminism error: Missing associated machine for LocalActivity``), so the
journey could no longer answer a query or survive a worker restart. The write was a local
activity then: its result lived in the worker until a later task recorded it as a marker,
and replay met it at a different point among the signals than the live run had.

Here the write is made slow on purpose — the real activity after holding the worker's event
loop longer than the workflow task timeout, as a slow synchronous query does — on a real dev
server with the real worker, while observations arrive from another client one after
another. Every observation must be recorded once, and the history the server kept must
replay with the workflow code.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import inspect
import threading
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlmodel import Session, select
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from suifang.core.enums import JourneyStatus
from suifang.core.models import Observation
from suifang.core.runtime import Runtime
from suifang.workflows.intake import register_discharge
from suifang.workflows.journey import JourneyInput, PatientJourneyWorkflow
from suifang.workflows.journey_activities import JourneyActivities
from suifang.workflows.journey_commands import ControlEvent, ObservationEvent, ObservationValue
from suifang.workflows.journey_records import RecordBatch
from suifang.workflows.worker import WORKFLOWS, activities_for, build_worker
from tests.workflows.test_journey_workflow import discharge

pytestmark = [pytest.mark.devserver, pytest.mark.slow, pytest.mark.timeout(180)]

TASK_TIMEOUT = dt.timedelta(seconds=1)
"""The journey's workflow task timeout, short so the test is: production's is 10 s."""
SLOW_WRITE = 2.5
"""Seconds every record write holds the worker's event loop before writing."""
OBSERVATIONS = 8


def _slowed(activities: list[Any]) -> list[Any]:
    """The worker's activities, the record write replaced by the real one after a stall."""
    name = JourneyActivities.record_batch.__name__
    real = next(a for a in activities if getattr(a, "__name__", "") == name)

    @activity.defn(name="record_batch")
    async def slow_record_batch(batch: RecordBatch) -> None:
        time.sleep(SLOW_WRITE)  # noqa: ASYNC251 - holds the loop, as a slow sync query does
        written = real(batch)
        if inspect.isawaitable(written):
            await written

    return [slow_record_batch if a is real else a for a in activities]


@pytest.fixture
async def slow_writer(
    runtime: Runtime, dev_server_env: WorkflowEnvironment
) -> AsyncIterator[Client]:
    """A real worker on the dev server whose record writes outlast a workflow task."""
    runtime.settings.task_queue = f"slow-write-{uuid.uuid4().hex[:8]}"
    runtime.with_client(dev_server_env.client)
    worker = build_worker(
        dev_server_env.client, runtime, activities=_slowed(activities_for(runtime))
    )
    async with worker:
        yield dev_server_env.client


async def _with_short_tasks(client: Client, runtime: Runtime, workflow_id: str) -> WorkflowHandle:
    """The journey intake started, run again from its own input with a short task timeout."""
    started = client.get_workflow_handle(workflow_id)
    history = await started.fetch_history()
    payloads = history.events[0].workflow_execution_started_event_attributes.input.payloads
    [journey] = await client.data_converter.decode(payloads, [JourneyInput])
    await started.terminate("restarted with a short workflow task timeout")
    return await client.start_workflow(
        PatientJourneyWorkflow.run,
        journey,
        id=workflow_id,
        task_queue=runtime.settings.task_queue,
        task_timeout=TASK_TIMEOUT,
    )


def _observe_from_another_client(client: Client, workflow_id: str) -> threading.Thread:
    """Observations sent one after another by a client with its own event loop (the worker's
    loop is held by the slow writes, as a busy worker's would be)."""

    async def send() -> None:
        other = await Client.connect(
            client.service_client.config.target_host,
            namespace=client.namespace,
            data_converter=client.data_converter,
        )
        handle = other.get_workflow_handle_for(PatientJourneyWorkflow.run, workflow_id)
        for value in range(OBSERVATIONS):
            await handle.signal(
                PatientJourneyWorkflow.observe,
                ObservationEvent(
                    observations=[ObservationValue(indicator="pain_score", value=value)]
                ),
            )
            await asyncio.sleep(SLOW_WRITE * 0.45)  # some during a write, some between two

    sender = threading.Thread(target=asyncio.run, args=(send(),))
    sender.start()
    return sender


async def test_observations_arriving_during_slow_writes_are_kept_and_replay_as_they_ran(
    runtime: Runtime, slow_writer: Client
) -> None:
    client = slow_writer
    enrollment = await register_discharge(
        runtime, discharge(runtime, runtime.catalog.get("pci"), dt.datetime.now(dt.UTC))
    )
    handle = await _with_short_tasks(client, runtime, enrollment.workflow_id)
    sender = _observe_from_another_client(client, enrollment.workflow_id)
    while sender.is_alive():
        await asyncio.sleep(0.1)

    def recorded() -> list[float]:
        with Session(runtime.engine) as session:
            rows = session.exec(
                select(Observation).where(Observation.enrollment_id == enrollment.enrollment_id)
            ).all()
        return sorted(row.value for row in rows)

    deadline = time.monotonic() + 60
    while len(recorded()) < OBSERVATIONS and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
    assert recorded() == list(range(OBSERVATIONS))  # each once: none lost, none twice
    await handle.execute_update(
        PatientJourneyWorkflow.control, ControlEvent(action="stop", reason="test end")
    )
    assert (await handle.result()).status == JourneyStatus.STOPPED

    history = await handle.fetch_history()
    # The slow writes did outlast workflow tasks: the server timed some out meanwhile.
    assert any(e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT for e in history.events)
    replayer = Replayer(
        workflows=list(WORKFLOWS),
        data_converter=dataclasses.replace(client.data_converter),
        interceptors=[TracingInterceptor()],
    )
    replayed = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert replayed.replay_failure is None, str(replayed.replay_failure)
