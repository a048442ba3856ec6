"""The pure ticket state machine: triage outcomes, SLA clocks, department actions, satisfaction."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from suifang.core.enums import Priority, TicketSource, TicketStatus, Tier
from suifang.core.triage import KnowledgeAnswer, TriageResult
from suifang.tickets.core import (
    ActorAction,
    Finish,
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
    Wait,
)
from suifang.tickets.sla import default_policy

SHANGHAI = ZoneInfo("Asia/Shanghai")
POLICY = default_policy()


def local(moment: dt.datetime) -> str:
    return moment.astimezone(SHANGHAI).strftime("%Y-%m-%d %a %H:%M")


def triage(**overrides: Any) -> TriageResult:
    """A routine billing question by default: business hours (clinical ones run 24/7)."""
    values: dict[str, Any] = {
        "category": "billing",
        "urgency": Priority.ROUTINE,
        "confidence": 0.9,
        "suggested_tier": Tier.L2,
        "clinical": False,
    }
    return TriageResult(**{**values, **overrides})


@dataclass
class Run:
    core: TicketCore
    now: dt.datetime
    route_to: str = "cardiology"
    log: list[tuple[dt.datetime, Any]] = field(default_factory=list)
    chain: tuple[str, ...] = ("dr.wang", "nurse.li", "dr.zhou", "duty.chen")
    """Who the on-call chain pages, in order (empty: nobody can be paged)."""

    def until_idle(self, until: dt.datetime | None = None) -> Wait | Finish:
        for _ in range(500):
            command = self.core.next_command(self.now)
            if isinstance(command, Finish):
                return command
            if isinstance(command, Wait):
                if command.until is None or (until is not None and command.until > until):
                    if until is not None:
                        self.now = max(self.now, until)
                    return command
                self.now = command.until
                continue
            self.log.append((self.now, command))
            result: Any = None
            if isinstance(command, Route):
                result = self.route_to
            elif isinstance(command, OpenSubTask):
                result = 77
            elif isinstance(command, Page):
                result = self.page(command)
            self.core.complete(command, result, self.now)
        raise AssertionError("did not settle")

    def page(self, command: Page) -> PageOutcome:
        """As ``page_on_call`` does: the chain from ``step`` on, 5 then 10 minutes apart."""
        if not self.chain:
            return PageOutcome(accepted=False)
        step = min(command.step, len(self.chain) - 1)
        return PageOutcome(
            accepted=True,
            step=step,
            recipient=self.chain[step],
            role="primary",
            department=command.department,
            channel="sms",
            next_step=step + 1 if step + 1 < len(self.chain) else None,
            escalate_after=dt.timedelta(minutes=5 if step == 0 else 10),
            repeat_final=1,
        )

    def pages(self) -> list[tuple[str, str]]:
        """(local time, who) of every page sent."""
        return [
            (local(t), self.chain[min(c.step, len(self.chain) - 1)] if self.chain else "-")
            for t, c in self.log
            if isinstance(c, Page)
        ]

    def act(self, action: str, **fields: Any) -> str | None:
        event = ActorAction(action=action, actor=fields.pop("actor", "nurse.li"), **fields)
        problem = self.core.check(event)
        if problem is None:
            self.core.handle(event, self.now)
            self.until_idle(self.now)
        return problem

    def notices(self) -> list[str]:
        return [c.kind for _, c in self.log if isinstance(c, NotifyPatient)]

    def staff(self) -> list[tuple[str, str, str]]:
        return [(c.kind, c.clock, local(t)) for t, c in self.log if isinstance(c, NotifyStaff)]

    def saved_events(self) -> list[str]:
        return [e.action for _, c in self.log if isinstance(c, Save) for e in c.snapshot.events]


def start(opened: dt.datetime, **setup: Any) -> Run:
    values: dict[str, Any] = {
        "ticket_id": 1,
        "patient_id": 1,
        "source": TicketSource.PATIENT_MESSAGE,
        "summary": "发票上的金额不对",
        "opened_at": opened,
        "triage": triage(),
        "policy": POLICY,
        "discharge_department": "cardiology",
    }
    run = Run(TicketCore(TicketSetup(**{**values, **setup})), opened)
    run.until_idle(opened)
    return run


# A Friday afternoon before a normal weekend (2026-11-20), and before National Day 2026.
FRIDAY = dt.datetime(2026, 11, 20, 16, 0, tzinfo=SHANGHAI)


def test_a_routine_administrative_message_is_acknowledged_routed_and_on_business_hours() -> None:
    run = start(FRIDAY)
    assert run.notices() == ["received"]
    assert run.core.state.status == TicketStatus.ASSIGNED
    assert run.core.state.department == "cardiology"
    first = run.core.clock("first_response")
    assert first is not None
    target = POLICY.target_for(Tier.L2, Priority.ROUTINE, "cardiology")
    assert target.first_response is not None
    # Friday 16:00 → 17:30 is 1.5 working hours; the rest runs from Monday 08:00.
    remaining = target.first_response - dt.timedelta(hours=1, minutes=30)
    monday = dt.datetime(2026, 11, 23, 8, 0, tzinfo=SHANGHAI)
    expected = POLICY.calendar(target.calendar).add_working_time(monday, remaining)
    assert run.core.clock_due(first) == expected
    assert local(expected).startswith("2026-11-23 Mon")


def test_warning_and_breach_fire_at_the_exact_computed_times() -> None:
    run = start(FRIDAY)
    first = run.core.clock("first_response")
    assert first is not None
    due = run.core.clock_due(first)
    warn = run.core.clock_due(first, first.warn_fraction or 0.8)
    assert due is not None
    assert warn is not None
    run.until_idle(due)
    staff = [(k, c, t) for k, c, t in run.staff() if c == "first_response"]
    assert staff == [
        ("warning", "first_response", local(warn)),
        ("breach", "first_response", local(due)),
    ]
    assert run.core.state.breached_at["first_response"] == due


def test_a_reply_meets_the_first_response_and_stops_its_clock() -> None:
    run = start(FRIDAY)
    run.act("claim")
    assert run.core.state.status == TicketStatus.IN_PROGRESS
    assert run.act("reply", text="饭后服用,如果仍不舒服请复诊。") is None
    assert run.notices() == ["received", "assigned", "reply"]
    first = run.core.clock("first_response")
    assert first is not None
    assert first.met_at == FRIDAY
    run.until_idle(FRIDAY + dt.timedelta(days=10))
    assert [c for _, c, _ in run.staff()].count("first_response") == 0


def test_waiting_on_the_patient_pauses_the_clock_and_shifts_the_deadline() -> None:
    run = start(FRIDAY)
    resolution = run.core.clock("resolution")
    assert resolution is not None
    due_before = run.core.clock_due(resolution)
    assert due_before is not None
    run.now = dt.datetime(2026, 11, 23, 9, 0, tzinfo=SHANGHAI)  # Monday 09:00
    run.act("wait_on_patient", text="请拍一张伤口的照片发给我们")
    assert run.core.state.status == TicketStatus.WAITING_ON_PATIENT
    assert run.core.clock_due(resolution) is None  # paused: no deadline at all
    run.now = dt.datetime(2026, 11, 24, 9, 0, tzinfo=SHANGHAI)  # a whole working day later
    run.core.handle(PatientEvent(kind="reply", text="照片已发"), run.now)
    run.until_idle(run.now)
    assert run.core.state.status == TicketStatus.IN_PROGRESS
    assert run.core.clock_due(resolution) == due_before + dt.timedelta(
        days=1
    )  # 8 working hours later


def test_transfer_starts_the_new_departments_own_clock() -> None:
    run = start(
        FRIDAY, triage=triage(category="billing", clinical=False), discharge_department=None
    )
    run.now = dt.datetime(2026, 11, 23, 10, 0, tzinfo=SHANGHAI)
    assert run.act("transfer", department="billing", text="收费问题") is None
    assert run.core.state.department == "billing"
    assert run.core.state.assignee is None
    resolution = run.core.clock("resolution")
    assert resolution is not None
    assert resolution.started_at == run.now
    assert "transfer" in run.saved_events()
    assert run.act("transfer", department="billing") == "the ticket is already with billing"


def test_escalate_bumps_the_tier_and_works_to_its_targets() -> None:
    run = start(FRIDAY)
    assert run.act("escalate", text="需要医生判断") is None
    assert run.core.state.tier == Tier.L3
    resolution = run.core.clock("resolution")
    assert resolution is not None
    assert (
        resolution.target == POLICY.target_for(Tier.L3, Priority.ROUTINE, "cardiology").resolution
    )
    assert run.act("escalate") == "the ticket is already at L3 (doctor)"


def test_breach_with_bump_tier_escalates_by_itself() -> None:
    assert "bump_tier" in POLICY.target_for(Tier.L2, Priority.URGENT, "cardiology").on_breach
    run = start(FRIDAY, triage=triage(urgency=Priority.URGENT))
    run.until_idle(FRIDAY + dt.timedelta(days=3))
    assert run.core.state.tier == Tier.L3
    assert "first_response" in run.core.state.breached_at


def emergency(**overrides: Any) -> TriageResult:
    values: dict[str, Any] = {
        "category": "clinical_symptom",
        "urgency": Priority.EMERGENCY,
        "clinical": True,
        "suggested_tier": Tier.L3,
        "red_flags": ["chest_pain"],
        "advice": ["chest_pain"],
    }
    return triage(**{**values, **overrides})


def test_red_flags_go_straight_to_l3_emergency_and_tell_the_patient_first() -> None:
    run = start(FRIDAY, triage=emergency())
    assert run.core.state.tier == Tier.L3
    assert run.core.state.priority == Priority.EMERGENCY
    assert run.notices()[0] == "emergency"
    first_commands = [type(c).__name__ for _, c in run.log][:2]
    assert first_commands == ["NotifyPatient", "Save"]
    first = next(c for _, c in run.log if isinstance(c, NotifyPatient))
    assert first.advice == ("chest_pain",)


def test_an_emergency_pages_the_on_call_and_only_then_tells_the_patient_a_doctor_knows() -> None:
    run = start(FRIDAY, triage=emergency())
    kinds = [
        c.kind if isinstance(c, NotifyPatient) else type(c).__name__
        for _, c in run.log
        if isinstance(c, NotifyPatient | Page)
    ]
    assert kinds == ["emergency", "Page", "doctor_notified"]
    assert run.pages() == [("2026-11-20 Fri 16:00", "dr.wang")]
    assert run.core.state.paging is not None
    assert run.core.snapshot().paging == "paging"


def test_an_unanswered_page_escalates_on_exact_timers_to_the_duty_office() -> None:
    run = start(FRIDAY, triage=emergency())
    run.until_idle(FRIDAY + dt.timedelta(hours=1))
    assert run.pages() == [
        ("2026-11-20 Fri 16:00", "dr.wang"),
        ("2026-11-20 Fri 16:05", "nurse.li"),
        ("2026-11-20 Fri 16:15", "dr.zhou"),
        ("2026-11-20 Fri 16:25", "duty.chen"),
        ("2026-11-20 Fri 16:35", "duty.chen"),  # the last one again (repeat_final = 1)
    ]
    # Nobody answered at all: the supervisor is told, and the patient was told only once.
    assert ("page_unanswered", "paging", "2026-11-20 Fri 16:45") in run.staff()
    assert run.notices().count("doctor_notified") == 1
    assert run.core.snapshot().paging == "unanswered"


def test_acknowledging_stops_the_escalation_and_is_the_first_response() -> None:
    run = start(FRIDAY, triage=emergency())
    run.now = FRIDAY + dt.timedelta(minutes=3)
    assert run.act("acknowledge", actor="dr.wang", text="calling the patient now") is None
    run.until_idle(FRIDAY + dt.timedelta(hours=1))
    assert run.pages() == [("2026-11-20 Fri 16:00", "dr.wang")]
    state = run.core.state
    assert state.paging is not None
    assert state.paging.acknowledged_by == "dr.wang"
    assert state.assignee == "dr.wang"
    assert state.status == TicketStatus.IN_PROGRESS
    assert state.first_response_at == FRIDAY + dt.timedelta(minutes=3)
    assert "assigned" in run.notices()
    assert run.act("acknowledge", actor="nurse.li") == (
        "the page was already acknowledged by dr.wang"
    )


def test_claiming_or_replying_to_an_emergency_also_stops_the_page() -> None:
    run = start(FRIDAY, triage=emergency())
    run.now = FRIDAY + dt.timedelta(minutes=4)
    run.act("reply", actor="dr.wang", text="我是王医生，马上给您打电话")
    run.until_idle(FRIDAY + dt.timedelta(hours=1))
    assert len(run.pages()) == 1
    assert run.core.snapshot().acknowledged_by == "dr.wang"


def test_when_nobody_can_be_paged_the_supervisor_is_told_and_the_patient_is_not_misled() -> None:
    run = Run(
        TicketCore(
            TicketSetup(
                ticket_id=1,
                patient_id=1,
                source=TicketSource.PATIENT_MESSAGE,
                summary="胸口疼",
                opened_at=FRIDAY,
                triage=emergency(),
                policy=POLICY,
                discharge_department="cardiology",
            )
        ),
        FRIDAY,
        chain=(),
    )
    run.until_idle(FRIDAY + dt.timedelta(hours=1))
    assert "doctor_notified" not in run.notices()
    assert ("page_failed", "paging", "2026-11-20 Fri 16:00") in run.staff()
    assert run.core.snapshot().paging == "unanswered"


def test_a_transferred_emergency_pages_the_new_departments_chain() -> None:
    run = start(FRIDAY, triage=emergency())
    run.now = FRIDAY + dt.timedelta(minutes=2)
    run.chain = ("dr.zhao", "duty.chen")
    run.act("transfer", department="orthopaedics", actor="duty.chen")
    pages = [c for _, c in run.log if isinstance(c, Page)]
    assert [p.department for p in pages] == ["cardiology", "orthopaedics"]
    assert run.notices().count("doctor_notified") == 1


def test_an_acknowledge_without_a_page_is_refused() -> None:
    run = start(FRIDAY)
    assert run.act("acknowledge") == "there is no page to acknowledge on this ticket"


def test_an_urgent_clinical_ticket_notifies_the_on_call_once_without_chasing() -> None:
    run = start(
        FRIDAY,
        triage=triage(
            category="wound_care", urgency=Priority.URGENT, clinical=True, suggested_tier=Tier.L3
        ),
    )
    run.until_idle(FRIDAY + dt.timedelta(hours=2))
    assert run.pages() == [("2026-11-20 Fri 16:00", "dr.wang")]
    assert "doctor_notified" not in run.notices()
    assert run.core.snapshot().paging == "notified"


def test_a_clinical_l2_ticket_opened_friday_at_five_is_due_that_evening() -> None:
    friday_five = dt.datetime(2026, 11, 20, 17, 0, tzinfo=SHANGHAI)
    run = start(
        friday_five,
        triage=triage(category="medication", clinical=True),
        summary="吃了新开的降压药以后头晕",
    )
    first, resolution = run.core.clock("first_response"), run.core.clock("resolution")
    assert first is not None
    assert resolution is not None
    assert local(run.core.clock_due(first)) == "2026-11-20 Fri 19:00"  # type: ignore[arg-type]
    assert local(run.core.clock_due(resolution)) == "2026-11-20 Fri 21:00"  # type: ignore[arg-type]


def test_a_psychological_ticket_goes_to_its_team_and_tells_the_discharge_department() -> None:
    psych = Run(
        TicketCore(
            TicketSetup(
                ticket_id=2,
                patient_id=1,
                source=TicketSource.PATIENT_MESSAGE,
                summary="心情一直很低落",
                opened_at=FRIDAY,
                triage=triage(category="psychological", clinical=True),
                policy=POLICY,
                discharge_department="cardiology",
            )
        ),
        FRIDAY,
        route_to="psychology",
    )
    psych.until_idle(FRIDAY)
    assert psych.core.state.department == "psychology"
    assert [(c.kind, c.department) for _, c in psych.log if isinstance(c, NotifyStaff)] == [
        ("fyi", "cardiology")
    ]


def test_a_complaint_gets_information_but_stays_open_for_its_department() -> None:
    answer = KnowledgeAnswer(
        id="parking", question="停车", answer="停车场在门诊楼地下。", confidence=0.8
    )
    run = start(
        FRIDAY,
        triage=triage(
            category="parking", clinical=False, intent="complaint", knowledge_answer=answer
        ),
    )
    assert run.notices() == ["knowledge_info", "received"]
    assert run.core.state.status == TicketStatus.ASSIGNED
    assert run.core.state.resolved_at is None


def test_a_confident_knowledge_answer_resolves_at_l1_and_asks_for_satisfaction() -> None:
    answer = KnowledgeAnswer(
        id="visiting-hours", question="探视时间", answer="每天 15:00–20:00。", confidence=0.9
    )
    run = start(
        FRIDAY,
        triage=triage(
            category="other", clinical=False, suggested_tier=Tier.L1, knowledge_answer=answer
        ),
    )
    assert run.notices() == ["knowledge_answer", "satisfaction"]
    assert run.core.state.status == TicketStatus.RESOLVED
    assert not any(isinstance(c, Route) for _, c in run.log)
    # It did not help: the patient writes again and a person takes it over (routed at L2).
    run.core.handle(PatientEvent(kind="reply", text="没有回答我的问题"), run.now)
    run.until_idle(run.now)
    assert run.core.state.status == TicketStatus.ASSIGNED
    assert run.core.state.tier == Tier.L2


def test_low_satisfaction_reopens_and_good_satisfaction_closes() -> None:
    run = start(FRIDAY)
    run.act("resolve", text="已调整用药")
    assert run.notices()[-2:] == ["resolved", "satisfaction"]
    run.core.handle(PatientEvent(kind="satisfaction", score=2), run.now)
    run.until_idle(run.now)
    assert run.core.state.status == TicketStatus.REOPENED
    assert run.core.state.reopen_count == 1
    run.act("resolve", text="医生已电话回访")
    run.core.handle(PatientEvent(kind="satisfaction", score=5), run.now)
    assert isinstance(run.until_idle(run.now), Finish)
    assert run.core.state.status == TicketStatus.CLOSED


def test_no_satisfaction_answer_closes_after_the_wait() -> None:
    run = start(FRIDAY)
    run.act("resolve")
    finish = run.until_idle(FRIDAY + dt.timedelta(days=30))
    assert isinstance(finish, Finish)
    assert run.core.state.closed_at == FRIDAY + run.core.setup.satisfaction_wait


@pytest.mark.parametrize(
    ("action", "fields", "reason"),
    [
        ("reply", {}, "reply needs a text"),
        ("transfer", {}, "transfer needs a department"),
        ("reopen", {}, "only a resolved or closed ticket can be reopened"),
        ("close", {}, "only a resolved ticket can be closed"),
    ],
)
def test_invalid_actions_are_refused_with_a_reason_and_change_nothing(
    action: str, fields: dict[str, Any], reason: str
) -> None:
    run = start(FRIDAY)
    before = run.core.state.model_copy(deep=True)
    assert (run.act(action, **fields) or "").startswith(reason)
    assert run.core.state == before


def test_a_closed_ticket_refuses_everything_but_reopen() -> None:
    run = start(FRIDAY)
    run.act("resolve")
    run.act("close")
    assert run.core.state.status == TicketStatus.CLOSED
    assert run.act("resolve") == "the ticket is closed; resolve is not possible (reopen it first)"
    assert run.act("reopen", text="患者再次来电") is None
    assert run.core.state.status == TicketStatus.REOPENED


def test_collaboration_opens_a_sub_task_in_another_department() -> None:
    run = start(FRIDAY)
    assert run.act("collaborate", department="pharmacy", text="请药学部评估药物相互作用") is None
    tasks = [c for _, c in run.log if isinstance(c, OpenSubTask)]
    assert [(t.department, t.actor) for t in tasks] == [("pharmacy", "nurse.li")]
    assert run.core.state.sub_tasks == [77]
    assert run.core.state.department == "cardiology"  # the ticket itself stays


def test_snapshots_carry_every_event_exactly_once() -> None:
    run = start(FRIDAY)
    run.act("claim")
    run.act("note", text="已电话联系,患者未接")
    run.act("resolve", text="已处理")
    sequences = [e.seq for _, c in run.log if isinstance(c, Save) for e in c.snapshot.events]
    assert sequences == sorted(set(sequences))
    assert {"triage", "route", "claim", "note", "resolve"} <= set(run.saved_events())


def test_tickets_decoded_with_the_same_policy_share_one_and_a_broken_one_says_where() -> None:
    """A worker decodes the hospital's policy once, not once per ticket input it reads."""
    setup = start(FRIDAY).core.setup
    raw = json.loads(setup.model_dump_json())
    first = TicketSetup.model_validate_json(json.dumps(raw))
    second = TicketSetup.model_validate_json(json.dumps(raw | {"ticket_id": 2}))
    assert (first.ticket_id, second.ticket_id) == (1, 2)
    assert first.policy is second.policy
    assert first.policy == POLICY
    # A policy that differs in anything decodes to one of its own.
    raw["policy"]["calendars"]["business"]["holidays"].append("2027-03-01")
    changed = TicketSetup.model_validate(raw)
    assert changed.policy is not first.policy
    assert dt.date(2027, 3, 1) in changed.policy.calendar("business").holidays
    del raw["policy"]["targets"]["L2"]
    with pytest.raises(ValidationError, match=r"policy\n  Value error, .*no target for L2"):
        TicketSetup.model_validate(raw)
