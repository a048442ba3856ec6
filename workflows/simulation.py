"""Workload simulation: the real journey and ticket state machines on simulated time.

"If we roll this pathway out to 300 discharges a day, how many nurse calls and doctor
callbacks will it create, and will we meet the SLAs?" The simulator answers with the very
code production runs: the journey core and ticket core the workflows drive, the real pathway
templates and alert rules, the LACE risk model, the bilingual triage classifier (on real
labelled patient messages), the routing table and the SLA policy with its business-hours
calendar — in a discrete-event loop, with synthetic patients whose behaviour (answer rate,
answer delay, abnormal answers, free-text messages, satisfaction) is configurable, and
department staff who work their queues. The same seed gives the same forecast.

Not simulated: channel failures (every send is delivered), transfers, collaboration and
waiting on the patient, and routing plugins (the routing table and discharge department
decide).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import datetime as dt
import functools
import gc
import heapq
import itertools
import math
import random
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml
from pydantic import BaseModel, Field

from suifang.core.enums import (
    JourneyStatus,
    Priority,
    TicketSource,
    TicketStatus,
    Tier,
    TouchpointStatus,
)
from suifang.core.pathways import (
    AlertRule,
    AllCondition,
    AnswerCondition,
    AnyCondition,
    Condition,
    IndicatorCondition,
    JourneyPlan,
    PathwayTemplate,
    Question,
    Questionnaire,
    resolve_plan,
)
from suifang.core.risk import RiskInput
from suifang.core.timezones import IanaTimezone
from suifang.core.triage import RoutingRequest, TriageRequest, TriageResult
from suifang.tickets.core import (
    ActorAction,
    NotifyPatient,
    NotifyStaff,
    OpenSubTask,
    Page,
    PageOutcome,
    PatientEvent,
    Route,
    Save,
    TicketCore,
    TicketSetup,
)
from suifang.tickets.core import Finish as TicketFinish
from suifang.tickets.core import Wait as TicketWait
from suifang.tickets.danger import default_detector
from suifang.tickets.routing import choose_department
from suifang.tickets.sla import SlaPolicy
from suifang.workflows.journey_core import (
    AnswerEvent,
    CreditPoints,
    Finish,
    JourneyCore,
    JourneySetup,
    OpenAlertTicket,
    OpenCallTask,
    PlanIndex,
    RaiseAlert,
    RecordAnswers,
    RecordTouchpoint,
    SendAdvice,
    SendGreeting,
    SendOutcome,
    SendTouchpoint,
    TriageText,
    Wait,
    evaluate,
)
from suifang.workflows.risk import lace

__all__ = [
    "PatientBehaviour",
    "SimulationConfig",
    "SimulationResult",
    "Simulator",
    "abnormal_answers",
    "build_simulator",
    "normal_answers",
    "simulate",
]

TEMPLATES = Path(__file__).parent.parent / "templates"
SERVICE_MINUTES = {Tier.L1: 0.0, Tier.L2: 15.0, Tier.L3: 20.0}
"""Minutes of a person's time per ticket: an L2 nurse call, an L3 doctor callback."""
WORKDAY_MINUTES = 8 * 60

_DELIVERED = SendOutcome(delivered=True, channel="simulated")
"""Every simulated send is delivered; one immutable outcome serves them all."""
_TOUCHPOINT_KEYS = {status: f"touchpoint:{status.value}" for status in TouchpointStatus}
_ALERT_KEYS = {tier: f"alert:{tier.value}" for tier in Tier}


# --------------------------------------------------------------------------- answers


def _candidates(question: Question) -> list[Any]:
    if question.type == "yes_no":
        return ["no", "yes"]
    if question.type == "choice":
        return [option.id for option in question.options]
    if question.type in ("scale", "number"):
        low = question.min if question.min is not None else 0
        high = question.max if question.max is not None else 300
        middle = round((low + high) / 2)
        return [str(v) for v in dict.fromkeys([middle, round(low + (high - low) * 0.3), low, high])]
    return ["还好"]


def normal_answers(questionnaire: Questionnaire, rules: list[AlertRule]) -> dict[str, Any]:
    """For each question, the first plausible answer that trips no alert rule."""
    answers: dict[str, Any] = {}
    for question in questionnaire.questions:
        for candidate in _candidates(question):
            trial = {**answers, question.id: question.parse_answer(candidate)}
            indicators = {
                q.indicator: trial[q.id]
                for q in questionnaire.questions
                if q.indicator and isinstance(trial.get(q.id), float)
            }
            if not any(evaluate(rule.condition, trial, indicators) for rule in rules):
                answers[question.id] = candidate
                break
    return answers


