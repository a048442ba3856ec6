"""The journey state machine: every decision of a journey, a pure function of time and events.

The journey workflow (imperative shell) only drives this core: it asks
:meth:`JourneyCore.next_command` what to do at ``now``, does it (a timer, an activity),
reports the outcome with :meth:`JourneyCore.complete`, and feeds signals in with
:meth:`JourneyCore.handle`. The workload simulator drives the very same core on simulated
time, so simulation and production cannot disagree. Nothing here does I/O or reads a
clock; ``zoneinfo`` lookups are pure.

The core is split by concept: the events it is told and the commands it returns are in
:mod:`~suifang.workflows.journey_commands`, when things fall due in
:mod:`~suifang.workflows.journey_schedule` (a base class of the core), and alert-rule
conditions in :mod:`~suifang.workflows.journey_rules`. Callers import those names from
the module that defines them.

Time: a journey runs on *plan time* — days after discharge, send windows in the patient's
timezone — mapped to real time by ``time_scale`` (1 in production; the demo runs one pathway
day per real minute with 1440). Everything the core returns is real UTC time.
"""

from __future__ import annotations

import datetime as dt
import operator
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field

from suifang.core.enums import JourneyStatus, TouchpointStatus
from suifang.core.pathways import (
    AlertRule,
    JourneyPlan,
    LocalizedText,
    PlannedTouchpoint,
    Question,
)
from suifang.workflows.journey_commands import (
    AnswerEvent,
    Command,
    ControlEvent,
    CreditPoints,
    Effect,
    Event,
    ExtendGreetings,
    Finish,
    GreetingBatch,
    GreetingOccasion,
    ObservationEvent,
    ObservationValue,
    OpenAlertTicket,
    OpenCallTask,
    RaiseAlert,
    RecordAnswers,
    RecordObservation,
    RecordTouchpoint,
    RescheduleEvent,
    SendAdvice,
    SendGreeting,
    SendOutcome,
    SendTouchpoint,
    SetStatus,
    TriageText,
    Wait,
)
from suifang.workflows.journey_rules import Predicate, compile_condition
from suifang.workflows.journey_schedule import DueCache, JourneySchedule
from suifang.workflows.replies import split_reply

__all__ = [
    "JourneyCore",
    "JourneyProgress",
    "JourneySetup",
    "JourneyState",
    "PlanIndex",
    "PlannedSend",
    "preview_schedule",
]

UTC = dt.UTC
QUIET_HOURS_BACKOFF = dt.timedelta(minutes=15)
LATE_ANSWER_KEYS = 8
"""How many past touchpoints a late answer may still be matched to."""


# --------------------------------------------------------------------------- inputs and state


class JourneySetup(BaseModel):
    """Everything fixed at enrollment: the plan and the patient's calendar facts."""

    enrollment_id: int
    patient_id: int
    plan: JourneyPlan
    discharged_at: dt.datetime
    timezone: str = "Asia/Shanghai"
    locale: str = "zh-CN"
    time_scale: float = Field(1.0, gt=0, description="Pathway days per real day (demo: 1440).")
    greetings: list[GreetingOccasion] = Field(default_factory=list)
    greetings_until: dt.date | None = None
    continue_as_new_after: int = Field(100, ge=1, description="Sends per workflow run.")


class OpenTouchpoint(BaseModel):
    key: str
    touchpoint_id: str
    occurrence: int
    day: int
    due_at: dt.datetime
    sent_at: dt.datetime | None = None
    deadline: dt.datetime | None = None
    reminders_sent: int = 0
    delivered_via: str | None = None
    retry_at: dt.datetime | None = None
    answered_questions: list[str] = Field(default_factory=list)
    """Questions answered so far (a touchpoint is answered when all required ones are)."""
    reasked: bool = False


class SentKey(BaseModel):
    key: str
    touchpoint_id: str


class JourneyState(BaseModel):
    """Everything that changes; serialisable so a long journey can continue-as-new."""

    status: JourneyStatus = JourneyStatus.ACTIVE
    stop_reason: str | None = None
    started_at: dt.datetime | None = None
    next_occurrence: dict[str, int] = Field(default_factory=dict)
    open: list[OpenTouchpoint] = Field(default_factory=list)
    recent: list[SentKey] = Field(default_factory=list)
    answered_keys: list[str] = Field(default_factory=list)
    alerts_raised: list[str] = Field(default_factory=list)
    next_greeting: int = 0
    consecutive_missed: int = 0
    sent: int = 0
    answered: int = 0
    missed: int = 0
    skipped: int = 0
    alerts: int = 0
    points: int = 0
    shift: dt.timedelta = dt.timedelta(0)
    """Plan-time shift of the remaining schedule (pauses, reschedules)."""
    paused_at: dt.datetime | None = None
    override_next_due: dt.datetime | None = None
    sends_this_run: int = 0
    seq: int = 0


