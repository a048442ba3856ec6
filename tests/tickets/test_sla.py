"""SLA policies and clocks: the shipped targets, department overrides, pauses that move the
deadline exactly, the warning instant, clear errors for a bad policy file, and a clock that
drives a real timer inside a sandboxed Temporal workflow."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from temporalio import workflow
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from suifang.core.enums import Priority, Tier
from suifang.core.errors import NotFoundError, ValidationFailed
from suifang.tickets.calendar import BusinessCalendar, always_open_calendar, china_calendar
from suifang.tickets.sla import (
    BreachAction,
    SlaClock,
    SlaMeasure,
    SlaPolicy,
    SlaTarget,
    deadline,
    default_policy,
    load_policy,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
UTC = dt.UTC
BUSINESS = china_calendar(range(2025, 2027))
ALWAYS = always_open_calendar()


def cst(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=SHANGHAI)


def hours(amount: float) -> dt.timedelta:
    return dt.timedelta(hours=amount)


def business_clock(started_at: dt.datetime, target: dt.timedelta) -> SlaClock:
    return SlaClock(started_at=started_at, target=target, calendar=BUSINESS)


# ---------------------------------------------------------------------- the shipped policy


def test_every_tier_and_priority_has_a_target() -> None:
    policy = default_policy()
    for tier in Tier:
        for priority in Priority:
            target = policy.target_for(tier, priority)
            assert target.resolution > dt.timedelta(0)
            assert target.calendar in policy.calendars
    assert policy.calendar("business").holidays_known_until == dt.date(2026, 12, 31)
    assert policy.calendar("always").always_open


def test_the_l3_doctor_calls_back_within_48_calendar_hours() -> None:
    # 三级: 主诊医生48小时内回电 — weekends and holidays included.
    target = default_policy().target_for(Tier.L3, Priority.ROUTINE)
    assert target.first_response == hours(48)
    assert target.calendar == "always"
    clock = default_policy().clock(
        "L3", "routine", measure=SlaMeasure.FIRST_RESPONSE, started_at=cst(2026, 10, 2, 10, 0)
    )
    assert clock is not None
    assert clock.due_at() == cst(2026, 10, 4, 10, 0)  # straight through Golden Week


def test_an_urgent_l3_callback_is_due_in_two_hours_round_the_clock() -> None:
    clock = default_policy().clock(
        Tier.L3,
        Priority.URGENT,
        measure=SlaMeasure.FIRST_RESPONSE,
        started_at=cst(2026, 3, 14, 23, 0),  # a Saturday night
    )
    assert clock is not None
    assert clock.due_at() == cst(2026, 3, 15, 1, 0)
    assert clock.due_at() == dt.datetime(2026, 3, 14, 17, 0, tzinfo=UTC)


def test_a_routine_l2_answer_is_due_in_four_business_hours_across_golden_week() -> None:
    clock = default_policy().clock(
        Tier.L2, Priority.ROUTINE, measure="first_response", started_at=cst(2026, 9, 30, 16, 0)
    )
    assert clock is not None
    assert clock.due_at() == cst(2026, 10, 8, 10, 30)


def test_breach_actions_come_from_the_policy() -> None:
    policy = default_policy()
    assert policy.target_for("L1", "routine").on_breach == (BreachAction.BUMP_TIER,)
    assert policy.target_for("L3", "emergency").on_breach == (
        BreachAction.NOTIFY_SUPERVISOR,
        BreachAction.REASSIGN,
    )
    assert policy.target_for("L2", "urgent").warn_at == 0.8  # from defaults


def test_a_department_overrides_one_entry_and_inherits_the_rest() -> None:
    policy = default_policy()
    monday = cst(2026, 3, 16, 8, 0)
    logistics = policy.target_for(Tier.L2, Priority.ROUTINE, "logistics")
    assert logistics.resolution == hours(24)
    assert logistics.first_response == hours(4)
    assert logistics.calendar == "business"
    clock = policy.clock("L2", "routine", "logistics", measure="resolution", started_at=monday)
    assert clock is not None
    assert clock.due_at() == cst(2026, 3, 18, 17, 30)  # three business days
    elsewhere = policy.clock("L2", "routine", "cardiology", measure="resolution", started_at=monday)
    assert elsewhere is not None
    assert elsewhere.due_at() == cst(2026, 3, 17, 17, 30)  # two business days
    assert policy.target_for("L3", "urgent", "logistics") == policy.target_for("L3", "urgent")


def test_a_department_can_move_all_its_targets_to_another_calendar() -> None:
    policy = default_policy()
    target = policy.target_for("L2", "routine", "emergency")
    assert target.calendar == "always"
    assert target.resolution == hours(16)
    clock = policy.clock(
        "L2", "routine", "emergency", measure="resolution", started_at=cst(2026, 3, 14, 8, 0)
    )
    assert clock is not None
    assert clock.due_at() == cst(2026, 3, 15, 0, 0)


def test_unknown_calendars_are_reported_by_name() -> None:
    with pytest.raises(NotFoundError, match="no SLA calendar named 'night'; defined: business"):
        default_policy().calendar("night")


# ---------------------------------------------------------------------- the clock


def test_the_warning_fires_when_80_percent_of_the_working_time_has_passed() -> None:
    clock = business_clock(cst(2026, 3, 16, 11, 0), hours(4))
    assert clock.warn_at() == cst(2026, 3, 16, 15, 42)  # 3 h 12 min of working time
    assert clock.due_at() == cst(2026, 3, 16, 16, 30)
    assert clock.model_copy(update={"warn_fraction": None}).warn_at() is None


def test_elapsed_remaining_and_breach() -> None:
    clock = business_clock(cst(2026, 3, 16, 11, 0), hours(4))
    assert clock.elapsed(cst(2026, 3, 16, 10, 0)) == dt.timedelta(0)
    assert clock.elapsed(cst(2026, 3, 16, 14, 0)) == hours(1.5)
    assert clock.remaining(cst(2026, 3, 16, 14, 0)) == hours(2.5)
    due = clock.due_at()
    assert due is not None
    assert not clock.is_breached(due - dt.timedelta(microseconds=1))
    assert clock.is_breached(due)
    assert clock.remaining(cst(2026, 3, 17, 9, 0)) == -hours(2)  # 6 h used of 4
    assert clock.is_breached(cst(2026, 3, 16, 20, 0))  # stays breached overnight


def test_a_pause_moves_a_business_deadline_by_the_working_time_inside_it() -> None:
    clock = business_clock(cst(2026, 3, 16, 9, 0), hours(16))
    assert clock.due_at() == cst(2026, 3, 18, 9, 0)
    paused = clock.pause(cst(2026, 3, 16, 10, 0))
    resumed = paused.resume(cst(2026, 3, 16, 15, 0))  # 2 h + 1.5 h of working time
    assert resumed.due_at() == cst(2026, 3, 18, 14, 0)
    assert resumed.elapsed(cst(2026, 3, 16, 17, 30)) == hours(1 + 2.5)
    assert clock.due_at() == cst(2026, 3, 18, 9, 0)  # the original is unchanged


def test_a_pause_over_a_weekend_moves_the_deadline_only_by_its_working_hours() -> None:
    clock = business_clock(cst(2026, 3, 13, 9, 0), hours(16))  # Friday
    assert clock.due_at() == cst(2026, 3, 17, 9, 0)
    resumed = clock.pause(cst(2026, 3, 13, 17, 0)).resume(cst(2026, 3, 16, 9, 0))
    assert resumed.due_at() == cst(2026, 3, 17, 10, 30)  # 30 min on Friday, 1 h on Monday


def test_a_pause_moves_a_24_7_deadline_by_wall_time() -> None:
    clock = SlaClock(started_at=cst(2026, 3, 13, 22, 0), target=hours(2), calendar=ALWAYS)
    resumed = clock.pause(cst(2026, 3, 13, 22, 30)).resume(cst(2026, 3, 13, 23, 15))
    assert resumed.due_at() == cst(2026, 3, 14, 0, 45)
    assert resumed.pauses[0].start == cst(2026, 3, 13, 22, 30)


def test_a_paused_clock_has_no_deadline_and_stops_counting() -> None:
    paused = business_clock(cst(2026, 3, 16, 9, 0), hours(4)).pause(cst(2026, 3, 16, 10, 0))
    assert paused.is_paused
    assert paused.due_at() is None
    assert paused.warn_at() is None
    assert paused.elapsed(cst(2026, 3, 20, 17, 0)) == hours(1)
    assert not paused.is_breached(cst(2026, 3, 30, 9, 0))
    resumed = paused.resume(cst(2026, 3, 17, 8, 0))
    assert resumed.due_at() == cst(2026, 3, 17, 11, 0)


def test_pausing_and_resuming_out_of_order_is_refused() -> None:
    clock = business_clock(cst(2026, 3, 16, 9, 0), hours(4))
    with pytest.raises(ValueError, match="not paused"):
        clock.resume(cst(2026, 3, 16, 10, 0))
    with pytest.raises(ValueError, match=r"before .* when the clock last ran"):
        clock.pause(cst(2026, 3, 16, 8, 0))
    paused = clock.pause(cst(2026, 3, 16, 10, 0))
    with pytest.raises(ValueError, match="already paused"):
        paused.pause(cst(2026, 3, 16, 11, 0))
    with pytest.raises(ValueError, match="before the pause began"):
        paused.resume(cst(2026, 3, 16, 9, 30))
    with pytest.raises(ValueError, match="timezone-aware"):
        clock.pause(dt.datetime(2026, 3, 16, 10, 0))


def test_a_clock_survives_a_json_round_trip() -> None:
    clock = (
        business_clock(cst(2026, 9, 30, 9, 0), hours(16))
        .pause(cst(2026, 9, 30, 10, 0))
        .resume(cst(2026, 10, 8, 9, 0))
        .pause(cst(2026, 10, 9, 9, 0))
    )
    restored = SlaClock.model_validate_json(clock.model_dump_json())
    assert restored == clock
    assert (
        restored.resume(cst(2026, 10, 9, 10, 0)).due_at()
        == clock.resume(cst(2026, 10, 9, 10, 0)).due_at()
    )


def test_deadline_merges_overlapping_pauses_and_ignores_those_before_the_start() -> None:
    start = cst(2026, 3, 16, 9, 0)
    pauses = [
        (cst(2026, 3, 16, 10, 0), cst(2026, 3, 16, 11, 0)),
        (cst(2026, 3, 16, 10, 30), cst(2026, 3, 16, 11, 30)),
        (cst(2026, 3, 13, 9, 0), cst(2026, 3, 13, 10, 0)),
    ]
    assert deadline(start, hours(2), BUSINESS, pauses) == cst(2026, 3, 16, 14, 0)
    with pytest.raises(ValueError, match="before it starts"):
        deadline(start, hours(2), BUSINESS, [(cst(2026, 3, 16, 11, 0), cst(2026, 3, 16, 10))])


durations = st.timedeltas(min_value=dt.timedelta(0), max_value=dt.timedelta(days=6))
instants = st.datetimes(
    min_value=dt.datetime(2025, 1, 1), max_value=dt.datetime(2026, 11, 30), timezones=st.just(UTC)
)
offsets = st.timedeltas(min_value=dt.timedelta(0), max_value=dt.timedelta(days=10))


@settings(max_examples=200, deadline=None, database=None)
@given(
    calendar=st.sampled_from([BUSINESS, ALWAYS]),
    start=instants,
    target=durations,
    at=offsets,
)
def test_a_pause_of_zero_length_changes_nothing(
    calendar: BusinessCalendar, start: dt.datetime, target: dt.timedelta, at: dt.timedelta
) -> None:
    clock = SlaClock(started_at=start, target=target, calendar=calendar)
    same = clock.pause(start + at).resume(start + at)
    assert same.due_at() == clock.due_at()
    assert same.warn_at() == clock.warn_at()
    assert deadline(start, target, calendar, [(start + at, start + at)]) == clock.due_at()


@settings(max_examples=200, deadline=None, database=None)
@given(
    calendar=st.sampled_from([BUSINESS, ALWAYS]),
    start=instants,
    target=durations.filter(bool),  # a zero target is due at the first counted instant
    pause_at=offsets,
    pause_for=offsets,
)
def test_a_pause_moves_the_deadline_by_exactly_the_working_time_it_swallowed(
    calendar: BusinessCalendar,
    start: dt.datetime,
    target: dt.timedelta,
    pause_at: dt.timedelta,
    pause_for: dt.timedelta,
) -> None:
    clock = SlaClock(started_at=start, target=target, calendar=calendar)
    resumed = clock.pause(start + pause_at).resume(start + pause_at + pause_for)
    due, before = resumed.due_at(), clock.due_at()
    assert due is not None
    assert before is not None
    assert due >= before
    assert resumed.elapsed(due) == target
    swallowed = calendar.working_time_between(start + pause_at, start + pause_at + pause_for)
    if start + pause_at < before:  # the pause began before the original deadline
        assert calendar.working_time_between(before, due) == swallowed
    else:
        assert due == before


# ---------------------------------------------------------------------- policy files

VALID_POLICY = """\
calendars:
  business:
    statutory_holidays: china
    years: 2026
    hours:
      mon-fri: ["08:00-12:00", "13:30-17:30"]
  always:
    always_open: true