def _satisfy(condition: Condition, questionnaire: Questionnaire) -> dict[str, Any] | None:
    if isinstance(condition, AnswerCondition):
        if questionnaire.question(condition.question) is None:
            return None
        value = condition.value
        if condition.op == "gt":
            value = float(value) + 1
        elif condition.op == "lt":
            value = float(value) - 1
        elif condition.op == "in":
            value = value[0]
        return {condition.question: f"{value:g}" if isinstance(value, float) else str(value)}
    if isinstance(condition, IndicatorCondition):
        question = next(
            (q for q in questionnaire.questions if q.indicator == condition.indicator), None
        )
        if question is None:
            return None
        value = {"gt": condition.value + 1, "lt": condition.value - 0.5}.get(
            condition.op, condition.value
        )
        return {question.id: f"{value:g}"}
    if isinstance(condition, AnyCondition):
        return next((a for c in condition.any if (a := _satisfy(c, questionnaire))), None)
    if isinstance(condition, AllCondition):
        merged: dict[str, Any] = {}
        for inner in condition.all:
            part = _satisfy(inner, questionnaire)
            if part is None:
                return None
            merged.update(part)
        return merged
    return None


def abnormal_answers(
    plan: JourneyPlan, touchpoint_id: str, rule: AlertRule | None = None
) -> tuple[dict[str, Any], AlertRule] | None:
    """Normal answers except for what trips ``rule`` (default: the first that applies)."""
    planned = plan.touchpoint(touchpoint_id)
    if planned.questionnaire is None:
        return None
    for candidate in [rule] if rule else plan.alert_rules:
        if candidate.touchpoints is not None and touchpoint_id not in candidate.touchpoints:
            continue
        trigger = _satisfy(candidate.condition, planned.questionnaire)
        if trigger:
            return {**normal_answers(planned.questionnaire, []), **trigger}, candidate
    return None


# --------------------------------------------------------------------------- configuration


class PatientBehaviour(BaseModel):
    answer_rate: float = Field(0.8, ge=0, le=1, description="Share of touchpoints answered.")
    answer_delay_hours: float = Field(4.0, gt=0, description="Median time to answer.")
    abnormal_rate: float = Field(
        0.08, ge=0, le=1, description="Share of answers that are abnormal."
    )
    message_rate: float = Field(0.05, ge=0, le=1, description="Free-text messages per touchpoint.")
    low_satisfaction_rate: float = Field(
        0.1, ge=0, le=1, description="Scores of 1–2 after a ticket."
    )
    satisfaction_reply_rate: float = Field(0.6, ge=0, le=1)


class SimulationConfig(BaseModel):
    pathway: str
    patients_per_day: int = Field(300, ge=1, le=100_000)
    days: int = Field(60, ge=1, le=3650)
    tail_days: int = Field(35, ge=0, le=400, description="Days simulated after the last discharge.")
    seed: int = 1
    start: dt.date = dt.date(2026, 11, 2)
    timezone: IanaTimezone = "Asia/Shanghai"
    behaviour: PatientBehaviour = Field(default_factory=PatientBehaviour)
    staff: dict[str, int] = Field(default_factory=dict, description="People per department.")
    default_staff: int = Field(2, ge=1)


@dataclasses.dataclass
class _Journey:
    id: int
    core: JourneyCore
    rng: random.Random
    discharge_department: str
    subject: RiskInput
    script: list[tuple[dt.datetime, str | None, dict[str, Any], str | None]] = dataclasses.field(
        default_factory=list
    )
    alerts: list[tuple[str, str | None]] = dataclasses.field(default_factory=list)
    tickets: list[int] = dataclasses.field(default_factory=list)
    messages: list[tuple[dt.datetime, str]] = dataclasses.field(default_factory=list)
    wake: dt.datetime | None = None
    """The one timer the journey waits on; earlier wake-ups left in the heap are stale."""


@dataclasses.dataclass
class _Ticket:
    id: int
    core: TicketCore
    opened_at: dt.datetime
    queued: bool = False
    first_response: dt.datetime | None = None
    wake: dt.datetime | None = None
    opened_as: tuple[str, str, str, str, str | None] | None = None
    """(source, category, tier, priority, department) once triaged and routed."""


class SimulationResult(BaseModel):
    config: SimulationConfig
    journeys: int
    journey_outcomes: dict[str, int]
    touchpoints: dict[str, int]
    messages: dict[str, int]
    alerts_by_tier: dict[str, int]
    tickets: int
    tickets_by_source: dict[str, int]
    tickets_by_category: dict[str, int]
    tickets_by_department: dict[str, int]
    tickets_by_tier: dict[str, int]
    sla: dict[str, dict[str, int]]
    first_response_minutes: dict[str, float]
    kpis: dict[str, float]
    daily: list[dict[str, Any]]
    staffing: dict[str, dict[str, float]] = Field(
        description="Per department: staff, tickets, minutes of work per day, people needed "
        "at the peak, share of first responses within SLA."
    )
    elapsed_seconds: float = 0.0
    per_patient: list[dict[str, Any]] = Field(default_factory=list, exclude=True)


