"""The ticket state machine: every decision about a feedback ticket, pure and deterministic.

Like the journey core, it is driven by a workflow (imperative shell) and by the workload
simulator alike: :meth:`TicketCore.next_command` says what to do at ``now`` (route, notify
the patient or staff, save the read model, wait), :meth:`TicketCore.complete` takes the
outcome, :meth:`TicketCore.handle` applies department actions and patient events, and
:meth:`TicketCore.check` tells whether an action is allowed (the update validator).

SLA clocks are data (start, target, calendar, pauses); their due and warning instants come
from the pure deadline math in :mod:`suifang.tickets.sla`, so every timer is exact.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any, Literal, get_args

from pydantic import BaseModel, Field, field_validator

from suifang.core.enums import Priority, TicketSource, TicketStatus, Tier
from suifang.core.sharing import SharedByContent, content_key
from suifang.core.triage import TriageResult
from suifang.tickets.sla import SlaPolicy, deadline

__all__ = [
    "ActorAction",
    "Finish",
    "NotifyPatient",
    "NotifyStaff",
    "OpenSubTask",
    "Page",
    "PageOutcome",
    "PagingState",
    "PatientEvent",
    "Route",
    "Save",
    "SlaClockState",
    "TicketCore",
    "TicketEventRecord",
    "TicketSetup",
    "TicketSnapshot",
    "TicketState",
    "Wait",
]

SATISFIED_FROM = 3
"""Scores 1–5; below this a resolved ticket reopens."""
CLINICAL_ANSWER_CONFIDENCE = 0.5
"""Below this, a clinical question is not answered from the knowledge base but by a nurse."""

Action = Literal[
    "acknowledge",
    "claim",
    "reply",
    "note",
    "transfer",
    "collaborate",
    "escalate",
    "wait_on_patient",
    "resolve",
    "reopen",
    "close",
]
ACTIONS: tuple[Action, ...] = get_args(Action)
_ACKNOWLEDGED = (TicketSource.PATIENT_MESSAGE, TicketSource.COMPLAINT)
_OPEN = (
    TicketStatus.NEW,
    TicketStatus.TRIAGED,
    TicketStatus.ASSIGNED,
    TicketStatus.IN_PROGRESS,
    TicketStatus.WAITING_ON_PATIENT,
    TicketStatus.REOPENED,
)


class TicketSetup(BaseModel):
    ticket_id: int
    patient_id: int
    source: TicketSource
    summary: str
    opened_at: dt.datetime
    triage: TriageResult
    policy: SlaPolicy
    enrollment_id: int | None = None
    discharge_department: str | None = None
    department: str | None = Field(None, description="Already known (a sub-task, an alert).")
    tier: Tier | None = Field(None, description="Overrides the triage's suggestion (alert rules).")
    parent_ticket_id: int | None = None
    satisfaction_wait: dt.timedelta = dt.timedelta(days=3)
    locale: str = "zh-CN"

    @field_validator("policy", mode="before")
    @classmethod
    def _shared_policy(cls, value: Any) -> Any:
        """A serialized policy, decoded once per worker: tickets carry the hospital's policy
        (calendars, holidays, every target) in their input, nearly always the same one."""
        if isinstance(value, dict):
            return _POLICIES.get(content_key(value), lambda: SlaPolicy.model_validate(value))
        return value


_POLICIES: SharedByContent[SlaPolicy] = SharedByContent()


class SlaClockState(BaseModel):
    """One SLA target running for one department: exact, pausable, serialisable."""

    name: Literal["first_response", "resolution"]
    started_at: dt.datetime
    target: dt.timedelta
    calendar: str
    warn_fraction: float | None = 0.8
    on_breach: list[str] = Field(default_factory=list)
    pauses: list[tuple[dt.datetime, dt.datetime]] = Field(default_factory=list)
    paused_since: dt.datetime | None = None
    met_at: dt.datetime | None = None
    warned_at: dt.datetime | None = None
    breached_at: dt.datetime | None = None


class PageRecord(BaseModel):
    """One page sent (or tried) for the ticket."""

    at: dt.datetime
    step: int | None
    recipient: str | None = None
    role: str | None = None
    department: str | None = None
    channel: str | None = None
    accepted: bool = False


class PagingState(BaseModel):
    """An emergency's page to the on-call clinician, and its escalation (exact timers)."""

    department: str
    escalate: bool = True
    """False: one notice to the on-call (urgent tickets), no acknowledgement chased."""
    next_step: int = 0
    """The chain position the next page goes to."""
    last_step: int | None = None
    repeats: int = 0
    due_at: dt.datetime | None = None
    """When the next page goes out if nobody acknowledges (None: none pending)."""
    acknowledged_at: dt.datetime | None = None
    acknowledged_by: str | None = None
    patient_told: bool = False
    unanswered: bool = False
    pages: list[PageRecord] = Field(default_factory=list)

    @property
    def status(self) -> str:
        if self.acknowledged_at is not None:
            return "acknowledged"
        if self.unanswered:
            return "unanswered"
        return "paging" if self.escalate else "notified"