class PlannedSend(BaseModel):
    """One send still ahead in a journey's plan."""

    key: str
    day: int
    due_at: dt.datetime


class JourneyProgress(BaseModel):
    """The answer to the workflow's progress query."""

    enrollment_id: int
    pathway_id: str
    pathway_version: int
    variants: list[str]
    status: JourneyStatus
    stop_reason: str | None
    sent: int
    answered: int
    missed: int
    skipped: int
    alerts: int
    points: int
    consecutive_missed: int
    open_touchpoints: list[str]
    next_touchpoint: str | None
    next_due_at: dt.datetime | None
    paused: bool
    parked: bool = Field(
        False, description="The workflow is waiting: nothing in flight, no event unprocessed."
    )
    wakes_at: dt.datetime | None = Field(
        None, description="While parked: when its timer fires (None: it waits for an event)."
    )


# --------------------------------------------------------------------------- the plan, indexed


class PlanIndex:
    """Lookups the core makes on every step, computed once per plan instead of by scanning.

    A plan is immutable (frozen models), so everything here is a pure function of it; the
    memo tables below only ever hold pure functions of their keys. A workflow builds one per
    :class:`JourneyCore`; the simulator shares one between all journeys on the same plan, so
    the calendar arithmetic for a given discharge day is done once, not once per patient.
    """

    def __init__(self, plan: JourneyPlan) -> None:
        self.plan = plan
        self.touchpoints: dict[str, PlannedTouchpoint] = {}
        self.questions: dict[str, dict[str, Question]] = {}
        self.any_question: dict[str, Question] = {}
        # setdefault everywhere: the first match wins, as in the plan's own linear lookups.
        for touchpoint in plan.touchpoints:
            self.touchpoints.setdefault(touchpoint.id, touchpoint)
        for touchpoint in self.touchpoints.values():
            by_id: dict[str, Question] = {}
            if touchpoint.questionnaire is not None:
                for question in touchpoint.questionnaire.questions:
                    by_id.setdefault(question.id, question)
            self.questions[touchpoint.id] = by_id
        for touchpoint in plan.touchpoints:
            if touchpoint.questionnaire:
                for question in touchpoint.questionnaire.questions:
                    self.any_question.setdefault(question.id, question)
        self.open_ended = plan.open_ended
        self._rules: dict[str | None, tuple[tuple[AlertRule, Predicate], ...]] = {}
        self._compiled = [
            (rule, compile_condition(rule.condition, self.any_question))
            for rule in plan.alert_rules
        ]
        # Real-time memo tables, valid only for journeys on real time (time_scale 1), where
        # they depend on nothing but the timezone (and the discharge day), not the journey.
        self._due: dict[tuple[str, dt.date], DueCache] = {}
        self._windows: dict[str, dict[dt.datetime, dt.datetime]] = {}

    def rules_for(self, touchpoint_id: str | None) -> tuple[tuple[AlertRule, Predicate], ...]:
        """The alert rules that apply to answers to ``touchpoint_id``, in plan order."""
        rules = self._rules.get(touchpoint_id)
        if rules is None:
            rules = self._rules[touchpoint_id] = tuple(
                (rule, predicate)
                for rule, predicate in self._compiled
                if rule.touchpoints is None or touchpoint_id in rule.touchpoints
            )
        return rules

    def due_cache(self, timezone: str, discharge_date: dt.date) -> DueCache:
        return self._due.setdefault((timezone, discharge_date), {})

    def window_cache(self, timezone: str) -> dict[dt.datetime, dt.datetime]:
        return self._windows.setdefault(timezone, {})


_INDEXES: dict[int, PlanIndex] = {}
_INDEXES_KEPT = 256


def _shared_index(plan: JourneyPlan) -> PlanIndex:
    """The index of ``plan`` every journey on this very plan object shares.

    Journeys whose inputs carry equal plans get one plan object (journey_inputs decodes each
    plan once), so a worker builds one index per plan rather than one per journey. Plain dict
    operations only: workflow activations run on several threads.
    """
    index = _INDEXES.get(id(plan))
    if index is None or index.plan is not plan:
        if len(_INDEXES) >= _INDEXES_KEPT:
            _INDEXES.clear()
        index = _INDEXES[id(plan)] = PlanIndex(plan)
    return index


# --------------------------------------------------------------------------- the core

_DUE_AT = operator.attrgetter("due_at")


