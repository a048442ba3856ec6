"""A journey's start event holds each questionnaire of its plan once, and reads back whole.

The plan travels in every journey's start event; most touchpoints ask the same questionnaire,
so the serialized input names it instead of repeating it.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
from pydantic import ValidationError
from temporalio.testing import WorkflowEnvironment

from suifang.core.runtime import Runtime
from suifang.workflows.intake import register_discharge
from suifang.workflows.journey_inputs import JourneyInput
from tests.workflows.test_journey_workflow import discharge, handle_of


async def _started_input(runtime: Runtime, env: WorkflowEnvironment) -> tuple[dict, JourneyInput]:
    """A PCI journey's input as its start event holds it: the JSON, and what it decodes to."""
    now = await env.get_current_time()
    enrollment = await register_discharge(
        runtime, discharge(runtime, runtime.catalog.get("pci"), now)
    )
    history = await handle_of(env, enrollment).fetch_history()
    [payload] = history.events[0].workflow_execution_started_event_attributes.input.payloads
    converter = env.client.data_converter
    [plain] = await converter.payload_codec.decode([payload])  # type: ignore[union-attr]
    [decoded] = await converter.decode([payload], [JourneyInput])
    return json.loads(plain.data), decoded


async def test_the_start_event_holds_each_questionnaire_once(
    runtime: Runtime, journey_worker: WorkflowEnvironment
) -> None:
    raw, decoded = await _started_input(runtime, journey_worker)
    plan = decoded.setup.plan
    asked = [t.questionnaire for t in plan.touchpoints if t.questionnaire is not None]
    distinct = [q for i, q in enumerate(asked) if q not in asked[:i]]
    assert len(asked) > len(distinct) >= 1  # PCI asks one questionnaire more than once

    assert len(raw["questionnaires"]) == len(distinct)
    named = [t["questionnaire"] for t in raw["setup"]["plan"]["touchpoints"]]
    assert all(name is None or name in raw["questionnaires"] for name in named)
    # Touchpoints asking the same questionnaire share one object once decoded.
    assert len({id(q) for q in asked}) == len(distinct)
    # The input reads back as the plan intake resolved for the patient.
    enrollment_plan = runtime.catalog.get("pci")
    assert [t.id for t in plan.touchpoints] == [t.id for t in enrollment_plan.touchpoints]


async def test_an_input_reads_back_as_it_was_written(
    runtime: Runtime, journey_worker: WorkflowEnvironment
) -> None:
    _, decoded = await _started_input(runtime, journey_worker)
    assert JourneyInput.model_validate_json(decoded.model_dump_json()) == decoded


async def test_a_questionnaire_copied_into_a_touchpoint_is_a_clear_error(
    runtime: Runtime, journey_worker: WorkflowEnvironment
) -> None:
    raw, _ = await _started_input(runtime, journey_worker)
    first = next(t for t in raw["setup"]["plan"]["touchpoints"] if t["questionnaire"])
    first["questionnaire"] = raw["questionnaires"][first["questionnaire"]]
    with pytest.raises(
        ValidationError, match=f"touchpoint '{first['id']}' holds its questionnaire inline"
    ):
        JourneyInput.model_validate(raw)


async def test_a_questionnaire_the_input_does_not_hold_is_a_clear_error(
    runtime: Runtime, journey_worker: WorkflowEnvironment
) -> None:
    raw, _ = await _started_input(runtime, journey_worker)
    first = next(t for t in raw["setup"]["plan"]["touchpoints"] if t["questionnaire"])
    first["questionnaire"] = "q9"
    with pytest.raises(
        ValidationError, match=f"touchpoint '{first['id']}' names questionnaire 'q9'"
    ):
        JourneyInput.model_validate(raw)


def test_a_plan_without_questionnaires_has_no_table_of_them() -> None:
    from suifang.core.pathways import resolve_plan
    from suifang.core.plugins import Plugins
    from suifang.workflows.journey_core import JourneySetup

    catalog = Plugins.load().pathway_catalog()
    plan = resolve_plan(catalog.get("pci"))
    bare = plan.model_copy(
        update={
            "touchpoints": [t.model_copy(update={"questionnaire": None}) for t in plan.touchpoints]
        }
    )
    journey = JourneyInput(
        setup=JourneySetup(
            enrollment_id=1, patient_id=1, plan=bare, discharged_at=dt.datetime.now(dt.UTC)
        )
    )
    assert "questionnaires" not in json.loads(journey.model_dump_json())
    assert JourneyInput.model_validate_json(journey.model_dump_json()) == journey


async def test_journeys_on_the_same_plan_share_one_decoded_plan(
    runtime: Runtime, journey_worker: WorkflowEnvironment
) -> None:
    first_raw, first = await _started_input(runtime, journey_worker)
    _, second = await _started_input(runtime, journey_worker)
    assert first.setup.enrollment_id != second.setup.enrollment_id
    assert first.setup.plan is second.setup.plan
    # A plan that differs in anything decodes to a plan of its own.
    other = json.loads(json.dumps(first_raw))
    other["setup"]["plan"]["lost_after_missed"] += 1
    changed = JourneyInput.model_validate(other)
    assert changed.setup.plan is not first.setup.plan
    assert changed.setup.plan.lost_after_missed == first.setup.plan.lost_after_missed + 1
    broken = json.loads(json.dumps(first_raw))
    del broken["setup"]["plan"]["name"]
    with pytest.raises(ValidationError, match=r"setup\.plan: (.|\n)*name\n  Field required"):
        JourneyInput.model_validate(broken)