defaults:
  warn_at: 0.8
  on_breach: [notify_supervisor]
targets:
  L1:
    routine: {calendar: always, first_response: 10m, resolution: 24h}
    urgent: {calendar: always, resolution: 1h}
    emergency: {calendar: always, resolution: 15m}
  L2:
    routine:
      calendar: business
      first_response: 4h
      resolution: 16h
      warn_at: 0.75
    urgent: {calendar: always, first_response: 30m, resolution: 4h}
    emergency: {calendar: always, first_response: 15m, resolution: 1h}
  L3:
    routine: {calendar: always, first_response: 48h, resolution: 3d}
    urgent: {calendar: always, first_response: 2h, resolution: 24h}
    emergency: {calendar: always, first_response: 15m, resolution: 2h}
departments:
  logistics:
    targets:
      L2:
        routine:
          resolution: 24h
"""


def write_policy(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_policy_file_loads_with_defaults_merged_in(tmp_path: Path) -> None:
    policy = load_policy(write_policy(tmp_path, VALID_POLICY))
    assert policy.target_for("L2", "routine").warn_at == 0.75
    assert policy.target_for("L2", "routine", "logistics").warn_at == 0.75
    assert policy.target_for("L1", "urgent").on_breach == (BreachAction.NOTIFY_SUPERVISOR,)
    assert policy.target_for("L3", "routine").resolution == hours(72)
    assert (
        policy.clock("L1", "urgent", measure="first_response", started_at=cst(2026, 1, 5)) is None
    )
    assert SlaPolicy.model_validate_json(policy.model_dump_json()) == policy


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "      warn_at: 0.75",
            "      warn_at: 1.5",
            ":22: targets.L2.routine.warn_at: Input should be less than 1",
        ),
        (
            "  on_breach: [notify_supervisor]",
            "  on_breach: [call_the_police]",
            ":11: defaults.on_breach[0]: Input should be 'notify_supervisor', 'bump_tier' or",
        ),
        (
            "      resolution: 16h\n",
            "      resolutoin: 16h\n",
            ":21: targets.L2.routine.resolutoin: Extra inputs are not permitted",
        ),
        (
            "    urgent: {calendar: always, resolution: 1h}",
            "    urgent: {calendar: always}",
            ":15: targets.L1.urgent: resolution is required (set it here or in defaults)",
        ),
        (
            "    emergency: {calendar: always, resolution: 15m}",
            "    emergency: {calendar: weekdays, resolution: 15m}",
            ":16: targets.L1.emergency.calendar: unknown calendar 'weekdays'; defined: business,",
        ),
        (
            "      resolution: 16h\n",
            "      resolution: 2d\n",
            ":21: targets.L2.routine.resolution: '2d' on business-hours calendar 'business' "
            "would mean 48 working hours",
        ),
        (
            "first_response: 2h,",
            "first_response: 2,",
            ":27: targets.L3.urgent.first_response: 2 has no unit: write it like '48h'",
        ),
        (
            "    emergency: {calendar: always, first_response: 15m, resolution: 2h}\n",
            "",
            ":12: targets: no target for L3.emergency",
        ),
        (
            '      mon-fri: ["08:00-12:00", "13:30-17:30"]',
            '      mon-fri: ["08:00-12:00", "11:30-17:30"]',
            ":5: calendars.business.hours: mon: 11:30-17:30 overlaps or comes before 08:00-12:00",
        ),
        (
            "    years: 2026",
            "    years: 2031",
            ":4: calendars.business.years: no official holiday arrangement for 2031",
        ),
        (
            "          resolution: 24h",
            "          resolution: 2m",
            ":33: departments.logistics.targets.L2.routine: first_response (4:00:00) is longer "
            "than resolution (0:02:00)",
        ),
        (
            "targets:\n  L1:",
            "targets:\n  L4:",
            ":13: targets.L4: Input should be 'L1', 'L2' or 'L3'",
        ),
        ("  L2:\n    routine:", "  L2:\n  routine:", ":23: not valid YAML"),
    ],
)
def test_a_bad_policy_file_is_refused_naming_the_file_line_and_field(
    tmp_path: Path, old: str, new: str, expected: str
) -> None:
    assert old in VALID_POLICY
    path = write_policy(tmp_path, VALID_POLICY.replace(old, new, 1))
    with pytest.raises(ValidationFailed) as refused:
        load_policy(path)
    assert f"{path}{expected}" in str(refused.value)


def test_a_policy_file_that_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    path = write_policy(tmp_path, "- L1\n- L2\n")
    with pytest.raises(ValidationFailed, match="must be a mapping"):
        load_policy(path)


def test_a_policy_built_in_python_is_checked_too() -> None:
    target = SlaTarget(calendar="always", resolution=hours(1))
    table = {tier: {priority: target for priority in Priority} for tier in Tier}
    with pytest.raises(ValueError, match=r"targets: no target for L3\.emergency"):
        SlaPolicy(
            calendars={"always": ALWAYS},
            targets={**table, Tier.L3: {Priority.ROUTINE: target, Priority.URGENT: target}},
        )
    with pytest.raises(ValueError, match="unknown calendar 'always'"):
        SlaPolicy(calendars={}, targets=table)


# ---------------------------------------------------------------------- inside a workflow


@workflow.defn
class SlaTimerWorkflow:
    """Starts a clock at workflow time, pauses it for an hour, sleeps until it is due and
    reports what it saw. The SLA module is imported here, inside the sandbox and under its
    restrictions; the test module itself is passed through (the sandbox cannot re-import it)."""

    @workflow.run
    async def run(self, clock_json: str) -> list[str]:
        from suifang.tickets.sla import SlaClock as SandboxedClock

        started = SandboxedClock.model_validate_json(clock_json)
        clock = started.model_copy(update={"started_at": workflow.now()}).pause(workflow.now())
        await workflow.sleep(dt.timedelta(hours=1))
        clock = clock.resume(workflow.now())
        due = clock.due_at()
        assert due is not None
        await workflow.sleep(due - workflow.now())
        woke = workflow.now()
        return [clock.model_dump_json(), woke.isoformat()]


# The SLA module is imported inside the running workflow on purpose (see SlaTimerWorkflow).
@pytest.mark.filterwarnings("ignore:Module suifang.* was imported after initial workflow load")
async def test_a_clock_drives_a_timer_inside_a_sandboxed_workflow(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    clock = default_policy().clock(
        "L2", "routine", measure="first_response", started_at=cst(2026, 3, 16, 9, 0)
    )
    assert clock is not None
    queue = f"sla-{uuid.uuid4()}"
    runner = SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(__name__)
    )
    async with Worker(
        time_skipping_env.client,
        task_queue=queue,
        workflows=[SlaTimerWorkflow],
        workflow_runner=runner,
        # A sandbox violation fails the workflow (and this test) instead of retrying forever.
        workflow_failure_exception_types=[Exception],
    ):
        final_json, woke = await time_skipping_env.client.execute_workflow(
            SlaTimerWorkflow.run,
            clock.model_dump_json(),
            id=f"sla-timer-{uuid.uuid4()}",
            task_queue=queue,
        )
    final = SlaClock.model_validate_json(final_json)
    due, woke_at = final.due_at(), dt.datetime.fromisoformat(woke)
    assert due is not None
    paused_for = final.pauses[0].end - final.pauses[0].start
    assert hours(1) <= paused_for < hours(1) + dt.timedelta(seconds=1)  # timers fire a bit late
    assert final.calendar == clock.calendar
    assert dt.timedelta(0) <= woke_at - due < dt.timedelta(seconds=1)
    assert final.is_breached(woke_at)
    assert hours(4) <= final.elapsed(woke_at) < hours(4) + dt.timedelta(seconds=1)
