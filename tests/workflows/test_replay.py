"""Replay safety: every golden history still replays with today's workflow code.

The histories under ``tests/histories/<generation>/`` were recorded by running the real
workflows (``tests/histories/record.py``); their payloads are encrypted with the test-only
keys in ``tests/histories/test-keys.json``. A change to workflow code that would make a
running workflow fail after a worker deploy fails here first. How to change workflow code
safely: ``docs/workflow-changes.md``.
"""

from __future__ import annotations

import datetime as dt
import functools
import inspect
import json
from pathlib import Path
from typing import Any

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.worker import Replayer

from suifang.core.security.codec import PayloadEncryptionCodec
from suifang.core.security.crypto import Keyring
from suifang.core.temporal import data_converter
from suifang.workflows.journey import (
    JourneyInput,
    JourneyResult,
    PatientJourneyWorkflow,
)
from suifang.workflows.worker import WORKFLOWS

HISTORIES = Path(__file__).resolve().parents[1] / "histories"


def _test_keyring() -> Keyring:
    content = json.loads((HISTORIES / "test-keys.json").read_text())
    return Keyring(tuple(content["encryption_keys"]), content["blind_index_key"].encode())


def _golden() -> list[tuple[str, str]]:
    """(path relative to tests/histories, workflow id) of every history a manifest lists."""
    found = []
    for manifest in sorted(HISTORIES.glob("*/manifest.json")):
        for entry in json.loads(manifest.read_text())["histories"]:
            found.append((f"{manifest.parent.name}/{entry['file']}", entry["workflow_id"]))
    return found


GOLDEN = _golden()


@functools.cache
def load(relative: str, workflow_id: str) -> WorkflowHistory:
    return WorkflowHistory.from_json(workflow_id, (HISTORIES / relative).read_text())


def workflow_type(history: WorkflowHistory) -> str:
    return history.events[0].workflow_execution_started_event_attributes.workflow_type.name


def workflow_name(cls: type) -> str:
    """The name ``@workflow.defn`` registered ``cls`` under (what histories record)."""
    return getattr(cls, "__temporal_workflow_definition").name


def replayer(*workflows: type) -> Replayer:
    """A replayer configured like the production worker: same converter, codec, interceptors."""
    return Replayer(
        workflows=list(workflows),
        data_converter=data_converter(PayloadEncryptionCodec(_test_keyring())),
        interceptors=[TracingInterceptor()],
    )


# --------------------------------------------------------------------------- the golden set


@pytest.mark.parametrize(("relative", "workflow_id"), GOLDEN, ids=[g[0] for g in GOLDEN])
async def test_golden_history_replays_with_the_current_workflow_code(
    relative: str, workflow_id: str
) -> None:
    history = load(relative, workflow_id)
    result = await replayer(*WORKFLOWS).replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{relative}: {result.replay_failure}"


def test_every_workflow_type_has_golden_histories_and_every_file_is_listed() -> None:
    registered = {workflow_name(cls) for cls in WORKFLOWS}
    recorded = {workflow_type(load(relative, workflow_id)) for relative, workflow_id in GOLDEN}
    missing = registered - recorded
    assert not missing, (
        f"no golden history for workflow type(s) {sorted(missing)}: add a scenario to "
        "tests/histories/record.py and record it (docs/workflow-changes.md)"
    )
    listed = {relative for relative, _ in GOLDEN}
    on_disk = {
        f"{path.parent.name}/{path.name}"
        for path in HISTORIES.glob("*/*.json")
        if path.name != "manifest.json"
    }
    assert on_disk == listed, "history files and manifests disagree"


def _activities(history: WorkflowHistory) -> set[str]:
    return {
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
    }


def _markers(history: WorkflowHistory) -> set[str]:
    """Names of the markers a history recorded (local activities, patches, side effects)."""
    return {
        e.marker_recorded_event_attributes.marker_name
        for e in history.events
        if e.HasField("marker_recorded_event_attributes")
    }


def _sends_without_a_batch_first(history: WorkflowHistory) -> bool:
    """No send directly follows a batch write (the records made before it went with it)."""
    previous_command = None
    sends = 0
    for event in history.events:
        if event.HasField("activity_task_scheduled_event_attributes"):
            name = event.activity_task_scheduled_event_attributes.activity_type.name
            if name == "send_journey_message":
                sends += 1
                if previous_command == "record_batch":
                    return False
            previous_command = name
        elif event.HasField("timer_started_event_attributes"):
            previous_command = "timer"
    return sends > 0


def _signals(history: WorkflowHistory) -> set[str]:
    return {
        e.workflow_execution_signaled_event_attributes.signal_name
        for e in history.events
        if e.HasField("workflow_execution_signaled_event_attributes")
    }


def _updates(history: WorkflowHistory) -> set[str]:
    return {
        e.workflow_execution_update_accepted_event_attributes.accepted_request.input.name
        for e in history.events
        if e.HasField("workflow_execution_update_accepted_event_attributes")
    }


def _has(field: str) -> Any:
    return lambda history: any(e.HasField(field) for e in history.events)


def _ends(field: str) -> Any:
    return lambda history: history.events[-1].HasField(field)


