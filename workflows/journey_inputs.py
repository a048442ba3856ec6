"""What goes in and out of the journey workflow: its input and result, and the record each
bookkeeping command becomes (the activity options are :mod:`suifang.core.temporal`'s).

Kept out of ``workflows/journey.py`` on purpose: the workflow sandbox re-imports the workflow's
own module for every journey a worker starts (compiling and executing it afresh), while this
module, passed through, is imported once per worker.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import (
    BaseModel,
    SerializerFunctionWrapHandler,
    ValidationError,
    model_serializer,
    model_validator,
)

from suifang.core.enums import JourneyStatus
from suifang.core.pathways import JourneyPlan, Questionnaire
from suifang.core.sharing import SharedByContent, content_key
from suifang.workflows.journey_commands import (
    CreditPoints,
    RaiseAlert,
    RecordAnswers,
    RecordObservation,
    RecordTouchpoint,
    SetStatus,
)
from suifang.workflows.journey_core import JourneyProgress, JourneySetup, JourneyState
from suifang.workflows.journey_records import (
    AlertInput,
    AnswersInput,
    ObservationsInput,
    PointsInput,
    RecordItem,
    StatusInput,
    TouchpointInput,
)

__all__ = [
    "JourneyInput",
    "JourneyResult",
    "event_key",
    "journey_workflow_id",
    "record_item",
]


def journey_workflow_id(enrollment_id: int, token: str) -> str:
    """``journey-<enrollment>-<token>``: readable, and unique even across databases that share
    a Temporal namespace (a restored backup, a second hospital, a test run)."""
    return f"journey-{enrollment_id}-{token}"


class JourneyInput(BaseModel):
    """The journey workflow's input.

    Serialized, each distinct questionnaire of the plan appears once, under ``questionnaires``,
    and the touchpoints that ask it name it (``"questionnaire": "q0"``): a pathway asks the
    same questionnaire at most touchpoints, and the plan travels in every journey's start
    event (and each continue-as-new) — the PCI pathway's 20 KB of JSON is 14 KB of one
    questionnaire four times over. Decoded, touchpoints that share a questionnaire share one
    object, and journeys with equal plans share one plan.
    """

    setup: JourneySetup
    state: JourneyState | None = None

    @model_serializer(mode="wrap")
    def _share_questionnaires(self, serialize: SerializerFunctionWrapHandler) -> Any:
        data = serialize(self)
        distinct: list[Questionnaire] = []
        shared: dict[str, Any] = {}
        touchpoints = data["setup"]["plan"]["touchpoints"]
        for planned, touchpoint in zip(self.setup.plan.touchpoints, touchpoints, strict=True):
            questionnaire = planned.questionnaire
            if questionnaire is None:
                continue
            index = next(
                (
                    i
                    for i, seen in enumerate(distinct)
                    if seen is questionnaire or seen == questionnaire
                ),
                None,
            )
            if index is None:
                index = len(distinct)
                distinct.append(questionnaire)
                shared[f"q{index}"] = touchpoint["questionnaire"]
            touchpoint["questionnaire"] = f"q{index}"
        if shared:
            data["questionnaires"] = shared
        return data

    @model_validator(mode="before")
    @classmethod
    def _read_plan(cls, data: Any) -> Any:
        """The plan of a serialized input: its questionnaires put back, or the one decoded."""
        if not isinstance(data, dict) or not isinstance(data.get("setup"), dict):
            return data
        data = dict(data)
        shared = data.pop("questionnaires", None) or {}
        setup = dict(data["setup"])
        plan = setup.get("plan")
        if isinstance(plan, dict):
            try:
                setup["plan"] = _decoded_plan(plan, shared)
            except ValidationError as exc:
                raise ValueError(f"setup.plan: {exc}") from None
        data["setup"] = setup
        return data


_PLANS: SharedByContent[JourneyPlan] = SharedByContent()


def _decoded_plan(plan: dict[str, Any], shared: dict[str, Any]) -> JourneyPlan:
    """``plan`` (its questionnaires named from ``shared``) as a model, decoded once per content.

    Every journey enrolled on the same pathway version, tier and groups carries the same plan;
    validating it is most of what decoding a journey's input costs, and a plan is immutable
    (frozen models), so journeys with equal plans share one.
    """
    return _PLANS.get(content_key(plan, shared), lambda: _decode_plan(plan, shared))


def _decode_plan(plan: dict[str, Any], shared: dict[str, Any]) -> JourneyPlan:
    questionnaires = {name: Questionnaire.model_validate(q) for name, q in shared.items()}
    touchpoints = []
    for touchpoint in plan.get("touchpoints", []):
        name = touchpoint.get("questionnaire") if isinstance(touchpoint, dict) else None
        if isinstance(name, dict):
            raise ValueError(
                f"touchpoint {touchpoint.get('id')!r} holds its questionnaire inline; a journey "
                'input names it ("q0") and holds it once under "questionnaires"'
            )
        if isinstance(name, str):
            if name not in questionnaires:
                raise ValueError(
                    f"touchpoint {touchpoint.get('id')!r} names questionnaire {name!r}, "
                    f"which the input does not hold (it holds {sorted(questionnaires)})"
                )
            touchpoint = {**touchpoint, "questionnaire": questionnaires[name]}
        touchpoints.append(touchpoint)
    return JourneyPlan.model_validate({**plan, "touchpoints": touchpoints})


class JourneyResult(BaseModel):
    status: JourneyStatus
    reason: str | None
    progress: JourneyProgress


def event_key(workflow_id: str, seq: int) -> str:
    """The key a command's writes are unique by: the run's workflow id and the command's seq."""
    return f"{workflow_id}:{seq}"