class PageOutcome(BaseModel):
    """What the ``page_on_call`` activity reports: who was paged, and what comes next."""

    accepted: bool
    step: int | None = None
    """The chain position actually paged (later than asked when someone could not be reached)."""
    recipient: str | None = None
    role: str | None = None
    department: str | None = None
    channel: str | None = None
    next_step: int | None = None
    """The next chain position to page; None: this was the last (it is paged again)."""
    escalate_after: dt.timedelta = dt.timedelta(minutes=5)
    repeat_final: int = 3
    message_id: int | None = None


class TicketState(BaseModel):
    status: TicketStatus = TicketStatus.NEW
    tier: Tier = Tier.L2
    priority: Priority = Priority.ROUTINE
    category: str = "other"
    clinical: bool = True
    department: str | None = None
    assignee: str | None = None
    clocks: list[SlaClockState] = Field(default_factory=list)
    first_response_at: dt.datetime | None = None
    resolved_at: dt.datetime | None = None
    closed_at: dt.datetime | None = None
    satisfaction: int | None = None
    satisfaction_due: dt.datetime | None = None
    reopen_count: int = 0
    breached_at: dict[str, dt.datetime] = Field(
        default_factory=dict, description="First breach of each clock (kept across restarts)."
    )
    red_flags: list[str] = Field(default_factory=list)
    sub_tasks: list[int] = Field(default_factory=list)
    paging: PagingState | None = None
    started: bool = False
    seq: int = 0
    saved_seq: int = 0


class ActorAction(BaseModel):
    """A department action (an update): who does what, and why."""

    action: Action
    actor: str = Field(min_length=1, max_length=64)
    text: str | None = Field(None, max_length=4000)
    department: str | None = Field(None, max_length=64)
    assignee: str | None = Field(None, max_length=64)
    visible_to_patient: bool = False


class PatientEvent(BaseModel):
    """Something the patient did: replied, or scored their satisfaction."""

    kind: Literal["reply", "satisfaction"]
    text: str | None = None
    score: int | None = Field(None, ge=1, le=5)


class TicketEventRecord(BaseModel):
    seq: int
    at: dt.datetime
    actor: str
    action: str
    from_status: str | None = None
    to_status: str | None = None
    reason: str | None = None
    detail: dict[str, Any] = Field(default_factory=dict)
    note: str | None = None
    visible_to_patient: bool = False


class TicketSnapshot(BaseModel):
    """What ``sync_ticket`` writes: the read model and the history since the last save."""

    ticket_id: int
    state: TicketState
    first_response_due: dt.datetime | None
    resolution_due: dt.datetime | None
    first_response_breached_at: dt.datetime | None
    resolution_breached_at: dt.datetime | None
    events: list[TicketEventRecord]
    paging: str | None = None
    acknowledged_at: dt.datetime | None = None
    acknowledged_by: str | None = None


# --------------------------------------------------------------------------- commands


@dataclasses.dataclass(frozen=True)
class Wait:
    until: dt.datetime | None


@dataclasses.dataclass(frozen=True)
class Route:
    seq: int
    category: str
    clinical: bool
    tier: Tier
    priority: Priority


@dataclasses.dataclass(frozen=True)
class NotifyPatient:
    seq: int
    kind: Literal[
        "received",
        "emergency",
        "doctor_notified",
        "knowledge_answer",
        "knowledge_info",
        "assigned",
        "reply",
        "resolved",
        "satisfaction",
    ]
    text: str | None = None
    advice: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class NotifyStaff:
    seq: int
    kind: Literal["warning", "breach", "page_failed", "page_unanswered", "fyi"]
    clock: str
    department: str | None
    due_at: dt.datetime
    actions: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Page:
    """Page the department's on-call chain from position ``step`` (``page_on_call``)."""

    seq: int
    department: str
    step: int
    escalate: bool


