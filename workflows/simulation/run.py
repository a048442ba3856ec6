"""The discrete-event loop: discharges, journeys, patients' answers and messages, tickets and
the staff who work them, on simulated time."""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import functools
import gc
import heapq
import itertools
import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from typing import Any
from zoneinfo import ZoneInfo

import yaml

from suifang.core.enums import Priority, TicketSource, TicketStatus, Tier, TouchpointStatus
from suifang.core.pathways import JourneyPlan, PathwayTemplate, resolve_plan
from suifang.core.risk import RiskInput
from suifang.core.seed import default_routing
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
from suifang.tickets.opening import sla_policy
from suifang.tickets.routing import choose_department
from suifang.tickets.sla import SlaPolicy
from suifang.tickets.triage import classify
from suifang.workflows.greetings import greeting_occasions
from suifang.workflows.journey_commands import (
    AnswerEvent,
    CreditPoints,
    Finish,
    GreetingOccasion,
    OpenAlertTicket,
    OpenCallTask,
    RaiseAlert,
    RecordAnswers,
    RecordTouchpoint,
    SendAdvice,
    SendGreeting,
    SendOutcome,
    SendTouchpoint,
    TriageText,
    Wait,
)
from suifang.workflows.journey_core import JourneyCore, JourneySetup, PlanIndex
from suifang.workflows.risk import lace
from suifang.workflows.simulation.answers import abnormal_answers, normal_answers
from suifang.workflows.simulation.model import (
    SERVICE_MINUTES,
    TEMPLATES,
    SimulatedJourney,
    SimulatedTicket,
    SimulationConfig,
    SimulationResult,
)
from suifang.workflows.simulation.result import forecast

__all__ = ["Simulator", "build_simulator", "known_departments", "simulate"]

