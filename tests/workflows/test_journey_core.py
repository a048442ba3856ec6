"""The pure journey state machine, driven directly (no Temporal): dates, answers, controls."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from suifang.core.enums import JourneyStatus, Priority, Tier, TouchpointStatus
from suifang.core.pathways import (
    JourneyPlan,
    PathwayTemplate,
    Recurrence,
    load_template,
    resolve_plan,
)
from suifang.workflows.journey_commands import (
    AnswerEvent,
    ControlEvent,
    CreditPoints,
    Finish,
    GreetingOccasion,
    ObservationEvent,
    ObservationValue,
    OpenCallTask,
    RaiseAlert,
    RecordAnswers,
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
from suifang.workflows.journey_core import JourneyCore, JourneySetup, preview_schedule

SHANGHAI = ZoneInfo("Asia/Shanghai")
PATHWAYS = Path(__file__).parents[2] / "templates" / "pathways"
DISCHARGED = dt.datetime(2026, 11, 1, 15, 30, tzinfo=SHANGHAI)
ALL_FINE = {
    "chest_pain": "no",
    "breathless": "none",
    "antiplatelet": "every_dose",
    "bleeding": "no",
    "puncture_site": "fine",
    "activity": "normal",
    "sbp": "128",
}
"""Every PCI question answered, all well."""
DONE = {TouchpointStatus.ANSWERED, TouchpointStatus.MISSED}


def pci(**variant: Any) -> JourneyPlan:
    return resolve_plan(load_template(PATHWAYS / "pci.yaml"), **variant)


@dataclass
class Driver:
    """Runs a core to the end the way the workflow does, recording every command."""

    core: JourneyCore
    now: dt.datetime
    log: list[tuple[dt.datetime, Any]] = field(default_factory=list)
    outcome: SendOutcome = field(
        default_factory=lambda: SendOutcome(delivered=True, channel="outbox")
    )
    on_send: Any = None

    def run(self, until: dt.datetime | None = None, max_steps: int = 2000) -> Finish | Wait:
        for _ in range(max_steps):
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
            result = self.outcome if isinstance(command, SendTouchpoint) else None
            self.core.complete(command, result, self.now)
            if isinstance(command, SendTouchpoint) and self.on_send:
                self.on_send(self, command)
        raise AssertionError("the journey did not settle")

    def of(self, kind: type) -> list[Any]:
        return [c for _, c in self.log if isinstance(c, kind)]

    def sends(self) -> list[tuple[str, int, dt.datetime]]:
        return [(c.key, c.reminder, t) for t, c in self.log if isinstance(c, SendTouchpoint)]


def driver(plan: JourneyPlan, **setup: Any) -> Driver:
    core = JourneyCore(
        JourneySetup(enrollment_id=1, patient_id=1, plan=plan, discharged_at=DISCHARGED, **setup)
    )
    return Driver(core, DISCHARGED)


def local(moment: dt.datetime) -> str:
    return moment.astimezone(SHANGHAI).strftime("%m-%d %H:%M")


def test_pci_sends_on_days_3_7_14_30_at_ten_local_time() -> None:
    rows = preview_schedule(pci(), DISCHARGED)
    assert [(key, day, local(due)) for key, day, due in rows] == [
        ("day3", 3, "11-04 10:00"),
        ("day7", 7, "11-08 10:00"),
        ("day14", 14, "11-15 10:00"),
        ("day30", 30, "12-01 10:00"),
    ]


def test_a_schedule_preview_midway_leaves_the_journey_where_it_was() -> None:
    previewed, untouched = driver(pci()), driver(pci())
    for run in (previewed, untouched):
        run.run(until=DISCHARGED + dt.timedelta(days=8))
    before = (previewed.core.setup.model_dump(), previewed.core.state.model_dump())
    assert [key for key, _, _ in previewed.core.schedule()] == ["day14", "day30"]
    assert (previewed.core.setup.model_dump(), previewed.core.state.model_dump()) == before
    for run in (previewed, untouched):
        run.run()
    # Unanswered, the journey goes on as it would have (reminders, then lost after day 7).
    assert previewed.sends() == untouched.sends()
    assert previewed.of(SetStatus) == untouched.of(SetStatus) != []


def test_high_risk_elderly_variant_adds_touchpoints_and_prefers_the_phone() -> None:
    plan = pci(risk_tier="high", groups=["elderly"])
    assert plan.variants == ["high", "elderly"]
    assert [t.id for t in plan.touchpoints] == ["day1", "day3", "day7", "day14", "day21", "day30"]
    assert plan.touchpoints[0].channels[0] == "voice"
    assert plan.touchpoints[0].answer_wait == dt.timedelta(hours=24)
    assert plan.touchpoints[0].reminders == 2


def test_all_answered_journey_completes_with_points_and_no_alerts() -> None:
    run = driver(pci())
    run.on_send = lambda d, c: (
        c.reminder
        or d.core.handle(
            AnswerEvent(answers=ALL_FINE),
            d.now,
        )
    )
    finish = run.run()
    assert finish.status == JourneyStatus.COMPLETED
    assert [key for key, reminder, _ in run.sends()] == ["day3", "day7", "day14", "day30"]
    assert run.of(RaiseAlert) == []
    assert sum(c.points for c in run.of(CreditPoints)) == 40
    progress = run.core.progress(run.now)
    assert (progress.sent, progress.answered, progress.missed) == (4, 4, 0)


def test_abnormal_answers_raise_the_templates_tiers_and_advice() -> None:
    run = driver(pci())
    answers = {"day3": {"chest_pain": "是", "antiplatelet": "3", "sbp": "186"}}
    run.on_send = lambda d, c: (
        c.reminder
        or (c.key in answers and d.core.handle(AnswerEvent(answers=answers[c.key]), d.now))
    )
    run.run(until=DISCHARGED + dt.timedelta(days=4))
    alerts = {a.rule_id: (a.tier, a.priority) for a in run.of(RaiseAlert)}
    assert alerts == {
        "chest-pain": (Tier.L3, Priority.EMERGENCY),
        "antiplatelet-stopped": (Tier.L3, Priority.URGENT),
        "sbp-crisis": (Tier.L3, Priority.URGENT),
    }
    advice = run.of(SendAdvice)
    assert [a.rule_id for a in advice] == ["chest-pain"]
    assert "120" in advice[0].advice.zh_cn
    recorded = run.of(RecordAnswers)[0]
    assert recorded.answers == {"chest_pain": "yes", "antiplatelet": "stopped", "sbp": 186.0}
    assert recorded.observations[0].indicator == "sbp"


def test_unanswered_touchpoints_are_reminded_then_missed_then_lost() -> None:
    run = driver(pci())
    finish = run.run()
    assert finish.status == JourneyStatus.LOST
    sends = run.sends()
    # day3 at 10:00, reminder half-way through the 48 h wait, then day7 the same way.
    assert [(k, r, local(t)) for k, r, t in sends] == [
        ("day3", 0, "11-04 10:00"),
        ("day3", 1, "11-05 10:00"),
        ("day7", 0, "11-08 10:00"),
        ("day7", 1, "11-09 10:00"),
    ]
    missed = [c for c in run.of(RecordTouchpoint) if c.status == TouchpointStatus.MISSED]
    assert [(c.key, local(c.at)) for c in missed] == [
        ("day3", "11-06 10:00"),
        ("day7", "11-10 10:00"),
    ]
    tasks = run.of(OpenCallTask)
    assert [(t.reason, t.key) for t in tasks] == [("lost_to_follow_up", "day7")]
    assert run.of(SetStatus)[-1].status == JourneyStatus.LOST


def test_one_answer_resets_the_missed_count() -> None:
    run = driver(pci())
    run.on_send = lambda d, c: (
        c.reminder or (c.key == "day7" and d.core.handle(AnswerEvent(answers=ALL_FINE), d.now))
    )
    finish = run.run()
    assert finish.status == JourneyStatus.LOST
    missed = [c.key for c in run.of(RecordTouchpoint) if c.status == TouchpointStatus.MISSED]
    assert missed == ["day3", "day14", "day30"]


def _reply_once(key: str, event: AnswerEvent) -> Any:
    """An ``on_send`` that answers the first send of touchpoint ``key`` with ``event``."""
    return lambda d, c: (
        not c.reminder and not c.missing and c.key == key and d.core.handle(event, d.now)
    )


def test_a_partial_reply_is_credited_nothing_and_the_rest_is_asked_again_once() -> None:
    run = driver(pci())
    run.on_send = _reply_once("day3", AnswerEvent(text="否,1,1"))
    run.run(until=DISCHARGED + dt.timedelta(days=6, hours=1))
    recorded = run.of(RecordAnswers)[0]
    assert recorded.answers == {
        "chest_pain": "no",
        "breathless": "none",
        "antiplatelet": "every_dose",
    }
    # Only the unanswered required questions go out again, once; then the usual rules.
    reasks = [c for c in run.of(SendTouchpoint) if c.missing]
    assert [(c.key, c.missing) for c in reasks] == [
        ("day3", ("bleeding", "puncture_site", "activity"))
    ]
    assert run.of(CreditPoints) == []
    day3 = [c.status for c in run.of(RecordTouchpoint) if c.key == "day3" and c.status in DONE]
    assert day3 == [TouchpointStatus.MISSED]
    assert run.of(TriageText) == []  # nothing but answers was written


def test_answering_the_reasked_questions_completes_the_touchpoint_with_its_points() -> None:
    run = driver(pci())

    def on_send(d: Driver, c: SendTouchpoint) -> None:
        if c.key == "day3" and not c.reminder and not c.missing:
            d.core.handle(AnswerEvent(text="否,1,1"), d.now)
        elif c.missing:
            # Re-asked questions are numbered afresh: 1 is the first one still open.
            d.core.handle(AnswerEvent(text="1.否 2.正常 3.和以前差不多"), d.now)

    run.on_send = on_send
    run.run(until=DISCHARGED + dt.timedelta(days=5))
    day3 = [c.status for c in run.of(RecordTouchpoint) if c.key == "day3" and c.status in DONE]
    assert day3 == [TouchpointStatus.ANSWERED]
    assert [(c.key, c.points) for c in run.of(CreditPoints)] == [("day3", 10)]


def test_free_text_in_a_reply_is_triaged_and_its_answers_still_count() -> None:
    run = driver(pci())
    run.on_send = _reply_once("day3", AnswerEvent(text="否,1,1,否,1,1 但是伤口一直在流血止不住"))
    run.run(until=DISCHARGED + dt.timedelta(days=4))
    assert [(t.key, t.text) for t in run.of(TriageText)] == [("day3", "但是伤口一直在流血止不住")]
    day3 = [c.status for c in run.of(RecordTouchpoint) if c.key == "day3" and c.status in DONE]
    assert day3 == [TouchpointStatus.ANSWERED]


def test_words_alone_do_not_answer_a_questionnaire() -> None:
    run = driver(pci())
    run.on_send = _reply_once("day3", AnswerEvent(text="我不想活了,药都攒好了"))
    run.run(until=DISCHARGED + dt.timedelta(days=4))
    assert [t.text for t in run.of(TriageText)] == ["我不想活了,药都攒好了"]
    assert run.of(CreditPoints) == []
    assert [c.missing for c in run.of(SendTouchpoint) if c.missing] == [
        ("chest_pain", "breathless", "antiplatelet", "bleeding", "puncture_site", "activity")
    ]


def test_late_answer_is_recorded_against_its_touchpoint_and_still_alerts() -> None:
    run = driver(pci())
    run.run(until=DISCHARGED + dt.timedelta(days=6))  # day3 missed at 11-06 10:00
    run.core.handle(AnswerEvent(answers={"chest_pain": "yes"}), run.now)
    run.run(until=run.now)
    recorded = run.of(RecordAnswers)[-1]
    assert (recorded.key, recorded.late) == ("day3", True)
    assert [a.rule_id for a in run.of(RaiseAlert)] == ["chest-pain"]


def test_send_window_moves_quiet_hour_sends_to_the_morning() -> None:
    template = load_template(PATHWAYS / "pci.yaml")
    plan = resolve_plan(template.model_copy(update={"send_at": dt.time(8, 30)}))
    core = JourneyCore(
        JourneySetup(enrollment_id=1, patient_id=1, plan=plan, discharged_at=DISCHARGED)
    )
    late_night = dt.datetime(2026, 11, 4, 23, 15, tzinfo=SHANGHAI)
    early = dt.datetime(2026, 11, 5, 6, 0, tzinfo=SHANGHAI)
    assert local(core.in_window(late_night)) == "11-05 08:30"
    assert local(core.in_window(early)) == "11-05 08:30"
    noon = dt.datetime(2026, 11, 5, 12, 0, tzinfo=SHANGHAI)
    assert core.in_window(noon) == noon


def test_quiet_hours_reported_by_the_send_activity_retry_later_not_at_once() -> None:
    run = driver(pci())
    first = run.core.next_command(DISCHARGED + dt.timedelta(days=3))
    while not isinstance(first, SendTouchpoint):
        run.core.complete(first, None, run.now)
        first = run.core.next_command(DISCHARGED + dt.timedelta(days=3))
    now = DISCHARGED + dt.timedelta(days=3)
    retry_at = now + dt.timedelta(hours=2)
    run.core.complete(
        first, SendOutcome(delivered=False, suppressed="quiet_hours", retry_at=retry_at), now
    )
    assert run.core.next_command(now) == Wait(retry_at)
    # A retry time in the past (clocks disagree) must not spin: it backs off instead.
    again = run.core.next_command(retry_at)
    run.core.complete(
        again, SendOutcome(delivered=False, suppressed="quiet_hours", retry_at=now), retry_at
    )
    wait = run.core.next_command(retry_at)
    assert isinstance(wait, Wait)
    assert wait.until is not None
    assert wait.until > retry_at


def test_do_not_contact_stops_every_later_send_at_once() -> None:
    run = driver(pci())
    run.run(until=DISCHARGED + dt.timedelta(days=5))
    run.core.handle(ControlEvent(action="do_not_contact"), run.now)
    finish = run.run()
    assert finish.status == JourneyStatus.STOPPED
    assert finish.reason == "do_not_contact"
    assert all(t <= DISCHARGED + dt.timedelta(days=5) for _, _, t in run.sends())


def test_do_not_contact_found_by_the_send_activity_stops_the_journey() -> None:
    run = driver(pci())
    run.outcome = SendOutcome(delivered=False, suppressed="do_not_contact")
    finish = run.run()
    assert (finish.status, finish.reason) == (JourneyStatus.STOPPED, "do_not_contact")
    assert len(run.sends()) == 1


def test_readmission_and_death_stop_the_journey() -> None:
    for action in ("readmitted", "deceased"):
        run = driver(pci())
        run.on_send = lambda d, c: c.reminder or d.core.handle(AnswerEvent(answers=ALL_FINE), d.now)
        run.run(until=DISCHARGED + dt.timedelta(days=9))
        run.core.handle(ControlEvent(action=action), run.now)
        finish = run.run()
        assert (finish.status, finish.reason) == (JourneyStatus.STOPPED, action)
        assert [k for k, _, _ in run.sends() if k in ("day14", "day30")] == []


def test_pause_sends_nothing_and_resume_shifts_the_rest_by_the_pause() -> None:
    run = driver(pci())
    run.on_send = lambda d, c: c.reminder or d.core.handle(AnswerEvent(answers=ALL_FINE), d.now)
    run.run(until=DISCHARGED + dt.timedelta(days=5))
    run.core.handle(ControlEvent(action="pause"), run.now)
    assert run.run(until=DISCHARGED + dt.timedelta(days=20)) == Wait(None)
    run.core.handle(ControlEvent(action="resume"), run.now)
    run.run()
    assert [(k, local(t)) for k, r, t in run.sends() if not r] == [
        ("day3", "11-04 10:00"),
        ("day7", "11-23 10:00"),  # 15 days of pause later
        ("day14", "11-30 10:00"),
        ("day30", "12-16 10:00"),
    ]


def test_reschedule_moves_the_next_touchpoint_or_the_whole_rest() -> None:
    run = driver(pci())
    run.on_send = lambda d, c: c.reminder or d.core.handle(AnswerEvent(answers=ALL_FINE), d.now)
    run.run(until=DISCHARGED + dt.timedelta(days=4))
    target = dt.datetime(2026, 11, 6, 15, 0, tzinfo=SHANGHAI)
    run.core.handle(RescheduleEvent(next_due=target), run.now)
    run.run(until=DISCHARGED + dt.timedelta(days=6))
    run.core.handle(RescheduleEvent(shift=dt.timedelta(days=2)), run.now)
    run.run()
    assert [(k, local(t)) for k, r, t in run.sends() if not r] == [
        ("day3", "11-04 10:00"),
        ("day7", "11-06 15:00"),
        ("day14", "11-17 10:00"),
        ("day30", "12-03 10:00"),
    ]


def test_undeliverable_touchpoint_opens_a_call_task_and_waits_for_the_call() -> None:
    run = driver(pci())
    run.outcome = SendOutcome(delivered=False, suppressed="undeliverable")
    run.run(until=DISCHARGED + dt.timedelta(days=4))
    assert [(t.reason, t.key) for t in run.of(OpenCallTask)] == [("undeliverable", "day3")]
    run.core.handle(AnswerEvent(answers={"chest_pain": "no"}, source="staff"), run.now)
    run.run(until=run.now)
    answered = [c for c in run.of(RecordTouchpoint) if c.status == TouchpointStatus.ANSWERED]
    assert [c.key for c in answered] == ["day3"]


def test_enrolled_after_a_touchpoint_day_skips_it() -> None:
    run = driver(pci())
    run.now = DISCHARGED + dt.timedelta(days=5)
    run.run(until=DISCHARGED + dt.timedelta(days=8))
    skipped = [c for c in run.of(RecordTouchpoint) if c.status == TouchpointStatus.SKIPPED]
    assert [(c.key, c.detail) for c in skipped] == [("day3", "due before enrollment")]
    assert [k for k, reminder, _ in run.sends() if not reminder] == ["day7"]


def test_device_observation_alerts_without_a_touchpoint() -> None:
    run = driver(pci())
    run.core.handle(
        ObservationEvent(observations=[ObservationValue(indicator="heart_rate", value=42)]), run.now
    )
    run.run(until=run.now)
    assert [(a.rule_id, a.key) for a in run.of(RaiseAlert)] == [("heart-rate", None)]


def test_greetings_go_out_inside_the_journey_only() -> None:
    greetings = [
        GreetingOccasion(date=dt.date(2026, 11, 7), occasion="lidong"),
        GreetingOccasion(date=dt.date(2027, 2, 6), occasion="spring_festival"),
    ]
    run = driver(pci(), greetings=greetings)
    run.on_send = lambda d, c: c.reminder or d.core.handle(AnswerEvent(answers=ALL_FINE), d.now)
    run.run()
    sent = run.of(SendGreeting)
    assert [(g.occasion, str(g.date)) for g in sent] == [("lidong", "2026-11-07")]


def test_time_scale_runs_a_pathway_day_per_minute() -> None:
    run = driver(pci(), time_scale=1440)
    run.on_send = lambda d, c: c.reminder or d.core.handle(AnswerEvent(answers=ALL_FINE), d.now)
    finish = run.run()
    assert finish.status == JourneyStatus.COMPLETED
    assert run.now - DISCHARGED < dt.timedelta(hours=1)


def _weekly_template() -> PathwayTemplate:
    template = load_template(PATHWAYS / "pci.yaml")
    weekly = template.touchpoints[0].model_copy(
        update={"id": "weekly", "day": None, "every": Recurrence(every_days=7, start_day=7)}
    )
    data = template.model_dump(by_alias=True)
    data["touchpoints"] = [weekly.model_dump(by_alias=True)]
    data["variants"] = {}
    return PathwayTemplate.model_validate(data)


def test_open_ended_recurrence_continues_as_new_with_the_same_schedule() -> None:
    plan = resolve_plan(_weekly_template())
    assert plan.open_ended
    run = driver(plan, continue_as_new_after=3)
    run.on_send = lambda d, c: c.reminder or d.core.handle(AnswerEvent(answers=ALL_FINE), d.now)
    run.run(until=DISCHARGED + dt.timedelta(days=22))
    assert run.core.wants_continue_as_new
    run.core.compact()
    # What continue-as-new does: a new core from the serialised setup and state.
    setup = JourneySetup.model_validate_json(run.core.setup.model_dump_json())
    state = type(run.core.state).model_validate_json(run.core.state.model_dump_json())
    resumed = Driver(JourneyCore(setup, state), run.now, on_send=run.on_send)
    assert not resumed.core.wants_continue_as_new  # a fresh run, not a loop of empty runs
    resumed.run(until=DISCHARGED + dt.timedelta(days=36))
    keys = [k for k, r, _ in run.sends() + resumed.sends() if not r]
    assert keys == ["weekly#1", "weekly#2", "weekly#3", "weekly#4", "weekly#5"]
    assert [local(t) for k, r, t in resumed.sends() if not r] == ["11-29 10:00", "12-06 10:00"]


def test_completing_an_unknown_command_is_refused() -> None:
    run = driver(pci())
    command = run.core.next_command(DISCHARGED + dt.timedelta(days=3))
    with pytest.raises(ValueError, match="not the pending command"):
        run.core.complete(SetStatus(99, JourneyStatus.ACTIVE, None, DISCHARGED), None, DISCHARGED)
    run.core.complete(command, None, DISCHARGED)