# --------------------------------------------------------------------------- the simulator


@functools.cache
def _everyday_messages() -> tuple[str, ...]:
    """The shipped training messages minus emergencies: what patients write on an ordinary day.

    Emergencies are left out, as they always were: the forecast plans the everyday workload. The
    danger detector (not a column someone has to keep up to date) decides which ones they are.
    """
    detector = default_detector()
    with (TEMPLATES / "triage" / "messages.csv").open(encoding="utf-8") as handle:
        return tuple(
            row["text"]
            for row in csv.DictReader(handle)
            if detector.assess(row["text"]).level != "emergency"
        )


class Simulator:
    def __init__(
        self,
        config: SimulationConfig,
        template: PathwayTemplate,
        policy: SlaPolicy,
        *,
        triage: Callable[[TriageRequest], TriageResult],
        routing_table: dict[str, str],
        departments: set[str],
        greetings: Callable[[dt.date, dt.date, dt.date | None], list[Any]] | None = None,
        keep_patients: bool = False,
    ) -> None:
        self.config = config
        self.template = template
        self.policy = policy
        self.triage = triage
        self.routing_table = routing_table
        self.departments = departments
        self.greetings = greetings
        self.keep_patients = keep_patients
        self.zone = ZoneInfo(config.timezone)
        self.rng = random.Random(config.seed)
        self.heap: list[tuple[dt.datetime, int, str, Any]] = []
        self.seq = itertools.count()
        self.journeys: dict[int, _Journey] = {}
        self.tickets: dict[int, _Ticket] = {}
        self.queues: dict[str, list[tuple[dt.datetime, int, int]]] = defaultdict(list)
        self.free_staff: dict[str, int] = {}
        self.dispatch_at: dict[str, dt.datetime] = {}
        self.counts: Counter[str] = Counter()
        self.daily: dict[dt.date, Counter[str]] = defaultdict(Counter)
        self.staff_minutes: dict[str, dict[dt.date, float]] = defaultdict(
            lambda: defaultdict(float)
        )
        self.ticket_rows: list[dict[str, Any]] = []
        self._last_day: tuple[dt.datetime | None, dt.date] = (None, config.start)
        self.messages = self._load_messages()
        self.plans: dict[tuple[str, tuple[str, ...]], JourneyPlan] = {}
        self.indexes: dict[int, PlanIndex] = {}
        """One :class:`PlanIndex` per plan (by id; ``plans`` keeps them alive), shared by the
        journeys on it: lookups and calendar arithmetic done once, not per patient."""
        self._normal: dict[tuple[int, str], dict[str, Any]] = {}
        self._triaged: dict[str, TriageResult] = {}
        self.end = dt.datetime.combine(
            config.start + dt.timedelta(days=config.days + config.tail_days),
            dt.time(0),
            tzinfo=self.zone,
        ).astimezone(dt.UTC)
        """The simulation stops here: ``tail_days`` after the last day of discharges."""

    # ------------------------------------------------------------------ infrastructure

    def _load_messages(self) -> list[str]:
        return list(_everyday_messages())

    def push(self, at: dt.datetime, kind: str, payload: Any) -> None:
        heapq.heappush(self.heap, (at, next(self.seq), kind, payload))

    def day_of(self, at: dt.datetime) -> dt.date:
        # Consecutive calls mostly ask about the same instant: remember the last answer.
        last_at, last_day = self._last_day
        if at != last_at:
            last_day = at.astimezone(self.zone).date()
            self._last_day = (at, last_day)
        return last_day

    def plan_for(self, tier: str, groups: list[str]) -> JourneyPlan:
        key = (tier, tuple(groups))
        if key not in self.plans:
            plan = self.plans[key] = resolve_plan(self.template, tier, groups)
            self.indexes[id(plan)] = PlanIndex(plan)
        return self.plans[key]

    # ------------------------------------------------------------------ patients

    def _patient(self, index: int, discharged_at: dt.datetime, rng: random.Random) -> RiskInput:
        age = max(18, min(95, int(rng.gauss(64, 13))))
        birth = discharged_at.date().replace(year=discharged_at.year - age) - dt.timedelta(
            days=rng.randrange(365)
        )
        comorbidities = rng.sample(
            ["I50.9", "E11.9", "E11.2", "J44.9", "N18.3", "I63.9", "C34.9", "K70.3"],
            k=min(8, int(rng.expovariate(1.2))),
        )
        return RiskInput(
            birth_date=birth,
            discharged_at=discharged_at,
            length_of_stay_days=round(rng.lognormvariate(1.4, 0.6), 1),
            emergency_admission=rng.random() < 0.35,
            comorbidity_codes=comorbidities,
            ed_visits_6_months=min(6, int(rng.expovariate(1.5))),
            pathway_id=self.template.id,
        )

    def enroll(self, index: int, discharged_at: dt.datetime, rng: random.Random) -> _Journey:
        subject = self._patient(index, discharged_at, rng)
        risk = lace(subject)
        plan = self.plan_for(risk.tier.value, list(risk.groups))
        greetings = []
        if self.greetings is not None and plan.greetings:
            start = discharged_at.astimezone(self.zone).date()
            horizon = start + dt.timedelta(days=self.config.days + self.config.tail_days)
            greetings = self.greetings(start, horizon, subject.birth_date)
        setup = JourneySetup(
            enrollment_id=index,
            patient_id=index,
            plan=plan,
            discharged_at=discharged_at,
            timezone=self.config.timezone,
            greetings=greetings,
        )
        journey = _Journey(
            index,
            JourneyCore(setup, index=self.indexes[id(plan)]),
            rng,
            self.template.department or "general_medicine",
            subject,
        )
        self.journeys[index] = journey
        self.counts["journeys"] += 1
        self.counts[f"risk:{risk.tier.value}"] += 1
        self.daily[self.day_of(discharged_at)]["discharges"] += 1
        return journey

    # ------------------------------------------------------------------ journeys

    def run_journey(self, journey: _Journey, now: dt.datetime) -> None:
        # The innermost loop of the simulation: dispatch on the exact command class (commands
        # are final dataclasses), most frequent first, with the counter keys precomputed.
        core = journey.core
        counts = self.counts
        messages: Counter[str] | None = None  # today's counters, looked up on first use
        while True:
            command = core.next_command(now)
            kind = type(command)
            result = None
            if kind is RecordTouchpoint:
                counts[_TOUCHPOINT_KEYS[command.status]] += 1
            elif kind is SendTouchpoint:
                result = _DELIVERED
                if messages is None:
                    messages = self.daily[self.day_of(now)]
                messages["messages"] += 1
                counts["messages:reminder" if command.reminder else "messages:touchpoint"] += 1
            elif kind is RecordAnswers:
                pass
            elif kind is CreditPoints:
                counts["points"] += command.points
            elif kind is Wait:
                if command.until is not None and command.until != journey.wake:
                    journey.wake = command.until
                    self.push(command.until, "journey", journey.id)
                return
            elif kind is Finish:
                journey.wake = None
                return
            elif kind is SendGreeting or kind is SendAdvice:
                result = _DELIVERED
                if messages is None:
                    messages = self.daily[self.day_of(now)]
                messages["messages"] += 1
                counts["messages:greeting" if kind is SendGreeting else "messages:advice"] += 1
            elif kind is RaiseAlert:
                counts[_ALERT_KEYS[command.tier]] += 1
                journey.alerts.append((command.rule_id, command.key))
            elif kind is OpenAlertTicket:
                alert_triage = TriageResult(
                    category=command.category,
                    urgency=command.priority,
                    confidence=1.0,
                    suggested_tier=command.tier,
                    clinical=True,
                )
                result = self.open_ticket(
                    now,
                    journey,
                    TicketSource.CLINICAL_ALERT,
                    command.summary.zh_cn,
                    alert_triage,
                    tier=command.tier,
                )
            elif kind is TriageText:
                result = self.patient_text(now, journey, command.text)
            elif kind is OpenCallTask:
                counts[f"call_task:{command.reason}"] += 1
                result = self.open_ticket(
                    now, journey, TicketSource.NON_RESPONDER, "call the patient",
                    TriageResult(category="call_task", urgency=Priority.ROUTINE, confidence=1.0,
                                 suggested_tier=Tier.L2, clinical=False),
                    tier=Tier.L2,
                )  # fmt: skip
            core.complete(command, result, now)
            if kind is SendTouchpoint and command.reminder == 0 and not command.missing:
                self.schedule_answer(journey, command, now)

    def patient_text(self, now: dt.datetime, journey: _Journey, text: str) -> int | None:
        """Triage what a patient wrote, as the journey's ``triage_patient_text`` does: thanks
        are counted, anything else opens a ticket."""
        triage = self._triaged.get(text)
        if triage is None:  # a pure function of the text: ask once per message
            triage = self._triaged[text] = self.triage(
                TriageRequest(text=text, pathway_id=journey.core.plan.pathway_id)
            )
        if triage.intent == "praise":
            self.counts["praise"] += 1
            return None
        if triage.intent == "nothing":
            return None
        return self.open_ticket(now, journey, TicketSource.PATIENT_MESSAGE, text, triage)

    def schedule_answer(self, journey: _Journey, command: SendTouchpoint, now: dt.datetime) -> None:
        behaviour, rng = self.config.behaviour, journey.rng
        planned = journey.core.index.touchpoints[command.touchpoint_id]
        answer_roll, delay_roll, abnormal_roll, message_roll = (
            rng.random(),
            rng.random(),
            rng.random(),
            rng.random(),
        )
        if planned.expects_answer and answer_roll < behaviour.answer_rate:
            delay = dt.timedelta(
                hours=behaviour.answer_delay_hours * (0.25 + 1.5 * delay_roll) ** 2
            )
            delay = min(delay, planned.answer_wait * 0.9 / journey.core.setup.time_scale)
            answers: dict[str, Any] = {}
            if planned.questionnaire is not None:
                abnormal = abnormal_roll < behaviour.abnormal_rate and self._abnormal(
                    journey, command.touchpoint_id
                )
                answers = abnormal or self.normal(journey.core.plan, command.touchpoint_id)
            text = None if answers else "好的,一切都好"
            journey.script.append((now + delay, command.key, answers, text))
            self.push(now + delay, "answer", (journey.id, command.key, answers, text))
        if message_roll < behaviour.message_rate:
            text = self.messages[rng.randrange(len(self.messages))]
            at = now + dt.timedelta(hours=rng.uniform(1, 48))
            journey.messages.append((at, text))
            self.push(at, "message", (journey.id, text))

    def normal(self, plan: JourneyPlan, touchpoint_id: str) -> dict[str, Any]:
        key = (id(plan), touchpoint_id)
        if key not in self._normal:
            questionnaire = plan.touchpoint(touchpoint_id).questionnaire
            assert questionnaire is not None
            self._normal[key] = normal_answers(questionnaire, plan.alert_rules)
        return self._normal[key]

    def _abnormal(self, journey: _Journey, touchpoint_id: str) -> dict[str, Any] | None:
        """Answers that trip one of the touchpoint's alert rules, picked at random."""
        plan = journey.core.plan
        rules = [
            r for r in plan.alert_rules if r.touchpoints is None or touchpoint_id in r.touchpoints
        ]
        journey.rng.shuffle(rules)
        for rule in rules:
            found = abnormal_answers(plan, touchpoint_id, rule)
            if found is not None:
                return found[0]
        return None

    # ------------------------------------------------------------------ tickets

    def open_ticket(
        self,
        now: dt.datetime,
        journey: _Journey | None,
        source: TicketSource,
        summary: str,
        triage: TriageResult,
        *,
        tier: Tier | None = None,
    ) -> int:
        ticket_id = len(self.tickets) + 1
        # Built from validated parts (enums, a policy, a triage result): validating again would
        # re-run the whole SLA policy's consistency check for every ticket.
        setup = TicketSetup.model_construct(
            ticket_id=ticket_id,
            patient_id=journey.id if journey else 0,
            source=source,
            summary=summary,
            opened_at=now,
            triage=triage,
            policy=self.policy,
            enrollment_id=journey.id if journey else None,
            discharge_department=journey.discharge_department if journey else None,
            tier=tier,
        )
        ticket = _Ticket(ticket_id, TicketCore(setup, snapshots=False), now)
        self.tickets[ticket_id] = ticket
        if journey is not None:
            journey.tickets.append(ticket_id)
        self.counts["tickets"] += 1
        self.run_ticket(ticket, now)
        state = ticket.core.state
        ticket.opened_as = (
            source.value,
            state.category,
            state.tier.value,
            state.priority.value,
            state.department,
        )
        return ticket_id

    def run_ticket(self, ticket: _Ticket, now: dt.datetime) -> None:
        core = ticket.core
        while True:
            command = core.next_command(now)
            if isinstance(command, TicketFinish):
                ticket.wake = None
                return
            if isinstance(command, TicketWait):
                if command.until is not None and command.until != ticket.wake:
                    ticket.wake = command.until
                    self.push(command.until, "ticket", ticket.id)
                break
            result: Any = None
            if isinstance(command, Route):
                request = RoutingRequest(
                    category=command.category, clinical=command.clinical, source=core.setup.source,
                    tier=command.tier, priority=command.priority,
                    discharge_department=core.setup.discharge_department,
                )  # fmt: skip
                result = choose_department(
                    request,
                    plugin_choice=None,
                    known_departments=self.departments,
                    table=self.routing_table,
                )
            elif isinstance(command, NotifyPatient):
                self.counts[f"ticket_notice:{command.kind}"] += 1
                self.daily[self.day_of(now)]["messages"] += 1
                if command.kind == "satisfaction":
                    self._schedule_satisfaction(ticket, now)
            elif isinstance(command, NotifyStaff):
                self.counts[f"sla_{command.kind}:{command.clock}"] += 1
            elif isinstance(command, OpenSubTask):
                result = 0
            elif isinstance(command, Page):
                # The rostered on-call takes the page at once; escalation is the real
                # workflow's business (the forecast counts the pages, not who missed one).
                self.counts["pages"] += 1
                result = PageOutcome(
                    accepted=True, step=command.step, recipient="on-call", next_step=None
                )
            elif isinstance(command, Save):
                pass
            core.complete(command, result, now)
        state = core.state
        if (
            state.status in (TicketStatus.ASSIGNED, TicketStatus.REOPENED)
            and not ticket.queued
            and state.department
        ):
            ticket.queued = True
            self.daily[self.day_of(now)][f"tickets:{state.department}"] += 1
            self.daily[self.day_of(now)][f"tier:{state.tier.value}"] += 1
            due = core.clock_due(core.clock("first_response") or core.clock("resolution"))  # type: ignore[arg-type]
            heapq.heappush(self.queues[state.department], (due or now, next(self.seq), ticket.id))
            self.dispatch(state.department, now)

    def _schedule_satisfaction(self, ticket: _Ticket, now: dt.datetime) -> None:
        behaviour, rng = self.config.behaviour, self.rng
        if rng.random() >= behaviour.satisfaction_reply_rate:
            return
        score = (
            rng.choice([1, 2])
            if rng.random() < behaviour.low_satisfaction_rate
            else rng.choice([4, 5, 5])
        )
        self.push(
            now + dt.timedelta(hours=rng.uniform(0.5, 24)), "satisfaction", (ticket.id, score)
        )

    def staff_count(self, department: str) -> int:
        return self.config.staff.get(department, self.config.default_staff)

    def dispatch(self, department: str, now: dt.datetime) -> None:
        """Free staff take the most urgent queued tickets (routine ones in working hours only)."""
        free = self.free_staff.setdefault(department, self.staff_count(department))
        queue = self.queues[department]
        calendar = self.policy.calendar("business")
        while free > 0 and queue:
            _, _, ticket_id = queue[0]
            ticket = self.tickets[ticket_id]
            urgent = ticket.core.state.priority != Priority.ROUTINE
            if not urgent and not calendar.is_working(now):
                opening = calendar.next_working_instant(now)
                if self.dispatch_at.get(department) != opening:
                    self.dispatch_at[department] = opening
                    self.push(opening, "dispatch", department)
                break
            heapq.heappop(queue)
            ticket.queued = False
            free -= 1
            minutes = SERVICE_MINUTES[ticket.core.state.tier] or 5.0
            self.staff_minutes[department][self.day_of(now)] += minutes
            actor = f"{department}-staff"
            for action in ("claim", "reply"):
                event = ActorAction(
                    action=action, actor=actor, text="已联系患者" if action == "reply" else None
                )
                if ticket.core.check(event) is None:
                    ticket.core.handle(event, now)
            if ticket.first_response is None:
                ticket.first_response = now
            self.run_ticket(ticket, now)
            self.push(now + dt.timedelta(minutes=minutes), "done", (department, ticket_id))
        self.free_staff[department] = free

    # ------------------------------------------------------------------ the loop

    def run(self, progress: Callable[[float], None] | None = None) -> None:
        with _gc_paused():
            self._run(progress)

    def _run(self, progress: Callable[[float], None] | None) -> None:
        zone = self.zone
        for day in range(self.config.days):
            date = self.config.start + dt.timedelta(days=day)
            for number in range(self.config.patients_per_day):
                index = day * self.config.patients_per_day + number + 1
                # Discharges happen between 09:00 and 18:00.
                minute = self.rng.randrange(9 * 60, 18 * 60)
                at = dt.datetime.combine(
                    date, dt.time(minute // 60, minute % 60), tzinfo=zone
                ).astimezone(dt.UTC)
                self.push(at, "discharge", (index, self.rng.randrange(2**32)))
        end = self.end
        first = self.heap[0][0] if self.heap else end
        span = max(1.0, (end - first).total_seconds())
        handled = 0
        while self.heap:
            at, _, kind, payload = heapq.heappop(self.heap)
            if at >= end:
                break
            handled += 1
            if progress is not None and handled % 5000 == 0:
                progress((at - first).total_seconds() / span)
            if kind == "journey":
                journey = self.journeys[payload]
                if journey.wake == at:
                    journey.wake = None
                    self.run_journey(journey, at)
            elif kind == "answer":
                journey_id, key, answers, text = payload
                journey = self.journeys[journey_id]
                journey.core.handle(AnswerEvent(answers=answers, text=text, touchpoint_key=key), at)
                self.run_journey(journey, at)
            elif kind == "discharge":
                index, seed = payload
                self.run_journey(self.enroll(index, at, random.Random(seed)), at)
            elif kind == "message":
                journey_id, text = payload
                journey = self.journeys[journey_id]
                self.counts["patient_messages"] += 1
                self.patient_text(at, journey, text)
            elif kind == "ticket":
                ticket = self.tickets[payload]
                if ticket.wake == at:
                    ticket.wake = None
                    self.run_ticket(ticket, at)
            elif kind == "done":
                department, ticket_id = payload
                ticket = self.tickets[ticket_id]
                event = ActorAction(action="resolve", actor=f"{department}-staff", text="已处理")
                if ticket.core.check(event) is None:
                    ticket.core.handle(event, at)
                self.run_ticket(ticket, at)
                self.free_staff[department] = self.free_staff.get(department, 0) + 1
                self.dispatch(department, at)
            elif kind == "dispatch":
                self.dispatch(payload, at)
            elif kind == "satisfaction":
                ticket_id, score = payload
                ticket = self.tickets[ticket_id]
                ticket.core.handle(PatientEvent(kind="satisfaction", score=score), at)
                self.counts[f"satisfaction:{score}"] += 1
                self.run_ticket(ticket, at)
        if progress is not None:
            progress(1.0)

    # ------------------------------------------------------------------ results

    def result(self, elapsed: float) -> SimulationResult:
        counts = self.counts
        tickets = list(self.tickets.values())
        by = lambda attribute: dict(Counter(attribute(t) for t in tickets).most_common())  # noqa: E731
        sla: dict[str, dict[str, int]] = {}
        for clock in ("first_response", "resolution"):
            met = breached = 0
            for ticket in tickets:
                state = ticket.core.state
                if clock in state.breached_at:
                    breached += 1
                elif any(c.name == clock and c.met_at is not None for c in state.clocks):
                    met += 1
            sla[clock] = {"met": met, "breached": breached}
        waits = sorted(
            (t.core.state.first_response_at - t.opened_at).total_seconds() / 60
            for t in tickets
            if t.core.state.first_response_at is not None
        )
        first_response = {
            "median": round(statistics.median(waits), 1) if waits else 0.0,
            # Nearest rank, as the KPI report computes it.
            "p90": round(waits[max(0, math.ceil(0.9 * len(waits)) - 1)], 1) if waits else 0.0,
        }
        answered = counts["touchpoint:answered"]
        settled = answered + counts["touchpoint:missed"]
        outcomes = Counter(j.core.state.status.value for j in self.journeys.values())
        scored = [s for s in range(1, 6) for _ in range(counts[f"satisfaction:{s}"])]
        kpis = {
            "response_rate": round(answered / settled, 4) if settled else 0.0,
            "lost_to_follow_up_rate": round(
                outcomes[JourneyStatus.LOST.value] / max(1, len(self.journeys)), 4
            ),
            "alerts_per_100_answers": round(
                100 * sum(counts[f"alert:{t.value}"] for t in Tier) / answered, 2
            )
            if answered
            else 0.0,
            "first_response_sla_compliance": round(
                sla["first_response"]["met"] / max(1, sum(sla["first_response"].values())), 4
            ),
            "resolution_sla_compliance": round(
                sla["resolution"]["met"] / max(1, sum(sla["resolution"].values())), 4
            ),
            "mean_satisfaction": round(statistics.mean(scored), 2) if scored else 0.0,
        }
        days = sorted(self.daily)
        departments = sorted(
            {d for c in self.daily.values() for d in c if d.startswith("tickets:")}
        )
        daily = [
            {
                "date": day.isoformat(),
                "discharges": self.daily[day]["discharges"],
                "messages": self.daily[day]["messages"],
                "nurse_calls": self.daily[day]["tier:L2"],
                "doctor_callbacks": self.daily[day]["tier:L3"],
                **{d.removeprefix("tickets:"): self.daily[day][d] for d in departments},
            }
            for day in days
        ]
        routed: dict[str, list[_Ticket]] = defaultdict(list)
        for ticket in tickets:
            if ticket.core.state.department:
                routed[ticket.core.state.department].append(ticket)
        staffing = {}
        for department in sorted(set(self.staff_minutes) | set(routed)):
            minutes = self.staff_minutes.get(department, {})
            answered = [
                t
                for t in routed[department]
                if any(c.name == "first_response" and c.met_at for c in t.core.state.clocks)
                or "first_response" in t.core.state.breached_at
            ]
            met = sum("first_response" not in t.core.state.breached_at for t in answered)
            staffing[department] = {
                "staff": self.staff_count(department),
                "tickets": len(routed[department]),
                "mean_minutes_per_day": round(sum(minutes.values()) / max(1, len(days)), 1),
                "peak_minutes_per_day": round(max(minutes.values(), default=0.0), 1),
                "peak_staff_needed": round(max(minutes.values(), default=0.0) / WORKDAY_MINUTES, 2),
                "first_response_met": round(met / len(answered), 4) if answered else 1.0,
            }
        per_patient = []
        if self.keep_patients:
            for journey in self.journeys.values():
                per_patient.append(self.outcome_of(journey))
        return SimulationResult(
            config=self.config,
            journeys=counts["journeys"],
            journey_outcomes=dict(sorted(outcomes.items())),
            touchpoints={
                s: counts[f"touchpoint:{s}"] for s in ("sent", "answered", "missed", "skipped")
            },
            messages={
                k.removeprefix("messages:"): v
                for k, v in counts.items()
                if k.startswith("messages:")
            },
            alerts_by_tier={t.value: counts[f"alert:{t.value}"] for t in Tier},
            tickets=counts["tickets"],
            tickets_by_source=by(lambda t: t.core.setup.source.value),
            tickets_by_category=by(lambda t: t.core.state.category),
            tickets_by_department=by(lambda t: t.core.state.department or "-"),
            tickets_by_tier=by(lambda t: t.core.state.tier.value),
            sla=sla,
            first_response_minutes=first_response,
            kpis=kpis,
            daily=daily,
            staffing=staffing,
            elapsed_seconds=round(elapsed, 2),
            per_patient=per_patient,
        )

    def outcome_of(self, journey: _Journey) -> dict[str, Any]:
        """What ``--verify`` compares: the journey's end, its touchpoints, alerts and tickets."""
        progress = journey.core.progress(journey.core.origin)
        return {
            "id": journey.id,
            "variants": list(journey.core.plan.variants),
            "status": journey.core.state.status.value,
            "reason": journey.core.state.stop_reason,
            "sent": progress.sent,
            "answered": progress.answered,
            "missed": progress.missed,
            "alerts": sorted(journey.alerts, key=str),
            "tickets": sorted((self.tickets[i].opened_as for i in journey.tickets), key=str),
        }


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off for the duration.

    A long run keeps hundreds of thousands of live objects (journey and ticket states) and
    allocates millions of short-lived ones, none of them in cycles (a 20-day run leaves a few
    hundred cyclic objects to collect); the collector's repeated scans of the growing live set
    cost a sixth of the run and grow with it. Reference counting frees everything else.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def default_routing_table() -> dict[str, str]:
    return yaml.safe_load((TEMPLATES / "routing.yaml").read_text("utf-8")) or {}


def known_departments() -> set[str]:
    return {
        entry["code"]
        for entry in yaml.safe_load((TEMPLATES / "departments.yaml").read_text("utf-8"))
    }


def build_simulator(
    config: SimulationConfig, template: PathwayTemplate, *, keep_patients: bool = False
) -> Simulator:
    """A simulator with the shipped SLA policy, triage, routing table and greeting calendar."""
    from suifang.tickets.opening import sla_policy
    from suifang.tickets.triage import classify
    from suifang.workflows.greetings import greeting_occasions
    from suifang.workflows.journey_core import GreetingOccasion

    def greetings(
        start: dt.date, end: dt.date, birth_date: dt.date | None
    ) -> list[GreetingOccasion]:
        return [
            GreetingOccasion(date=o.date, occasion=o.id)
            for o in greeting_occasions(start, end, birth_date=birth_date)
        ]

    return Simulator(
        config,
        template,
        sla_policy(),
        triage=classify,
        routing_table=default_routing_table(),
        departments=known_departments(),
        greetings=greetings,
        keep_patients=keep_patients,
    )


def simulate(
    config: SimulationConfig,
    template: PathwayTemplate,
    *,
    progress: Callable[[float], None] | None = None,
    keep_patients: bool = False,
) -> SimulationResult:
    """Run the forecast for ``config`` with the shipped policy, triage and routing."""
    started = time.perf_counter()
    simulator = build_simulator(config, template, keep_patients=keep_patients)
    simulator.run(progress)
    return simulator.result(time.perf_counter() - started)