@dataclasses.dataclass(frozen=True)
class OpenSubTask:
    seq: int
    department: str
    text: str
    actor: str


@dataclasses.dataclass(frozen=True)
class Save:
    seq: int
    snapshot: TicketSnapshot | None


@dataclasses.dataclass(frozen=True)
class Finish:
    status: TicketStatus


Effect = Route | NotifyPatient | NotifyStaff | Page | OpenSubTask | Save
Command = Effect | Wait | Finish


class TicketCore:
    def __init__(
        self,
        setup: TicketSetup,
        state: TicketState | None = None,
        *,
        snapshots: bool = True,
    ) -> None:
        """``snapshots=False`` (the simulator) skips copying the read model into each Save."""
        self.setup = setup
        self.policy = setup.policy
        self.state = state or TicketState()
        self.snapshots = snapshots
        self._pending: list[Effect] = []
        self._events: list[TicketEventRecord] = []
        # Deadlines are a pure function of (start, duration, calendar, pauses) and each step
        # asks for every clock's deadline and warning time again: memoised per ticket.
        self._deadlines: dict[
            tuple[dt.datetime, dt.timedelta, str, tuple[tuple[dt.datetime, dt.datetime], ...]],
            dt.datetime,
        ] = {}

    # ----------------------------------------------------------------- clocks

    def _calendar(self, name: str) -> Any:
        return self.policy.calendar(name)

    def clock_due(self, clock: SlaClockState, fraction: float = 1.0) -> dt.datetime | None:
        if clock.paused_since is not None or clock.met_at is not None:
            return None
        duration = clock.target * fraction
        key = (clock.started_at, duration, clock.calendar, tuple(clock.pauses))
        due = self._deadlines.get(key)
        if due is None:
            due = self._deadlines[key] = deadline(
                clock.started_at, duration, self._calendar(clock.calendar), clock.pauses
            )
        return due

    def _start_clocks(self, now: dt.datetime, *, include_first_response: bool = True) -> None:
        target = self.policy.target_for(
            self.state.tier,
            self.state.priority,
            self.state.department,
            clinical=self.state.clinical,
        )
        clocks = []
        if include_first_response and target.first_response is not None:
            clocks.append(
                SlaClockState(
                    name="first_response",
                    started_at=now,
                    target=target.first_response,
                    calendar=target.calendar,
                    warn_fraction=target.warn_at,
                    on_breach=list(target.on_breach),
                )
            )
        clocks.append(
            SlaClockState(
                name="resolution",
                started_at=now,
                target=target.resolution,
                calendar=target.calendar,
                warn_fraction=target.warn_at,
                on_breach=list(target.on_breach),
            )
        )
        self.state.clocks = clocks

    def _meet(self, name: str, now: dt.datetime) -> None:
        for clock in self.state.clocks:
            if clock.name == name and clock.met_at is None:
                self._unpause(clock, now)
                clock.met_at = now

    def _pause_all(self, now: dt.datetime) -> None:
        for clock in self.state.clocks:
            if clock.met_at is None and clock.paused_since is None:
                clock.paused_since = now

    def _unpause(self, clock: SlaClockState, now: dt.datetime) -> None:
        if clock.paused_since is not None:
            clock.pauses.append((clock.paused_since, now))
            clock.paused_since = None

    def _resume_all(self, now: dt.datetime) -> None:
        for clock in self.state.clocks:
            self._unpause(clock, now)

    def clock(self, name: str) -> SlaClockState | None:
        return next((c for c in self.state.clocks if c.name == name), None)

    # ----------------------------------------------------------------- driving

    def next_command(self, now: dt.datetime) -> Command:
        if self._pending:
            return self._pending[0]
        state = self.state
        if not state.started:
            return self._start(now)
        if state.status == TicketStatus.CLOSED:
            return Finish(state.status)
        wakes: list[dt.datetime] = []
        paging = state.paging
        if paging is not None and paging.due_at is not None and paging.acknowledged_at is None:
            if paging.due_at <= now:
                return self._escalate_page(paging, now)
            wakes.append(paging.due_at)
        for clock in state.clocks:
            due = self.clock_due(clock)
            if due is None or clock.breached_at is not None:
                continue
            warn = self.clock_due(clock, clock.warn_fraction) if clock.warn_fraction else None
            if clock.warned_at is None and warn is not None and warn < due:
                if warn <= now:
                    return self._warn(clock, due, now)
                wakes.append(warn)
            if due <= now:
                return self._breach(clock, due, now)
            wakes.append(due)
        if state.status == TicketStatus.RESOLVED and state.satisfaction_due is not None:
            if state.satisfaction_due <= now:
                state.closed_at = now
                state.satisfaction_due = None
                self._transition(
                    TicketStatus.CLOSED, now, "system", "close", "no satisfaction answer"
                )
                return self._save_and_first(now)
            wakes.append(state.satisfaction_due)
        return Wait(min(wakes) if wakes else None)

    def complete(self, command: Command, result: Any, now: dt.datetime) -> None:
        if not self._pending or self._pending[0] is not command:
            raise ValueError(f"{type(command).__name__} is not the pending command")
        self._pending.pop(0)
        if isinstance(command, Route):
            self._routed(str(result), now)
        elif isinstance(command, Page):
            self._paged(command, PageOutcome.model_validate(result), now)
        elif isinstance(command, OpenSubTask):
            self.state.sub_tasks.append(int(result))
            self._event(
                now,
                command.actor,
                "collaborate",
                detail={"sub_task": int(result), "department": command.department},
            )
            self._save(now)

    @property
    def idle(self) -> bool:
        return not self._pending

    # ----------------------------------------------------------------- transitions

    def _seq(self) -> int:
        self.state.seq += 1
        return self.state.seq

    def _push(self, effect: Effect) -> None:
        self._pending.append(effect)

    def _event(self, now: dt.datetime, actor: str, action: str, **fields: Any) -> None:
        self._events.append(
            TicketEventRecord(seq=self._seq(), at=now, actor=actor, action=action, **fields)
        )

    def _transition(
        self,
        to: TicketStatus,
        now: dt.datetime,
        actor: str,
        action: str,
        reason: str | None = None,
        **detail: Any,
    ) -> None:
        before = self.state.status
        self.state.status = to
        self._event(
            now, actor, action, from_status=before, to_status=to, reason=reason, detail=detail
        )

    def snapshot(self) -> TicketSnapshot:
        first, resolution = self.clock("first_response"), self.clock("resolution")
        return TicketSnapshot(
            ticket_id=self.setup.ticket_id,
            state=self.state.model_copy(deep=True),
            first_response_due=self.clock_due(first) if first else None,
            resolution_due=self.clock_due(resolution) if resolution else None,
            first_response_breached_at=self.state.breached_at.get("first_response"),
            resolution_breached_at=self.state.breached_at.get("resolution"),
            events=list(self._events),
            paging=self.state.paging.status if self.state.paging else None,
            acknowledged_at=self.state.paging.acknowledged_at if self.state.paging else None,
            acknowledged_by=self.state.paging.acknowledged_by if self.state.paging else None,
        )

    def _save(self, now: dt.datetime) -> None:
        self._push(Save(self.state.seq, self.snapshot() if self.snapshots else None))
        self._events = []

    def _save_and_first(self, now: dt.datetime) -> Command:
        self._save(now)
        return self._pending[0]

    def _start(self, now: dt.datetime) -> Command:
        setup, state, triage = self.setup, self.state, self.setup.triage
        state.started = True
        state.category = triage.category
        state.clinical = triage.clinical
        state.priority = triage.urgency
        state.tier = setup.tier or triage.suggested_tier
        state.red_flags = list(triage.red_flags)
        if triage.red_flags:
            state.tier, state.priority = Tier.L3, Priority.EMERGENCY
        self._transition(
            TicketStatus.TRIAGED,
            now,
            "triage",
            "triage",
            detail={
                "category": state.category,
                "tier": state.tier,
                "priority": state.priority,
                "red_flags": state.red_flags,
                "confidence": triage.confidence,
            },
        )
        if state.red_flags:
            # Red flags: tell the patient to call 120 at once, before anything else.
            self._push(NotifyPatient(self._seq(), "emergency", advice=tuple(triage.advice)))
        answer = triage.knowledge_answer
        if answer is not None and answer.confidence < (
            CLINICAL_ANSWER_CONFIDENCE if state.clinical else 0.0
        ):
            answer = None  # a clinical question gets an automatic answer only when it clearly fits
        if state.tier == Tier.L1 and answer is None:
            state.tier = Tier.L2  # nothing safe to say automatically: a person answers
        if (
            answer is not None
            and state.tier != Tier.L1
            and triage.intent in ("complaint", "suggestion")
            and not state.red_flags
        ):
            # Information the patient can use while the department works on it; the
            # complaint itself stays open for its owner.
            self._push(NotifyPatient(self._seq(), "knowledge_info", answer.answer))
        if state.tier == Tier.L1 and answer is not None and not state.red_flags:
            self._push(NotifyPatient(self._seq(), "knowledge_answer", answer.answer))
            state.first_response_at = now
            state.resolved_at = now
            self._transition(
                TicketStatus.RESOLVED,
                now,
                "L1",
                "answer",
                "answered from the knowledge base",
                knowledge_answer=answer.id,
            )
            self._ask_satisfaction(now)
            self._save(now)
            return self._pending[0]
        self._save(now)
        if setup.department:
            self._routed(setup.department, now)
        else:
            self._push(
                Route(self._seq(), state.category, state.clinical, state.tier, state.priority)
            )
        return self._pending[0]

    def _routed(self, department: str, now: dt.datetime) -> None:
        state = self.state
        first_routing = state.department is None and state.reopen_count == 0
        state.department = department
        self._start_clocks(now)
        self._transition(
            TicketStatus.ASSIGNED,
            now,
            "routing",
            "route",
            department=department,
            tier=state.tier,
            priority=state.priority,
        )
        self._save(now)
        if first_routing and not state.red_flags and self.setup.source in _ACKNOWLEDGED:
            # After routing, so the acknowledgement can say who answers and by when.
            self._push(NotifyPatient(self._seq(), "received"))
        if state.paging is None or state.paging.department != department:
            self._start_paging(department, now)
        discharge = self.setup.discharge_department
        if (
            first_routing
            and state.category == "psychological"
            and discharge
            and discharge != department
        ):
            # The mind goes to the mental-health team; the team that discharged the patient
            # is told, so the ward knows and can follow up too.
            self._push(NotifyStaff(self._seq(), "fyi", "routing", discharge, now))

    # ----------------------------------------------------------------- paging

    def _start_paging(self, department: str, now: dt.datetime) -> None:
        """Emergencies page the on-call chain until someone acknowledges; urgent clinical
        tickets notify the on-call once."""
        state = self.state
        if state.priority == Priority.EMERGENCY:
            escalate = True
        elif state.priority == Priority.URGENT and state.clinical:
            escalate = False
        else:
            return
        told = state.paging.patient_told if state.paging else False
        state.paging = PagingState(department=department, escalate=escalate, patient_told=told)
        self._push(Page(self._seq(), department, 0, escalate))

    def _paged(self, command: Page, outcome: PageOutcome, now: dt.datetime) -> None:
        paging = self.state.paging
        if paging is None or paging.department != command.department:
            return  # transferred while the page was out: the new department's chain runs
        paging.pages.append(
            PageRecord(
                at=now,
                step=outcome.step,
                recipient=outcome.recipient,
                role=outcome.role,
                department=outcome.department,
                channel=outcome.channel,
                accepted=outcome.accepted,
            )
        )
        del paging.pages[:-20]
        if not outcome.accepted:
            paging.unanswered = True
            paging.due_at = None
            self._event(
                now,
                "paging",
                "page_failed",
                reason="no one on the on-call chain could be reached",
                detail={"department": command.department, "from_step": command.step},
            )
            self._push(
                NotifyStaff(
                    self._seq(),
                    "page_failed",
                    "paging",
                    command.department,
                    now,
                    ("notify_supervisor",),
                )
            )
            self._save(now)
            return
        self._event(
            now,
            "paging",
            "page",
            detail={
                "to": outcome.recipient,
                "role": outcome.role,
                "department": outcome.department,
                "channel": outcome.channel,
                "step": outcome.step,
            },
        )
        if paging.escalate and paging.acknowledged_at is None:
            final = outcome.next_step is None
            paging.last_step = outcome.step
            paging.next_step = outcome.step if final else outcome.next_step  # type: ignore[assignment]
            if final:
                paging.repeats += 1
            if final and paging.repeats > outcome.repeat_final:
                paging.due_at = now + outcome.escalate_after
                paging.unanswered = True
            else:
                paging.due_at = now + outcome.escalate_after
        if self.state.priority == Priority.EMERGENCY and not paging.patient_told:
            # Only now is it true that a doctor has been told.
            paging.patient_told = True
            self._push(NotifyPatient(self._seq(), "doctor_notified"))
        self._save(now)

    def _escalate_page(self, paging: PagingState, now: dt.datetime) -> Command:
        paging.due_at = None
        if paging.unanswered:
            self._event(
                now,
                "paging",
                "page_unanswered",
                reason="nobody acknowledged the page",
                detail={"department": paging.department, "pages": len(paging.pages)},
            )
            self._push(
                NotifyStaff(
                    self._seq(),
                    "page_unanswered",
                    "paging",
                    paging.department,
                    now,
                    ("notify_supervisor",),
                )
            )
            return self._save_and_first(now)
        self._event(
            now,
            "paging",
            "escalate_page",
            reason="no acknowledgement",
            detail={"department": paging.department, "to_step": paging.next_step},
        )
        self._push(Page(self._seq(), paging.department, paging.next_step, True))
        return self._save_and_first(now)

    def _acknowledged(self, actor: str, now: dt.datetime, via: str) -> bool:
        """Stop chasing the page: someone owns the emergency. True if this acknowledged it."""
        paging = self.state.paging
        if paging is None or paging.acknowledged_at is not None:
            return False
        paging.acknowledged_at = now
        paging.acknowledged_by = actor
        paging.due_at = None
        self._event(now, actor, "acknowledge", detail={"via": via})
        return True

    def _warn(self, clock: SlaClockState, due: dt.datetime, now: dt.datetime) -> Command:
        clock.warned_at = now
        self._event(
            now, "sla", "sla_warning", detail={"clock": clock.name, "due_at": due.isoformat()}
        )
        self._push(NotifyStaff(self._seq(), "warning", clock.name, self.state.department, due))
        self._save(now)
        return self._pending[0]

    def _breach(self, clock: SlaClockState, due: dt.datetime, now: dt.datetime) -> Command:
        clock.breached_at = now
        self.state.breached_at.setdefault(clock.name, now)
        actions = tuple(clock.on_breach)
        self._event(
            now,
            "sla",
            "sla_breach",
            detail={"clock": clock.name, "due_at": due.isoformat(), "actions": list(actions)},
        )
        self._push(
            NotifyStaff(self._seq(), "breach", clock.name, self.state.department, due, actions)
        )
        if "bump_tier" in actions and self.state.tier != Tier.L3:
            before = self.state.tier
            self.state.tier = self.state.tier.bumped()
            self._event(
                now,
                "sla",
                "escalate",
                reason=f"{clock.name} SLA breached",
                detail={"from_tier": before, "to_tier": self.state.tier},
            )
            self._restart_clocks_after_breach(now)
        if "reassign" in actions and self.state.assignee is not None:
            self._event(
                now,
                "sla",
                "unassign",
                reason=f"{clock.name} SLA breached",
                detail={"assignee": self.state.assignee},
            )
            self.state.assignee = None
            if self.state.status == TicketStatus.IN_PROGRESS:
                self._transition(
                    TicketStatus.ASSIGNED, now, "sla", "reassign", f"{clock.name} SLA breached"
                )
        self._save(now)
        return self._pending[0]

    def _restart_clocks_after_breach(self, now: dt.datetime) -> None:
        """A bumped tier works to its own targets from now (the breach stays in breached_at)."""
        self._start_clocks(now, include_first_response=self.state.first_response_at is None)

    def _ask_satisfaction(self, now: dt.datetime) -> None:
        self._push(NotifyPatient(self._seq(), "satisfaction"))
        self.state.satisfaction_due = now + self.setup.satisfaction_wait

    # ----------------------------------------------------------------- actions and events

    def check(self, action: ActorAction) -> str | None:
        """Why ``action`` cannot be applied now, or None if it can (pure; the update validator)."""
        status = self.state.status
        if not self.state.started:
            return "the ticket is still being triaged"
        if status == TicketStatus.CLOSED and action.action != "reopen":
            return f"the ticket is closed; {action.action} is not possible (reopen it first)"
        if action.action in ("reply", "note", "collaborate") and not (action.text or "").strip():
            return f"{action.action} needs a text"
        if action.action in ("transfer", "collaborate") and not action.department:
            return f"{action.action} needs a department"
        if action.action == "transfer" and action.department == self.state.department:
            return f"the ticket is already with {action.department}"
        if action.action == "resolve" and status not in _OPEN:
            return f"only an open ticket can be resolved (it is {status.value})"
        if action.action == "reopen" and status not in (TicketStatus.RESOLVED, TicketStatus.CLOSED):
            return f"only a resolved or closed ticket can be reopened (it is {status.value})"
        if action.action == "close" and status != TicketStatus.RESOLVED:
            return "only a resolved ticket can be closed"
        if action.action == "acknowledge":
            paging = self.state.paging
            if paging is None:
                return "there is no page to acknowledge on this ticket"
            if paging.acknowledged_at is not None:
                return f"the page was already acknowledged by {paging.acknowledged_by}"
        if action.action == "escalate" and self.state.tier == Tier.L3:
            return "the ticket is already at L3 (doctor)"
        if action.action == "wait_on_patient" and status == TicketStatus.WAITING_ON_PATIENT:
            return "the ticket is already waiting on the patient"
        if (
            action.action in ("claim", "wait_on_patient", "escalate", "transfer")
            and status not in _OPEN
        ):
            return f"{action.action} is only possible on an open ticket (it is {status.value})"
        return None

    def handle(self, event: ActorAction | PatientEvent, now: dt.datetime) -> None:
        if isinstance(event, PatientEvent):
            self._patient(event, now)
            return
        problem = self.check(event)
        if problem is not None:
            self._event(
                now, event.actor, "refused", reason=problem, detail={"action": event.action}
            )
            self._save(now)
            return
        getattr(self, f"_do_{event.action}")(event, now)
        self._save(now)

    def _do_acknowledge(self, action: ActorAction, now: dt.datetime) -> None:
        self._acknowledged(action.actor, now, "acknowledge")
        state = self.state
        state.assignee = state.assignee or action.assignee or action.actor
        if action.text:
            self._event(now, action.actor, "note", note=action.text, visible_to_patient=False)
        if state.priority == Priority.EMERGENCY:
            # A clinician owns the emergency: that is its first response.
            if state.first_response_at is None:
                state.first_response_at = now
            self._meet("first_response", now)
        if state.status in (TicketStatus.ASSIGNED, TicketStatus.TRIAGED, TicketStatus.REOPENED):
            self._transition(
                TicketStatus.IN_PROGRESS,
                now,
                action.actor,
                "claim",
                detail={"assignee": state.assignee},
            )
            self._push(NotifyPatient(self._seq(), "assigned"))

    def _do_claim(self, action: ActorAction, now: dt.datetime) -> None:
        self._acknowledged(action.actor, now, "claim")
        self.state.assignee = action.assignee or action.actor
        self._resume_all(now)
        self._transition(
            TicketStatus.IN_PROGRESS,
            now,
            action.actor,
            "claim",
            action.text,
            assignee=self.state.assignee,
        )
        self._push(NotifyPatient(self._seq(), "assigned"))

    def _do_reply(self, action: ActorAction, now: dt.datetime) -> None:
        self._acknowledged(action.actor, now, "reply")
        self._event(now, action.actor, "reply", note=action.text, visible_to_patient=True)
        self._push(NotifyPatient(self._seq(), "reply", action.text))
        if self.state.first_response_at is None:
            self.state.first_response_at = now
        self._meet("first_response", now)
        if self.state.status in (
            TicketStatus.ASSIGNED,
            TicketStatus.TRIAGED,
            TicketStatus.REOPENED,
        ):
            self.state.assignee = self.state.assignee or action.actor
            self._transition(
                TicketStatus.IN_PROGRESS,
                now,
                action.actor,
                "claim",
                detail={"assignee": self.state.assignee},
            )

    def _do_note(self, action: ActorAction, now: dt.datetime) -> None:
        self._event(now, action.actor, "note", note=action.text, visible_to_patient=False)

    def _do_transfer(self, action: ActorAction, now: dt.datetime) -> None:
        before = self.state.department
        self.state.department = action.department
        self.state.assignee = None
        self._start_clocks(now, include_first_response=self.state.first_response_at is None)
        self._transition(
            TicketStatus.ASSIGNED,
            now,
            action.actor,
            "transfer",
            action.text,
            from_department=before,
            to_department=action.department,
        )
        if (
            action.department
            and self.state.paging is not None
            and self.state.paging.acknowledged_at is None
        ):
            self._start_paging(action.department, now)

    def _do_collaborate(self, action: ActorAction, now: dt.datetime) -> None:
        self._push(
            OpenSubTask(self._seq(), action.department or "", action.text or "", action.actor)
        )

    def _do_escalate(self, action: ActorAction, now: dt.datetime) -> None:
        before = self.state.tier
        self.state.tier = before.bumped()
        self._start_clocks(now, include_first_response=self.state.first_response_at is None)
        self._event(
            now,
            action.actor,
            "escalate",
            reason=action.text,
            detail={"from_tier": before, "to_tier": self.state.tier},
        )

    def _do_wait_on_patient(self, action: ActorAction, now: dt.datetime) -> None:
        self._pause_all(now)
        self._transition(
            TicketStatus.WAITING_ON_PATIENT, now, action.actor, "wait_on_patient", action.text
        )
        if action.text:
            self._push(NotifyPatient(self._seq(), "reply", action.text))

    def _do_resolve(self, action: ActorAction, now: dt.datetime) -> None:
        self._acknowledged(action.actor, now, "resolve")
        self._resume_all(now)
        if self.state.first_response_at is None:
            self.state.first_response_at = now
        self._meet("first_response", now)
        self._meet("resolution", now)
        self.state.resolved_at = now
        self._transition(TicketStatus.RESOLVED, now, action.actor, "resolve", action.text)
        self._push(NotifyPatient(self._seq(), "resolved", action.text))
        self._ask_satisfaction(now)

    def _do_reopen(self, action: ActorAction, now: dt.datetime) -> None:
        self._reopen(now, action.actor, action.text or "reopened")

    def _reopen(self, now: dt.datetime, actor: str, reason: str) -> None:
        state = self.state
        state.reopen_count += 1
        state.resolved_at = None
        state.closed_at = None
        state.satisfaction_due = None
        if state.department is None:
            # An L1 knowledge answer that did not help: a person takes it over.
            state.tier = Tier.L2 if state.tier == Tier.L1 else state.tier
            self._transition(TicketStatus.REOPENED, now, actor, "reopen", reason)
            self._push(
                Route(self._seq(), state.category, state.clinical, state.tier, state.priority)
            )
            return
        self._start_clocks(now, include_first_response=False)
        self._transition(TicketStatus.REOPENED, now, actor, "reopen", reason)

    def _do_close(self, action: ActorAction, now: dt.datetime) -> None:
        self.state.closed_at = now
        self._transition(TicketStatus.CLOSED, now, action.actor, "close", action.text)

    def _patient(self, event: PatientEvent, now: dt.datetime) -> None:
        state = self.state
        if event.kind == "satisfaction" and event.score is not None:
            state.satisfaction = event.score
            self._event(
                now, "patient", "satisfaction", detail={"score": event.score}, note=event.text
            )
            if state.status in (TicketStatus.RESOLVED, TicketStatus.CLOSED):
                if event.score < SATISFIED_FROM:
                    self._reopen(now, "patient", f"low satisfaction ({event.score}/5)")
                else:
                    state.closed_at = now
                    state.satisfaction_due = None
                    self._transition(
                        TicketStatus.CLOSED, now, "patient", "close", "patient satisfied"
                    )
            self._save(now)
            return
        self._event(now, "patient", "patient_reply", note=event.text, visible_to_patient=True)
        if state.status == TicketStatus.WAITING_ON_PATIENT:
            self._resume_all(now)
            self._transition(TicketStatus.IN_PROGRESS, now, "patient", "patient_reply")
        elif state.status in (TicketStatus.RESOLVED, TicketStatus.CLOSED):
            self._reopen(now, "patient", "the patient wrote again")
        self._save(now)
