"""A journey's records written in one batch: all of them in one transaction, in order, and a
retried batch (a worker that died after the commit) writes nothing twice."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlmodel import Session, select
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from suifang.core.enums import JourneyStatus, Priority, Tier, TouchpointStatus
from suifang.core.models import (
    Alert,
    Answer,
    Enrollment,
    Observation,
    PointsEntry,
    TouchpointRecord,
)
from suifang.core.pathways import LocalizedText
from suifang.core.runtime import Runtime
from suifang.workflows.intake import EnrollmentOut, register_discharge
from suifang.workflows.journey_activities import JourneyActivities
from suifang.workflows.journey_commands import ObservationValue
from suifang.workflows.journey_records import (
    AlertInput,
    AnswersInput,
    PointsInput,
    RecordBatch,
    StatusInput,
    TouchpointInput,
)
from tests.workflows.test_journey_workflow import discharge


def _answer_batch(enrollment_id: int, patient_id: int, at: dt.datetime) -> RecordBatch:
    """What one answered touchpoint leaves behind, as the workflow batches it."""
    ids: dict[str, Any] = {"enrollment_id": enrollment_id, "patient_id": patient_id}
    due = at - dt.timedelta(hours=2)
    return RecordBatch(
        items=[
            TouchpointInput(
                enrollment_id=enrollment_id, key="d3", touchpoint_id="d3", day=3,
                status=TouchpointStatus.SENT, due_at=due, at=due,
            ),
            AnswersInput(
                event_key="wf:7", touchpoint_key="d3", answers={"chest_pain": "yes"},
                observations=[ObservationValue(indicator="pain_score", value=6, unit=None)],
                at=at, **ids,
            ),
            TouchpointInput(
                enrollment_id=enrollment_id, key="d3", touchpoint_id="d3", day=3,
                status=TouchpointStatus.ANSWERED, due_at=due, at=at,
            ),
            AlertInput(
                event_key="wf:8", rule_id="chest-pain", touchpoint_key="d3", tier=Tier.L3,
                priority=Priority.URGENT, category="chest_pain",
                summary=LocalizedText.model_validate({"zh-CN": "胸痛", "en": "Chest pain"}),
                at=at, **ids,
            ),
            PointsInput(event_key="wf:9", touchpoint_key="d3", points=10, **ids),
            PointsInput(event_key="wf:10", touchpoint_key="d7", points=5, **ids),
            StatusInput(
                enrollment_id=enrollment_id, status=JourneyStatus.COMPLETED, reason=None, at=at
            ),
        ]
    )  # fmt: skip


async def _enrolled(
    runtime: Runtime, env: WorkflowEnvironment
) -> tuple[EnrollmentOut, dt.datetime, RecordBatch]:
    """A PCI enrollment, the test server's now, and what one answered touchpoint records."""
    now = await env.get_current_time()
    enrollment = await register_discharge(
        runtime, discharge(runtime, runtime.catalog.get("pci"), now)
    )
    return enrollment, now, _answer_batch(enrollment.enrollment_id, enrollment.patient_id, now)


async def test_a_batch_writes_every_record_once_even_when_retried(
    runtime: Runtime, journey_worker: WorkflowEnvironment
) -> None:
    enrollment, now, batch = await _enrolled(runtime, journey_worker)
    activities = JourneyActivities(runtime)
    environment = ActivityEnvironment()

    # The second run is the retry of a batch whose first attempt committed.
    for _ in range(2):
        environment.run(activities.record_batch, RecordBatch.model_validate_json(
            batch.model_dump_json()
        ))  # fmt: skip

    def of(model: Any) -> list[Any]:
        with Session(runtime.engine) as session:
            return list(
                session.exec(
                    select(model).where(model.enrollment_id == enrollment.enrollment_id)
                ).all()
            )

    # The later touchpoint write in the batch wins: one row, answered, with both times.
    [touchpoint] = [t for t in of(TouchpointRecord) if t.key == "d3"]
    assert touchpoint.status == TouchpointStatus.ANSWERED
    assert (touchpoint.sent_at, touchpoint.answered_at, touchpoint.closed_at) == (
        now - dt.timedelta(hours=2),
        now,
        now,
    )
    assert [(a.question_id, a.value) for a in of(Answer)] == [("chest_pain", "yes")]
    assert [(o.indicator, o.value) for o in of(Observation)] == [("pain_score", 6)]
    assert [(a.rule_id, a.tier, a.created_at) for a in of(Alert)] == [("chest-pain", "L3", now)]
    assert sorted(p.points for p in of(PointsEntry)) == [5, 10]
    with Session(runtime.engine) as session:
        stored = session.get(Enrollment, enrollment.enrollment_id)
        assert stored is not None
        # Both credits in one transaction: the total counts the one added just before it.
        assert stored.points == 15
        assert stored.status == JourneyStatus.COMPLETED
        assert stored.ended_at == now


async def test_a_batch_for_an_enrollment_that_is_gone_fails_without_retrying(
    runtime: Runtime, journey_worker: WorkflowEnvironment
) -> None:
    _, now, _ = await _enrolled(runtime, journey_worker)
    gone = StatusInput(enrollment_id=999_999, status=JourneyStatus.STOPPED, reason=None, at=now)
    with pytest.raises(ApplicationError, match="enrollment 999999 missing") as failure:
        await ActivityEnvironment().run(
            JourneyActivities(runtime).record_batch, RecordBatch(items=[gone])
        )
    assert failure.value.non_retryable