class JourneyCore(JourneySchedule):
    """One journey's decisions. Mutates ``state``; never touches the outside world."""

    def __init__(
        self,
        setup: JourneySetup,
        state: JourneyState | None = None,
        *,
        index: PlanIndex | None = None,
    ) -> None:
        """``index``: a :class:`PlanIndex` of ``setup.plan`` to share (the simulator)."""
        self.setup = setup
        self.plan = setup.plan
        if index is None or index.plan is not self.plan:
            index = _shared_index(self.plan)
        self.index = index
        self.state = state or JourneyState()
        self.zone = ZoneInfo(setup.timezone)
        self.origin = setup.discharged_at.astimezone(UTC)
        self.discharge_date = self.origin.astimezone(self.zone).date()
        self._pending: list[Effect] = []
        # Pure functions of (send time, day, shift) and of a UTC instant: memoised, they are
        # asked on every step. On real time they do not depend on the journey, only on its
        # timezone and discharge day, so journeys sharing the plan's index share them too.
        self._due_cache: DueCache
        self._window_cache: dict[dt.datetime, dt.datetime]
        if setup.time_scale == 1:
            self._due_cache = index.due_cache(setup.timezone, self.discharge_date)
            self._window_cache = index.window_cache(setup.timezone)
        else:
            self._due_cache, self._window_cache = {}, {}
        # Plan-time reminder spacing per touchpoint, in real time (time_scale is fixed).
        self._reminder_interval = {
            t.id: self._real_duration(t.answer_wait) / (t.reminders + 1)
            for t in index.touchpoints.values()
        }
        # The next occurrence by (occurrence counters, shift): asked on every step, it changes
        # only when a touchpoint opens or the schedule moves.
        self._upcoming: dict[
            tuple[tuple[tuple[str, int], ...], dt.timedelta],
            tuple[dt.datetime, PlannedTouchpoint, int, int] | None,
        ] = {}
        # Today's date in plan time for the last ``now`` asked (one step asks several times).
        self._today: tuple[dt.datetime, dt.date] | None = None
        for touchpoint in self.plan.touchpoints:
            self.state.next_occurrence.setdefault(touchpoint.id, 0)

    # ----------------------------------------------------------------- the driver API

    def next_command(self, now: dt.datetime) -> Command:
        """What to do at ``now``. Repeats the same command until :meth:`complete` reports it."""
        if self._pending:
            return self._pending[0]
        state = self.state
        if state.started_at is None:
            state.started_at = now
        if state.status in _ENDED:
            return Finish(state.status, state.stop_reason)
        if state.status == JourneyStatus.PAUSED:
            return Wait(None)

        wakes: list[dt.datetime] = []
        # 1. Open touchpoints: retries after quiet hours, reminders, deadlines.
        command = self._open_touchpoint_command(now, wakes)
        if command is not None:
            return command

        # 2. The next scheduled occurrence.
        upcoming = self._next_occurrence()
        if upcoming is not None:
            due, planned, occurrence, day = upcoming
            if due <= now:
                return self._open(planned, occurrence, day, due, now)
            wakes.append(due)

        # 3. Greetings, while the journey has something ahead. (Without greetings in the
        # plan, ``_next_greeting`` is None and the extension cannot apply: skip both.)
        if self.plan.greetings:
            command = self._greeting_command(upcoming[0] if upcoming else None, now, wakes)
            if command is not None:
                return command

        if upcoming is None and not self.state.open:
            return self._set_status(JourneyStatus.COMPLETED, None, now)
        return Wait(min(wakes) if wakes else None)

    def _open_touchpoint_command(
        self, now: dt.datetime, wakes: list[dt.datetime]
    ) -> Command | None:
        """A send, reminder or miss due now among the open touchpoints; else None, with the
        times they next need the journey added to ``wakes``."""
        # Any branch that changes ``open`` returns at once, so a single one need not be
        # copied to sort.
        open_touchpoints = self.state.open
        if len(open_touchpoints) > 1:
            open_touchpoints = sorted(open_touchpoints, key=_DUE_AT)
        for touchpoint in open_touchpoints:
            if touchpoint.sent_at is None:
                retry = touchpoint.retry_at or touchpoint.due_at
                if retry <= now:
                    return self._emit_send(touchpoint, reminder=0)
                wakes.append(retry)
                continue
            if touchpoint.deadline is not None and touchpoint.deadline <= now:
                return self._miss(touchpoint, now)
            reminder_at = self._reminder_due(touchpoint)
            if reminder_at is not None:
                if reminder_at <= now:
                    return self._emit_send(touchpoint, reminder=touchpoint.reminders_sent + 1)
                wakes.append(reminder_at)
            if touchpoint.deadline is not None:
                wakes.append(touchpoint.deadline)
        return None

    def _greeting_command(
        self, next_touchpoint_due: dt.datetime | None, now: dt.datetime, wakes: list[dt.datetime]
    ) -> Command | None:
        """A greeting due now, or more greeting dates for an open-ended journey; else None,
        with the next greeting's time added to ``wakes``."""
        greeting = self._next_greeting(self._journey_end_bound(next_touchpoint_due), now)
        if greeting is not None:
            due, occasion = greeting
            if due <= now:
                return self._push(SendGreeting(self._seq(), occasion.occasion, occasion.date))
            wakes.append(due)
            return None
        if (
            self.setup.greetings_until is not None
            and self.index.open_ended
            and self.state.next_greeting >= len(self.setup.greetings)
            and next_touchpoint_due is not None
            and next_touchpoint_due.astimezone(self.zone).date() > self.setup.greetings_until
        ):
            return self._push(ExtendGreetings(self._seq(), self.setup.greetings_until))
        return None

    def complete(self, command: Command, result: Any, now: dt.datetime) -> None:
        """Report that ``command`` was carried out, with the activity's result (or None)."""
        if not self._pending or self._pending[0] is not command:
            raise ValueError(f"{type(command).__name__} is not the pending command")
        self._pending.pop(0)
        kind = type(command)  # the core's own commands: exact classes, no subclasses
        if kind is RecordTouchpoint or kind is RecordAnswers or kind is CreditPoints:
            return  # the most frequent, and nothing to do
        if isinstance(command, SendTouchpoint):
            self._sent(command, SendOutcome.model_validate(result), now)
        elif isinstance(command, SendGreeting):
            self.state.next_greeting += 1
        if isinstance(command, (SendGreeting, SendAdvice)) and result is not None:
            if SendOutcome.model_validate(result).suppressed == "do_not_contact":
                self.handle(
                    ControlEvent(action="do_not_contact", reason="found in patient record"), now
                )
        elif isinstance(command, ExtendGreetings):
            batch = GreetingBatch.model_validate(result)
            self.setup.greetings.extend(g for g in batch.greetings if g.date > command.after)
            self.setup.greetings_until = max(batch.until, command.after + dt.timedelta(days=1))

    def compact(self) -> None:
        """Prepare the state for continue-as-new: a fresh run count, consumed greetings dropped
        (so the input does not grow forever)."""
        self.setup.greetings = self.setup.greetings[self.state.next_greeting :]
        self.state.next_greeting = 0
        self.state.sends_this_run = 0

    @property
    def idle(self) -> bool:
        """No command in flight: safe to continue-as-new."""
        return not self._pending

    @property
    def wants_continue_as_new(self) -> bool:
        return self.idle and self.state.sends_this_run >= self.setup.continue_as_new_after

    # ----------------------------------------------------------------- transitions

    def _seq(self) -> int:
        self.state.seq += 1
        return self.state.seq

    def _push(self, effect: Effect) -> Effect:
        self._pending.append(effect)
        return self._pending[0]

    def _set_status(self, status: JourneyStatus, reason: str | None, now: dt.datetime) -> Command:
        self.state.status = status
        self.state.stop_reason = reason
        return self._push(SetStatus(self._seq(), status, reason, now))

    def _open(
        self,
        planned: PlannedTouchpoint,
        occurrence: int,
        day: int,
        due: dt.datetime,
        now: dt.datetime,
    ) -> Command:
        self.state.next_occurrence[planned.id] = occurrence + 1
        self.state.override_next_due = None
        key = self.occurrence_key(planned, occurrence)
        started = self.state.started_at or now
        started_day = self.to_plan(started).astimezone(self.zone).date()
        due_day = self.to_plan(due).astimezone(self.zone).date()
        if due < started and due_day < started_day:
            # Enrolled after this touchpoint's day had passed: do not send stale questions.
            self.state.skipped += 1
            return self._push(
                RecordTouchpoint(
                    self._seq(),
                    key,
                    planned.id,
                    day,
                    TouchpointStatus.SKIPPED,
                    due,
                    now,
                    "due before enrollment",
                )
            )
        touchpoint = OpenTouchpoint(
            key=key,
            touchpoint_id=planned.id,
            occurrence=occurrence,
            day=day,
            due_at=self.in_window(max(due, started)),
        )
        self.state.open.append(touchpoint)
        self._push(
            RecordTouchpoint(
                self._seq(),
                key,
                planned.id,
                day,
                TouchpointStatus.SCHEDULED,
                touchpoint.due_at,
                now,
            )
        )
        return self._pending[0]

    def _emit_send(self, touchpoint: OpenTouchpoint, *, reminder: int) -> Command:
        return self._push(
            SendTouchpoint(
                self._seq(), touchpoint.key, touchpoint.touchpoint_id, touchpoint.day, reminder
            )
        )

    def _reminder_due(self, touchpoint: OpenTouchpoint) -> dt.datetime | None:
        planned = self._planned(touchpoint.touchpoint_id)
        if not planned.expects_answer or touchpoint.sent_at is None:
            return None
        if touchpoint.reminders_sent >= planned.reminders:
            return None
        interval = self._reminder_interval[planned.id]
        return self.in_window(touchpoint.sent_at + interval * (touchpoint.reminders_sent + 1))

    def _planned(self, touchpoint_id: str) -> PlannedTouchpoint:
        """``plan.touchpoint``, by dictionary rather than by scan."""
        planned = self.index.touchpoints.get(touchpoint_id)
        if planned is None:
            raise KeyError(touchpoint_id)
        return planned

    def _sent(self, command: SendTouchpoint, outcome: SendOutcome, now: dt.datetime) -> None:
        touchpoint = self._find_open(command.key)
        if touchpoint is None:
            return  # answered or closed while the send was in flight
        planned = self._planned(command.touchpoint_id)
        if outcome.suppressed == "do_not_contact":
            self.handle(
                ControlEvent(action="do_not_contact", reason="found in patient record"), now
            )
            return
        if outcome.suppressed == "quiet_hours" and command.reminder == 0:
            retry = max(outcome.retry_at or now, self.in_window(now))
            # Never retry at once: the clocks of worker and workflow may disagree.
            touchpoint.retry_at = retry if retry > now else now + QUIET_HOURS_BACKOFF
            return
        if command.missing:
            return  # the re-ask of a partial reply: the touchpoint's clock runs on
        if command.reminder > 0:
            touchpoint.reminders_sent = command.reminder
            return
        touchpoint.sent_at = now
        touchpoint.delivered_via = outcome.channel
        self.state.sent += 1
        self.state.sends_this_run += 1
        self.state.recent.append(
            SentKey(key=touchpoint.key, touchpoint_id=touchpoint.touchpoint_id)
        )
        del self.state.recent[:-LATE_ANSWER_KEYS]
        if not planned.expects_answer:
            self.state.open.remove(touchpoint)
            self._push(
                RecordTouchpoint(
                    self._seq(),
                    touchpoint.key,
                    touchpoint.touchpoint_id,
                    touchpoint.day,
                    TouchpointStatus.SENT if outcome.delivered else TouchpointStatus.SKIPPED,
                    touchpoint.due_at,
                    now,
                    None if outcome.delivered else outcome.suppressed,
                )
            )
            return
        touchpoint.deadline = now + self._real_duration(planned.answer_wait)
        self._push(
            RecordTouchpoint(
                self._seq(),
                touchpoint.key,
                touchpoint.touchpoint_id,
                touchpoint.day,
                TouchpointStatus.SENT,
                touchpoint.due_at,
                now,
                None if outcome.delivered else "no channel delivered: call task opened",
            )
        )
        if not outcome.delivered:
            # Every automated channel failed: a person calls (the last step of the cascade).
            self._push(OpenCallTask(self._seq(), "undeliverable", touchpoint.key))

    def _miss(self, touchpoint: OpenTouchpoint, now: dt.datetime) -> Command:
        self.state.open.remove(touchpoint)
        self.state.missed += 1
        self.state.consecutive_missed += 1
        self._push(
            RecordTouchpoint(
                self._seq(),
                touchpoint.key,
                touchpoint.touchpoint_id,
                touchpoint.day,
                TouchpointStatus.MISSED,
                touchpoint.due_at,
                now,
            )
        )
        if self.state.consecutive_missed >= self.plan.lost_after_missed:
            # 失访: stop automated contact and hand the patient to a person.
            self._push(OpenCallTask(self._seq(), "lost_to_follow_up", touchpoint.key))
            for other in list(self.state.open):
                self.state.open.remove(other)
                self.state.skipped += 1
                self._push(
                    RecordTouchpoint(
                        self._seq(),
                        other.key,
                        other.touchpoint_id,
                        other.day,
                        TouchpointStatus.SKIPPED,
                        other.due_at,
                        now,
                        "lost to follow-up",
                    )
                )
            self._set_status(JourneyStatus.LOST, "no answer to consecutive touchpoints", now)
        return self._pending[0]

    def _find_open(self, key: str) -> OpenTouchpoint | None:
        for touchpoint in self.state.open:
            if touchpoint.key == key:
                return touchpoint
        return None

    # ----------------------------------------------------------------- events

    def handle(self, event: Event, now: dt.datetime) -> None:
        """Apply a signal; its effects come out of the following ``next_command`` calls."""
        if isinstance(event, AnswerEvent):
            self._answer(event, now)
        elif isinstance(event, ObservationEvent):
            self._observe(event, now)
        elif isinstance(event, ControlEvent):
            self._control(event, now)
        elif isinstance(event, RescheduleEvent):
            self._reschedule(event)

    def _answer(self, event: AnswerEvent, now: dt.datetime) -> None:
        at = event.received_at or now
        target = self._answer_target(event.touchpoint_key)
        touchpoint_id = target[1] if target else None
        key = target[0] if target else None
        planned = self._planned(touchpoint_id) if touchpoint_id else None
        questions = self.index.questions[planned.id] if planned else None
        raw_answers: dict[str, Any] = dict(event.answers)
        free_text = (event.text or "").strip()
        if free_text and planned is not None and planned.questionnaire:
            # A reply in words may answer questions too; what it says besides is triaged.
            # After a partial reply only the questions still open are asked (and numbered).
            questionnaire = planned.questionnaire
            replied_to = self._find_open(key) if key else None
            if replied_to is not None and replied_to.answered_questions:
                questionnaire = questionnaire.model_copy(
                    update={
                        "questions": [
                            q
                            for q in questionnaire.questions
                            if q.id not in replied_to.answered_questions
                        ]
                    }
                )
            from_text, free_text = split_reply(free_text, questionnaire)
            for question_id, raw in from_text.items():
                raw_answers.setdefault(question_id, raw)
        parsed: dict[str, Any] = {}
        invalid: dict[str, str] = {}
        observations: list[ObservationValue] = []
        written: list[str] = []
        for question_id, raw in raw_answers.items():
            question = questions.get(question_id) if questions else None
            if question is None:
                question = self._any_question(question_id)
            if question is None:
                invalid[question_id] = "unknown question"
                continue
            try:
                value = question.parse_answer(raw)
            except ValueError as exc:
                invalid[question_id] = str(exc)
                continue
            parsed[question_id] = value
            if question.type == "text" and str(value).strip():
                written.append(str(value).strip())
            if question.indicator and isinstance(value, float):
                observations.append(
                    ObservationValue(indicator=question.indicator, value=value, unit=question.unit)
                )
        open_touchpoint = self._find_open(key) if key else None
        late = key is not None and open_touchpoint is None
        self._push(
            RecordAnswers(
                self._seq(),
                key,
                touchpoint_id,
                parsed,
                invalid,
                tuple(observations),
                event.text,
                at,
                late,
                event.channel,
                event.source,
            )
        )
        if parsed or observations:
            self._evaluate_rules(key, touchpoint_id, parsed, observations)
        to_triage = "\n".join(part for part in (free_text, *written) if part)
        if to_triage and self.state.status not in _ENDED:
            self._push(TriageText(self._seq(), key, to_triage[:4000], event.channel))
        if open_touchpoint is not None:
            rejected = tuple(
                (question_id, str(raw_answers[question_id])[:40])
                for question_id in invalid
                if question_id in raw_answers
            )
            self._touchpoint_replied(
                open_touchpoint, planned, parsed, bool(free_text), at, event.source, rejected
            )

    def _touchpoint_replied(
        self,
        touchpoint: OpenTouchpoint,
        planned: PlannedTouchpoint | None,
        parsed: dict[str, Any],
        wrote: bool,
        at: dt.datetime,
        source: str,
        rejected: tuple[tuple[str, str], ...] = (),
    ) -> None:
        """Answered when every required question is (or, without a questionnaire, on any
        reply; or when staff record the call they made); otherwise the unanswered questions
        are asked again, once, saying which answers could not be taken and why."""
        questionnaire = planned.questionnaire if planned else None
        if questionnaire is None or source == "staff":
            if parsed or wrote:
                self._mark_answered(touchpoint, planned, at)
            return
        for question_id in parsed:
            if question_id not in touchpoint.answered_questions:
                touchpoint.answered_questions.append(question_id)
        required = [q.id for q in questionnaire.questions if q.required]
        missing = tuple(q for q in required if q not in touchpoint.answered_questions)
        if not missing:
            self._mark_answered(touchpoint, planned, at)
            return
        if not touchpoint.reasked and touchpoint.sent_at is not None:
            touchpoint.reasked = True
            self._push(
                SendTouchpoint(
                    self._seq(),
                    touchpoint.key,
                    touchpoint.touchpoint_id,
                    touchpoint.day,
                    touchpoint.reminders_sent,
                    missing,
                    tuple(r for r in rejected if r[0] in missing),
                )
            )

    def _mark_answered(
        self, touchpoint: OpenTouchpoint, planned: PlannedTouchpoint | None, at: dt.datetime
    ) -> None:
        self.state.open.remove(touchpoint)
        self.state.answered += 1
        self.state.consecutive_missed = 0
        self._push(
            RecordTouchpoint(
                self._seq(),
                touchpoint.key,
                touchpoint.touchpoint_id,
                touchpoint.day,
                TouchpointStatus.ANSWERED,
                touchpoint.due_at,
                at,
            )
        )
        if (
            planned is not None
            and planned.points
            and touchpoint.key not in self.state.answered_keys
        ):
            self.state.points += planned.points
            self._push(CreditPoints(self._seq(), touchpoint.key, planned.points))
        self.state.answered_keys.append(touchpoint.key)
        del self.state.answered_keys[:-LATE_ANSWER_KEYS]

    def _answer_target(self, key: str | None) -> tuple[str, str] | None:
        if key is not None:
            open_touchpoint = self._find_open(key)
            if open_touchpoint is not None:
                return open_touchpoint.key, open_touchpoint.touchpoint_id
            sent = next((s for s in reversed(self.state.recent) if s.key == key), None)
            return (sent.key, sent.touchpoint_id) if sent else None
        awaiting = [t for t in self.state.open if t.sent_at is not None]
        awaiting = [t for t in awaiting if self._planned(t.touchpoint_id).expects_answer]
        if awaiting:
            latest = max(awaiting, key=lambda t: t.sent_at or t.due_at)
            return latest.key, latest.touchpoint_id
        if self.state.recent:
            return self.state.recent[-1].key, self.state.recent[-1].touchpoint_id
        return None

    def _any_question(self, question_id: str) -> Any:
        return self.index.any_question.get(question_id)

    def _observe(self, event: ObservationEvent, now: dt.datetime) -> None:
        self._push(
            RecordObservation(
                self._seq(), tuple(event.observations), event.observed_at or now, event.source
            )
        )
        self._evaluate_rules(None, None, {}, list(event.observations))

    def _evaluate_rules(
        self,
        key: str | None,
        touchpoint_id: str | None,
        answers: dict[str, Any],
        observations: list[ObservationValue],
    ) -> None:
        """Record an alert per rule that fires, and open one ticket for them per owner.

        One answer that trips several rules is one problem for one person to call about:
        the ticket takes the highest tier and priority among them. Rules that name their
        department (``department:``) are that department's: one ticket for each department
        named, and one for the rules that name none (a plan without it: one ticket).
        """
        indicators = {o.indicator: o.value for o in observations}
        raised: list[tuple[RaiseAlert, LocalizedText | None]] = []
        owners: dict[str, str | None] = {}
        for rule, holds in self.index.rules_for(touchpoint_id):
            if not holds(answers, indicators):
                continue
            dedupe = f"{rule.id}@{key or 'observation'}"
            if key is not None and dedupe in self.state.alerts_raised:
                continue
            self.state.alerts_raised.append(dedupe)
            del self.state.alerts_raised[:-64]
            self.state.alerts += 1
            evidence = {**answers, **{f"indicator:{k}": v for k, v in indicators.items()}}
            alert = RaiseAlert(
                self._seq(),
                rule.id,
                key,
                rule.tier,
                rule.priority,
                rule.category,
                rule.summary,
                evidence,
            )
            self._push(alert)
            raised.append((alert, rule.advice))
            owners[rule.id] = rule.department
        if not raised:
            return
        for alert, advice in raised:
            if advice is not None and self.state.status not in _ENDED:
                self._push(SendAdvice(self._seq(), alert.rule_id, key, advice))
        groups: dict[str | None, list[RaiseAlert]] = {}
        for alert, _ in raised:
            groups.setdefault(owners[alert.rule_id], []).append(alert)
        for department, alerts in groups.items():
            top = max(alerts, key=lambda a: (a.tier.rank, a.priority.rank))
            # Tickets of one reply point at each other: whoever reads one learns of the rest.
            others = [(d, a) for d, group in groups.items() if d != department for a in group]
            zh_also = "；".join(f"{a.summary.zh_cn}（{d or '按分类分派'}）" for d, a in others)
            en_also = "; ".join(f"{a.summary.en} ({d or 'routed by category'})" for d, a in others)
            summary = LocalizedText.model_validate(
                {
                    "zh-CN": "；".join(a.summary.zh_cn for a in alerts)
                    + (f"。同一回复另有：{zh_also}" if others else ""),
                    "en": "; ".join(a.summary.en for a in alerts)
                    + (f". The same reply also: {en_also}" if others else ""),
                }
            )
            self._push(
                OpenAlertTicket(
                    self._seq(),
                    key,
                    tuple(a.rule_id for a in alerts),
                    tuple(a.seq for a in alerts),
                    top.tier,
                    top.priority,
                    top.category,
                    summary,
                    department,
                )
            )

    def _control(self, event: ControlEvent, now: dt.datetime) -> None:
        state = self.state
        if state.status in _ENDED:
            return
        at = event.at or now
        if event.action == "pause":
            if state.status == JourneyStatus.ACTIVE:
                # Queued sends are regenerated on resume; advice already decided still goes out.
                self._pending = [
                    e for e in self._pending if not isinstance(e, SendTouchpoint | SendGreeting)
                ]
                state.paused_at = now
                self._set_status(JourneyStatus.PAUSED, event.reason, at)
            return
        if event.action == "resume":
            if state.status == JourneyStatus.PAUSED and state.paused_at is not None:
                paused_for = now - state.paused_at
                state.shift += paused_for * self.setup.time_scale
                for touchpoint in state.open:
                    touchpoint.due_at += paused_for
                    if touchpoint.deadline:
                        touchpoint.deadline += paused_for
                    if touchpoint.sent_at:
                        touchpoint.sent_at += paused_for
                state.paused_at = None
                self._set_status(JourneyStatus.ACTIVE, None, at)
            return
        reason = {"stop": event.reason or "stopped by staff"}.get(event.action, event.action)
        # Contact stops at once: nothing queued goes out after this.
        self._pending = [e for e in self._pending if not isinstance(e, _SENDS)]
        for touchpoint in list(state.open):
            state.open.remove(touchpoint)
            if touchpoint.sent_at is None:
                state.skipped += 1
                self._push(
                    RecordTouchpoint(
                        self._seq(),
                        touchpoint.key,
                        touchpoint.touchpoint_id,
                        touchpoint.day,
                        TouchpointStatus.SKIPPED,
                        touchpoint.due_at,
                        now,
                        reason,
                    )
                )
        self._set_status(JourneyStatus.STOPPED, reason, at)

    def _reschedule(self, event: RescheduleEvent) -> None:
        if event.shift:
            self.state.shift += event.shift * self.setup.time_scale
        if event.next_due is not None:
            self.state.override_next_due = event.next_due.astimezone(UTC)

    # ----------------------------------------------------------------- reading

    def progress(self, now: dt.datetime) -> JourneyProgress:
        upcoming = self._next_occurrence() if self.state.status not in _ENDED else None
        next_key = None
        if upcoming is not None:
            next_key = self.occurrence_key(upcoming[1], upcoming[2])
        return JourneyProgress(
            enrollment_id=self.setup.enrollment_id,
            pathway_id=self.plan.pathway_id,
            pathway_version=self.plan.pathway_version,
            variants=self.plan.variants,
            status=self.state.status,
            stop_reason=self.state.stop_reason,
            sent=self.state.sent,
            answered=self.state.answered,
            missed=self.state.missed,
            skipped=self.state.skipped,
            alerts=self.state.alerts,
            points=self.state.points,
            consecutive_missed=self.state.consecutive_missed,
            open_touchpoints=[t.key for t in self.state.open],
            next_touchpoint=next_key,
            next_due_at=upcoming[0] if upcoming else None,
            paused=self.state.status == JourneyStatus.PAUSED,
        )

    def schedule(self, limit: int = 50) -> list[tuple[str, int, dt.datetime]]:
        """The dated plan from here on, without sending anything (``pathways preview``)."""
        # Only the probe's state moves; the setup (and its frozen plan, with the plan's shared
        # index) is shared, not deep-copied: intake previews every discharge's schedule.
        probe = JourneyCore(self.setup.model_copy(), self.state.model_copy(deep=True))
        rows = []
        while len(rows) < limit:
            upcoming = probe._next_occurrence()
            if upcoming is None:
                break
            due, planned, occurrence, day = upcoming
            rows.append((probe.occurrence_key(planned, occurrence), day, due))
            probe.state.next_occurrence[planned.id] = occurrence + 1
        return rows


_ENDED = (JourneyStatus.COMPLETED, JourneyStatus.LOST, JourneyStatus.STOPPED)
_SENDS = (SendTouchpoint, SendGreeting, SendAdvice)


def preview_schedule(
    plan: JourneyPlan,
    discharged_at: dt.datetime,
    *,
    timezone: str = "Asia/Shanghai",
    limit: int = 50,
) -> list[tuple[str, int, dt.datetime]]:
    """The dated schedule a journey would follow (send windows applied), touching nothing."""
    setup = JourneySetup(
        enrollment_id=0, patient_id=0, plan=plan, discharged_at=discharged_at, timezone=timezone
    )
    return JourneyCore(setup).schedule(limit)