def record_item(
    command: Any, setup: JourneySetup, workflow_id: str, now: dt.datetime
) -> RecordItem | None:
    """The record a bookkeeping command of the run ``workflow_id`` writes; None for anything
    else. ``now`` is the workflow's clock (when an alert was raised)."""
    ids = {"enrollment_id": setup.enrollment_id, "patient_id": setup.patient_id}
    if isinstance(command, RecordTouchpoint):
        return TouchpointInput(
            enrollment_id=setup.enrollment_id,
            key=command.key,
            touchpoint_id=command.touchpoint_id,
            day=command.day,
            status=command.status,
            due_at=command.due_at,
            at=command.at,
            detail=command.detail,
        )
    if isinstance(command, RecordAnswers):
        return AnswersInput(
            event_key=event_key(workflow_id, command.seq),
            touchpoint_key=command.key,
            answers=command.answers,
            invalid=command.invalid,
            observations=list(command.observations),
            text=command.text,
            at=command.at,
            late=command.late,
            channel=command.channel,
            source=command.source,
            **ids,
        )
    if isinstance(command, RecordObservation):
        return ObservationsInput(
            event_key=event_key(workflow_id, command.seq),
            observations=list(command.observations),
            at=command.at,
            source=command.source,
            **ids,
        )
    if isinstance(command, RaiseAlert):
        # The alert's id is not needed: its ticket finds it by event key.
        return AlertInput(
            event_key=event_key(workflow_id, command.seq),
            rule_id=command.rule_id,
            touchpoint_key=command.key,
            tier=command.tier,
            priority=command.priority,
            category=command.category,
            summary=command.summary,
            evidence=command.evidence,
            at=now,
            **ids,
        )
    if isinstance(command, CreditPoints):
        return PointsInput(
            event_key=event_key(workflow_id, command.seq),
            touchpoint_key=command.key,
            points=command.points,
            **ids,
        )
    if isinstance(command, SetStatus):
        return StatusInput(
            enrollment_id=setup.enrollment_id,
            status=command.status,
            reason=command.reason,
            at=command.at,
        )
    return None
