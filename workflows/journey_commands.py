"""What a journey's core is told and what it asks for: events in, commands out.

Events are the workflow's signals and updates (an answer, an observation, a control action, a
reschedule); commands are what :meth:`JourneyCore.next_command` returns for the workflow to
carry out (a timer, a send, a record, a ticket), with the outcomes the workflow reports back.
All of them travel in workflow histories: their shape is workflow code
(docs/workflow-changes.md).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, Field

from suifang.core.delivery import SendOutcome
from suifang.core.enums import JourneyStatus, Priority, Tier, TouchpointStatus
from suifang.core.pathways import LocalizedText

__all__ = [
    "AnswerEvent",
    "Command",
    "ControlEvent",
    "CreditPoints",
    "Effect",
    "Event",
    "ExtendGreetings",
    "Finish",
    "GreetingBatch",
    "GreetingOccasion",
    "ObservationEvent",
    "ObservationValue",
    "OpenAlertTicket",
    "OpenCallTask",
    "RaiseAlert",
    "RecordAnswers",
    "RecordObservation",
    "RecordTouchpoint",
    "RescheduleEvent",
    "SendAdvice",
    "SendGreeting",
    "SendOutcome",
    "SendTouchpoint",
    "SetStatus",
    "TriageText",
    "Wait",
]


class GreetingOccasion(BaseModel):
    date: dt.date
    occasion: str = Field(description="e.g. birthday, spring_festival, lidong")


class GreetingBatch(BaseModel):
    """More greeting occasions for an open-ended journey, up to ``until``."""

    greetings: list[GreetingOccasion] = Field(default_factory=list)
    until: dt.date


# --------------------------------------------------------------------------- events (signals)


class AnswerEvent(BaseModel):
    """A patient's answers (or a staff member's, on their behalf)."""

    answers: dict[str, Any] = Field(default_factory=dict)
    text: str | None = None
    touchpoint_key: str | None = None
    received_at: dt.datetime | None = None
    channel: str | None = None
    source: str = "patient"


class ObservationValue(BaseModel):
    indicator: str
    value: float
    unit: str | None = None


class ObservationEvent(BaseModel):
    """A measurement from a device, the HIS or a staff entry (not a questionnaire answer)."""

    observations: list[ObservationValue]
    observed_at: dt.datetime | None = None
    source: str = "device"


class ControlEvent(BaseModel):
    action: Literal["pause", "resume", "stop", "readmitted", "deceased", "do_not_contact"]
    reason: str | None = None
    at: dt.datetime | None = None


class RescheduleEvent(BaseModel):
    """Move the rest of the schedule by ``shift``, and/or the very next send to ``next_due``."""

    shift: dt.timedelta | None = None
    next_due: dt.datetime | None = None


Event = AnswerEvent | ObservationEvent | ControlEvent | RescheduleEvent


# --------------------------------------------------------------------------- commands


@dataclasses.dataclass(frozen=True)
class Wait:
    until: dt.datetime | None
    """None: nothing is due; wake only for a signal (paused, or waiting for nothing)."""


@dataclasses.dataclass(frozen=True)
class SendTouchpoint:
    seq: int
    key: str
    touchpoint_id: str
    day: int
    reminder: int
    """0 for the first send, then 1, 2… for reminders."""
    missing: tuple[str, ...] = ()
    """Set for the one re-ask of the questions a partial reply left unanswered."""
    rejected: tuple[tuple[str, str], ...] = ()
    """(question, what the patient wrote) for answers that could not be taken (out of range,
    not an option): the re-ask says why."""


@dataclasses.dataclass(frozen=True)
class SendGreeting:
    seq: int
    occasion: str
    date: dt.date


@dataclasses.dataclass(frozen=True)
class SendAdvice:
    seq: int
    rule_id: str
    key: str | None
    advice: LocalizedText


@dataclasses.dataclass(frozen=True)
class RecordTouchpoint:
    seq: int
    key: str
    touchpoint_id: str
    day: int
    status: TouchpointStatus
    due_at: dt.datetime
    at: dt.datetime
    detail: str | None = None


@dataclasses.dataclass(frozen=True)
class RecordAnswers:
    seq: int
    key: str | None
    touchpoint_id: str | None
    answers: dict[str, Any]
    invalid: dict[str, str]
    observations: tuple[ObservationValue, ...]
    text: str | None
    at: dt.datetime
    late: bool
    channel: str | None
    source: str


@dataclasses.dataclass(frozen=True)
class RecordObservation:
    seq: int
    observations: tuple[ObservationValue, ...]
    at: dt.datetime
    source: str


@dataclasses.dataclass(frozen=True)
class RaiseAlert:
    seq: int
    rule_id: str
    key: str | None
    tier: Tier
    priority: Priority
    category: str
    summary: LocalizedText
    evidence: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class OpenAlertTicket:
    """One feedback ticket for the alerts one answer (or measurement) raised."""

    seq: int
    key: str | None
    rule_ids: tuple[str, ...]
    alert_seqs: tuple[int, ...]
    tier: Tier
    priority: Priority
    category: str
    summary: LocalizedText
    department: str | None = None
    """The department its rules name (None: routed by category)."""


@dataclasses.dataclass(frozen=True)
class TriageText:
    """Free text the patient wrote (a message, or what a questionnaire reply said besides its
    answers): triaged like any patient message — a ticket, an emergency, or thanks."""

    seq: int
    key: str | None
    text: str
    channel: str | None


@dataclasses.dataclass(frozen=True)
class OpenCallTask:
    seq: int
    reason: Literal["lost_to_follow_up", "undeliverable"]
    key: str | None


@dataclasses.dataclass(frozen=True)
class CreditPoints:
    seq: int
    key: str
    points: int


@dataclasses.dataclass(frozen=True)
class ExtendGreetings:
    seq: int
    after: dt.date


@dataclasses.dataclass(frozen=True)
class SetStatus:
    seq: int
    status: JourneyStatus
    reason: str | None
    at: dt.datetime


@dataclasses.dataclass(frozen=True)
class Finish:
    status: JourneyStatus
    reason: str | None


Command = (
    Wait
    | SendTouchpoint
    | SendGreeting
    | SendAdvice
    | RecordTouchpoint
    | RecordAnswers
    | RecordObservation
    | RaiseAlert
    | OpenAlertTicket
    | OpenCallTask
    | TriageText
    | CreditPoints
    | ExtendGreetings
    | SetStatus
    | Finish
)
Effect = (
    SendTouchpoint
    | SendGreeting
    | SendAdvice
    | RecordTouchpoint
    | RecordAnswers
    | RecordObservation
    | RaiseAlert
    | OpenAlertTicket
    | OpenCallTask
    | TriageText
    | CreditPoints
    | ExtendGreetings
    | SetStatus
)