MAIN_PATHS: dict[str, dict[str, Any]] = {
    "PatientJourney": {
        "an answer signal": lambda h: "answer" in _signals(h),
        "records written in a batch": lambda h: "record_batch" in _activities(h),
        "the records made before a send sent with it": _sends_without_a_batch_first,
        "a journey nobody answered (a call task opened)": lambda h: (
            "answer" not in _signals(h) and "prepare_journey_ticket" in _activities(h)
        ),
        "a child ticket started": _has("start_child_workflow_execution_initiated_event_attributes"),
        "the control update": lambda h: "control" in _updates(h),
        "a continue-as-new": _ends("workflow_execution_continued_as_new_event_attributes"),
        "a run started from carried-over state": lambda h: (
            h.events[0].workflow_execution_started_event_attributes.continued_execution_run_id != ""
        ),
        "a completed run": _ends("workflow_execution_completed_event_attributes"),
        "free text in a reply triaged": lambda h: "triage_patient_text" in _activities(h),
    },
    "FeedbackTicket": {
        "a department action update": lambda h: "act" in _updates(h),
        "a patient signal": lambda h: "patient" in _signals(h),
        "routing": lambda h: "route_ticket" in _activities(h),
        "an SLA notice to staff": lambda h: "notify_staff" in _activities(h),
        "the read model saved": lambda h: "sync_ticket" in _activities(h),
        "a child ticket (started by a journey)": lambda h: h.events[
            0
        ].workflow_execution_started_event_attributes.HasField("parent_workflow_execution"),
        "a closed ticket": _ends("workflow_execution_completed_event_attributes"),
        "an emergency paged": lambda h: "page_on_call" in _activities(h),
    },
}


def test_golden_histories_cover_the_main_paths_of_each_workflow() -> None:
    histories = [load(relative, workflow_id) for relative, workflow_id in GOLDEN]
    uncovered = [
        f"{kind}: {path}"
        for kind, paths in MAIN_PATHS.items()
        for path, present in paths.items()
        if not any(present(h) for h in histories if workflow_type(h) == kind)
    ]
    assert not uncovered, f"no golden history covers {uncovered}"


def test_no_workflow_runs_a_local_activity() -> None:
    """A local activity resolves outside the history, so replay could meet it at a different
    point among the signals that arrived while it ran (docs/reliability.md)."""
    local = sorted(
        relative
        for relative, workflow_id in GOLDEN
        if "core_local_activity" in _markers(load(relative, workflow_id))
    )
    assert local == []


# --------------------------------------------------------------------------- a deliberate change

WELCOME_CALL = {"start_to_close_timeout": dt.timedelta(seconds=30)}
# The variants run unsandboxed: the sandbox would re-import this module (and pytest) per run.
# They are the production class with one step added, under the production workflow name.


@workflow.defn(name="PatientJourney", sandboxed=False)
class JourneyWithWelcomeCall(PatientJourneyWorkflow):
    """A new step before the first one, added carelessly: old histories cannot replay."""

    @workflow.run
    async def run(self, journey: JourneyInput) -> JourneyResult:
        await workflow.execute_activity(
            "book_welcome_call", journey.setup.enrollment_id, **WELCOME_CALL
        )
        return await super().run(journey)


@workflow.defn(name="PatientJourney", sandboxed=False)
class JourneyWithPatchedWelcomeCall(PatientJourneyWorkflow):
    """The same step behind ``workflow.patched``: new runs take it, old histories replay."""

    @workflow.run
    async def run(self, journey: JourneyInput) -> JourneyResult:
        if workflow.patched("welcome-call"):
            await workflow.execute_activity(
                "book_welcome_call", journey.setup.enrollment_id, **WELCOME_CALL
            )
        return await super().run(journey)


def _a_journey_history() -> WorkflowHistory:
    for relative, workflow_id in GOLDEN:
        history = load(relative, workflow_id)
        if (
            workflow_type(history) == "PatientJourney"
            and not history.events[
                0
            ].workflow_execution_started_event_attributes.continued_execution_run_id
        ):
            return history
    pytest.fail("no golden PatientJourney history from the start of a journey")


async def test_an_unguarded_new_step_fails_to_replay_an_old_history() -> None:
    with pytest.raises(workflow.NondeterminismError) as failure:
        await replayer(JourneyWithWelcomeCall).replay_workflow(_a_journey_history())
    # TMPRL1100: the code asked for an activity where the history has the journey's first timer.
    assert "TMPRL1100" in str(failure.value)
    assert "TimerStarted" in str(failure.value)


async def test_the_same_step_behind_workflow_patched_replays_the_old_history() -> None:
    result = await replayer(JourneyWithPatchedWelcomeCall).replay_workflow(_a_journey_history())
    assert result.replay_failure is None


def test_the_documented_example_is_the_tested_one() -> None:
    guide = (Path(__file__).resolve().parents[2] / "docs" / "workflow-changes.md").read_text()
    source = inspect.getsource(JourneyWithPatchedWelcomeCall.run)
    guarded = source[source.index("if workflow.patched") : source.index("return await super()")]
    assert guarded.rstrip() in guide, "docs/workflow-changes.md no longer shows the tested patch"