_DELIVERED = SendOutcome(delivered=True, channel="simulated")
"""Every simulated send is delivered; one immutable outcome serves them all."""
_TOUCHPOINT_KEYS = {status: f"touchpoint:{status.value}" for status in TouchpointStatus}
_ALERT_KEYS = {tier: f"alert:{tier.value}" for tier in Tier}


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
        self.journeys: dict[int, SimulatedJourney] = {}
        self.tickets: dict[int, SimulatedTicket] = {}
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

    def enroll(
        self, index: int, discharged_at: dt.datetime, rng: random.Random
    ) -> SimulatedJourney:
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
        journey = SimulatedJourney(
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

    def run_journey(self, journey: SimulatedJourney, now: dt.datetime) -> None:
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
                if kind is SendGreeting:
                    counts["messages:greeting"] += 1
                    messages[f"greeting:{command.occasion}"] += 1
                else:
                    counts["messages:advice"] += 1
            elif kind is RaiseAlert:
                counts[_ALERT_KEYS[command.tier]] += 1
                journey.alerts.append((command.rule_id, command.key))
            else:  # the rarer ones: what may open a ticket, and records with no effect here
                result = self._journey_ticket(journey, command, now)
            core.complete(command, result, now)
            if kind is SendTouchpoint and command.reminder == 0 and not command.missing:
                self.schedule_answer(journey, command, now)

    def _journey_ticket(
        self, journey: SimulatedJourney, command: Any, now: dt.datetime
    ) -> int | None:
        """Carry out a rarer journey command: one that may open a ticket (an alert's, a
        patient's text, a call task for a non-responder), or a record the simulation ignores."""
        if isinstance(command, TriageText):
            return self.patient_text(now, journey, command.text)
        department: str | None = None
        if isinstance(command, OpenAlertTicket):
            triage = TriageResult(
                category=command.category,
                urgency=command.priority,
                confidence=1.0,
                suggested_tier=command.tier,
                clinical=True,
            )
            source, summary = TicketSource.CLINICAL_ALERT, command.summary.zh_cn
            department = command.department
        elif isinstance(command, OpenCallTask):
            self.counts[f"call_task:{command.reason}"] += 1
            triage = TriageResult(
                category="call_task",
                urgency=Priority.ROUTINE,
                confidence=1.0,
                suggested_tier=Tier.L2,
                clinical=False,
            )
            source, summary = TicketSource.NON_RESPONDER, "call the patient"
        else:
            return None  # a record the simulation keeps no copy of (a status change, a note)
        return self.open_ticket(
            now, journey, source, summary, triage, tier=triage.suggested_tier, department=department
        )

    def patient_text(self, now: dt.datetime, journey: SimulatedJourney, text: str) -> int | None:
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

    def schedule_answer(
        self, journey: SimulatedJourney, command: SendTouchpoint, now: dt.datetime
    ) -> None:
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

    def _abnormal(self, journey: SimulatedJourney, touchpoint_id: str) -> dict[str, Any] | None:
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
        journey: SimulatedJourney | None,
        source: TicketSource,
        summary: str,
        triage: TriageResult,
        *,
        tier: Tier | None = None,
        department: str | None = None,
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
            department=department,
            tier=tier,
        )
        ticket = SimulatedTicket(ticket_id, TicketCore(setup, snapshots=False), now)
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

    def run_ticket(self, ticket: SimulatedTicket, now: dt.datetime) -> None:
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

    def _schedule_satisfaction(self, ticket: SimulatedTicket, now: dt.datetime) -> None:
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
            self.run_ticket(ticket, now)
            self.push(now + dt.timedelta(minutes=minutes), "done", (department, ticket_id))
        self.free_staff[department] = free

    # ------------------------------------------------------------------ the loop

    def run(self, progress: Callable[[float], None] | None = None) -> None:
        with _gc_paused():
            self._run(progress)

    def _run(self, progress: Callable[[float], None] | None) -> None:
        self._schedule_discharges()
        handlers: dict[str, Callable[[Any, dt.datetime], None]] = {
            "journey": self._on_journey_timer,
            "answer": self._on_answer,
            "discharge": self._on_discharge,
            "message": self._on_message,
            "ticket": self._on_ticket_timer,
            "done": self._on_done,
            "dispatch": self.dispatch,
            "satisfaction": self._on_satisfaction,
        }
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
            handlers[kind](payload, at)
        if progress is not None:
            progress(1.0)

    def _schedule_discharges(self) -> None:
        for day in range(self.config.days):
            date = self.config.start + dt.timedelta(days=day)
            for number in range(self.config.patients_per_day):
                index = day * self.config.patients_per_day + number + 1
                # Discharges happen between 09:00 and 18:00.
                minute = self.rng.randrange(9 * 60, 18 * 60)
                at = dt.datetime.combine(
                    date, dt.time(minute // 60, minute % 60), tzinfo=self.zone
                ).astimezone(dt.UTC)
                self.push(at, "discharge", (index, self.rng.randrange(2**32)))

    # ------------------------------------------------------------------ events

    def _on_discharge(self, payload: tuple[int, int], at: dt.datetime) -> None:
        index, seed = payload
        self.run_journey(self.enroll(index, at, random.Random(seed)), at)

    def _on_journey_timer(self, journey_id: int, at: dt.datetime) -> None:
        journey = self.journeys[journey_id]
        if journey.wake == at:  # else a stale wake-up: the journey waits on a later one
            journey.wake = None
            self.run_journey(journey, at)

    def _on_answer(
        self, payload: tuple[int, str, dict[str, Any], str | None], at: dt.datetime
    ) -> None:
        journey_id, key, answers, text = payload
        journey = self.journeys[journey_id]
        journey.core.handle(AnswerEvent(answers=answers, text=text, touchpoint_key=key), at)
        self.run_journey(journey, at)

    def _on_message(self, payload: tuple[int, str], at: dt.datetime) -> None:
        journey_id, text = payload
        self.counts["patient_messages"] += 1
        self.patient_text(at, self.journeys[journey_id], text)

    def _on_ticket_timer(self, ticket_id: int, at: dt.datetime) -> None:
        ticket = self.tickets[ticket_id]
        if ticket.wake == at:
            ticket.wake = None
            self.run_ticket(ticket, at)

    def _on_done(self, payload: tuple[str, int], at: dt.datetime) -> None:
        """A member of staff has finished with a ticket: resolve it, take the next one."""
        department, ticket_id = payload
        ticket = self.tickets[ticket_id]
        event = ActorAction(action="resolve", actor=f"{department}-staff", text="已处理")
        if ticket.core.check(event) is None:
            ticket.core.handle(event, at)
        self.run_ticket(ticket, at)
        self.free_staff[department] = self.free_staff.get(department, 0) + 1
        self.dispatch(department, at)

    def _on_satisfaction(self, payload: tuple[int, int], at: dt.datetime) -> None:
        ticket_id, score = payload
        ticket = self.tickets[ticket_id]
        ticket.core.handle(PatientEvent(kind="satisfaction", score=score), at)
        self.counts[f"satisfaction:{score}"] += 1
        self.run_ticket(ticket, at)

    # ------------------------------------------------------------------ results

    def result(self, elapsed: float) -> SimulationResult:
        return forecast(self, elapsed)

    def outcome_of(self, journey: SimulatedJourney) -> dict[str, Any]:
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


def known_departments() -> set[str]:
    return {
        entry["code"]
        for entry in yaml.safe_load((TEMPLATES / "departments.yaml").read_text("utf-8"))
    }


def build_simulator(
    config: SimulationConfig, template: PathwayTemplate, *, keep_patients: bool = False
) -> Simulator:
    """A simulator with the shipped SLA policy, triage, routing table and greeting calendar."""

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
        routing_table=default_routing(),
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
