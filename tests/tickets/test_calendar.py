"""Business-hours calendars: exact working-time arithmetic across nights, weekends, China's
statutory holidays with their 调休 make-up working days, and daylight-saving changes."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import chinese_calendar
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from suifang.core.errors import ConfigurationError
from suifang.tickets.calendar import (
    STATUTORY_DATA_FILE,
    BusinessCalendar,
    always_open_calendar,
    china_calendar,
    load_statutory_file,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
NEW_YORK = ZoneInfo("America/New_York")
UTC = dt.UTC
CHINA = china_calendar(range(2025, 2027))
MICROSECOND = dt.timedelta(microseconds=1)


def cst(*args: int) -> dt.datetime:
    """An instant on the wall clock in Shanghai."""
    return dt.datetime(*args, tzinfo=SHANGHAI)


def hours(amount: float) -> dt.timedelta:
    return dt.timedelta(hours=amount)


# ---------------------------------------------------------------------- ordinary weeks


def test_results_are_aware_utc_whatever_zone_the_input_is_in() -> None:
    due = CHINA.add_working_time(cst(2026, 3, 17, 9, 0), hours(1))
    assert due.tzinfo is UTC
    assert due == dt.datetime(2026, 3, 17, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai
    assert CHINA.add_working_time(dt.datetime(2026, 3, 17, 1, 0, tzinfo=UTC), hours(1)) == due


def test_the_lunch_break_is_not_working_time() -> None:
    assert CHINA.add_working_time(cst(2026, 3, 17, 11, 0), hours(2)) == cst(2026, 3, 17, 14, 30)
    assert not CHINA.is_working(cst(2026, 3, 17, 12, 30))
    assert not CHINA.is_working(cst(2026, 3, 17, 12, 0))  # intervals end exclusively
    assert CHINA.is_working(cst(2026, 3, 17, 13, 30))
    assert CHINA.working_time_between(cst(2026, 3, 17, 11, 0), cst(2026, 3, 17, 14, 0)) == hours(
        1.5
    )


@pytest.mark.parametrize(
    ("start", "expected"),
    [
        (cst(2026, 3, 17, 6, 0), cst(2026, 3, 17, 9, 0)),  # before opening
        (cst(2026, 3, 17, 12, 15), cst(2026, 3, 17, 14, 30)),  # during lunch
        (cst(2026, 3, 17, 19, 0), cst(2026, 3, 18, 9, 0)),  # in the evening
    ],
)
def test_counting_starts_at_the_next_working_interval(
    start: dt.datetime, expected: dt.datetime
) -> None:
    assert CHINA.add_working_time(start, hours(1)) == expected


def test_a_weekend_is_skipped() -> None:
    friday = cst(2026, 3, 13, 16, 0)
    monday = cst(2026, 3, 16, 10, 30)  # 1.5 h on Friday, 2.5 h on Monday
    assert CHINA.add_working_time(friday, hours(4)) == monday
    assert CHINA.working_time_between(friday, monday) == hours(4)
    assert not CHINA.is_working(cst(2026, 3, 14, 10, 0))


def test_using_up_an_interval_exactly_ends_with_it_not_at_the_next_one() -> None:
    assert CHINA.add_working_time(cst(2026, 3, 13, 16, 0), hours(1.5)) == cst(2026, 3, 13, 17, 30)


def test_zero_working_time_is_the_next_working_instant() -> None:
    assert CHINA.add_working_time(cst(2026, 3, 14, 10, 0), dt.timedelta(0)) == cst(
        2026, 3, 16, 8, 0
    )
    assert CHINA.add_working_time(cst(2026, 3, 16, 9, 0), dt.timedelta(0)) == cst(2026, 3, 16, 9)


def test_next_working_instant() -> None:
    assert CHINA.next_working_instant(cst(2026, 3, 17, 9, 5)) == cst(2026, 3, 17, 9, 5)
    assert CHINA.next_working_instant(cst(2026, 3, 17, 12, 0)) == cst(2026, 3, 17, 13, 30)
    assert CHINA.next_working_instant(cst(2026, 3, 17, 17, 30)) == cst(2026, 3, 18, 8, 0)
    assert CHINA.next_working_instant(cst(2026, 9, 30, 18, 0)) == cst(2026, 10, 8, 8, 0)


def test_working_time_between_runs_backwards_with_a_minus_sign() -> None:
    a, b = cst(2026, 3, 13, 16, 0), cst(2026, 3, 16, 10, 30)
    assert CHINA.working_time_between(b, a) == -hours(4)
    assert CHINA.working_time_between(a, a) == dt.timedelta(0)


def test_negative_durations_and_naive_instants_are_refused() -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        CHINA.add_working_time(cst(2026, 3, 17, 9, 0), -hours(1))
    with pytest.raises(ValueError, match=r"start must be timezone-aware, got naive 2026-03-17"):
        CHINA.add_working_time(dt.datetime(2026, 3, 17, 9, 0), hours(1))


# ---------------------------------------------------------------------- statutory holidays


def test_national_day_golden_week_2026_is_skipped() -> None:
    # 国庆节: 10月1日(周四)至7日(周三)放假调休, 9月20日(周日)、10月10日(周六)上班.
    assert CHINA.add_working_time(cst(2026, 9, 30, 16, 0), hours(4)) == cst(2026, 10, 8, 10, 30)
    assert not CHINA.is_working(cst(2026, 10, 5, 10, 0))  # a Monday inside the holiday
    assert CHINA.working_time_between(cst(2026, 9, 30, 8, 0), cst(2026, 10, 9, 17, 30)) == hours(
        24
    )  # 30 September, 8 and 9 October


def test_national_day_make_up_weekend_days_are_working_days() -> None:
    assert CHINA.is_working(cst(2026, 9, 20, 10, 0))  # Sunday 20 September
    assert CHINA.add_working_time(cst(2026, 9, 19, 10, 0), hours(1)) == cst(2026, 9, 20, 9, 0)
    # Friday 9 October into Saturday 10 October, a working day with Monday's hours.
    assert CHINA.add_working_time(cst(2026, 10, 9, 16, 0), hours(4)) == cst(2026, 10, 10, 10, 30)
    assert not CHINA.is_working(cst(2026, 10, 10, 12, 45))  # and Monday's lunch break


def test_spring_festival_2026_is_skipped_and_its_make_up_saturdays_are_worked() -> None:
    # 春节: 2月15日至23日放假调休, 共9天; 2月14日(周六)、2月28日(周六)上班.
    assert CHINA.add_working_time(cst(2026, 2, 13, 17, 0), hours(1)) == cst(2026, 2, 14, 8, 30)
    assert CHINA.add_working_time(cst(2026, 2, 14, 17, 0), hours(1)) == cst(2026, 2, 24, 8, 30)
    assert CHINA.working_time_between(cst(2026, 2, 14, 0, 0), cst(2026, 3, 1, 0, 0)) == hours(
        8 * 6
    )  # 14 February, 24 to 27 February, 28 February
    assert CHINA.is_working(cst(2026, 2, 28, 9, 0))
    assert not CHINA.is_working(cst(2026, 3, 1, 9, 0))  # an ordinary Sunday


def test_the_calendar_says_how_far_its_holiday_data_reaches() -> None:
    assert CHINA.holidays_known_until == dt.date(2026, 12, 31)
    assert dt.date(2025, 10, 8) in CHINA.holidays
    assert dt.date(2025, 9, 28) in CHINA.extra_workdays


def test_a_year_without_a_published_arrangement_is_refused_not_guessed() -> None:
    with pytest.raises(ConfigurationError, match=r"no official holiday arrangement for 2027") as e:
        china_calendar([2026, 2027])
    assert "cn_statutory.yaml" in str(e.value)


def test_years_must_be_consecutive() -> None:
    with pytest.raises(ConfigurationError, match="consecutive, got 2025, 2026, 2028"):
        china_calendar([2025, 2028, 2026])


def test_a_year_missing_from_the_library_comes_from_the_data_file(tmp_path: Path) -> None:
    data = tmp_path / "statutory.yaml"
    data.write_text(
        "2031:\n"
        "  source: a test arrangement\n"
        "  holidays:\n"
        "    春节: [2031-01-22, 2031-01-28]\n"
        "  workdays: [2031-01-19]\n",
        encoding="utf-8",
    )
    calendar = china_calendar([2031], statutory_file=data)
    assert dt.date(2031, 1, 27) in calendar.holidays
    assert calendar.is_working(cst(2031, 1, 19, 9, 0))  # a Sunday
    assert calendar.add_working_time(cst(2031, 1, 21, 17, 0), hours(1)) == cst(2031, 1, 29, 8, 30)


def test_a_broken_data_file_is_reported_with_its_name_and_entry(tmp_path: Path) -> None:
    data = tmp_path / "statutory.yaml"
    data.write_text("2031:\n  source: x\n  holidays:\n    春节: [2031-01-28]\n", encoding="utf-8")
    with pytest.raises(ConfigurationError, match=r"statutory.yaml: 2031.holidays.春节: expected"):
        china_calendar([2031], statutory_file=data)


@pytest.mark.parametrize("year", [2025, 2026])
def test_the_committed_data_file_agrees_with_chinesecalendar(year: int) -> None:
    committed = load_statutory_file(STATUTORY_DATA_FILE)
    assert year in committed.years
    assert {d for d in committed.holidays if d.year == year} == {
        d for d in chinese_calendar.holidays if d.year == year
    }
    assert {d for d in committed.workdays if d.year == year} == {
        d for d in chinese_calendar.workdays if d.year == year
    }


# ---------------------------------------------------------------------- time zones


def test_daylight_saving_days_count_real_time() -> None:
    night_shift = BusinessCalendar(
        name="night", timezone="America/New_York", hours={"sun": ["00:00-06:00"]}
    )
    spring = dt.datetime(2026, 3, 8, 0, 0, tzinfo=NEW_YORK)  # 02:00 → 03:00
    autumn = dt.datetime(2026, 11, 1, 0, 0, tzinfo=NEW_YORK)  # 02:00 → 01:00
    assert night_shift.working_time_between(spring, spring + dt.timedelta(days=1)) == hours(5)
    assert night_shift.working_time_between(autumn, autumn + dt.timedelta(days=1)) == hours(7)
    assert night_shift.add_working_time(spring, hours(5)) == dt.datetime(
        2026, 3, 8, 10, 0, tzinfo=UTC
    )  # 06:00 EDT
    # The offsets travel with the calendar, so a workflow never reads the tz database.
    assert (dt.datetime(2026, 3, 8, 7, 0, tzinfo=UTC), -hours(4)) in night_shift.utc_offsets
    assert len(CHINA.utc_offsets) == 1  # Asia/Shanghai: UTC+8 all along since 1991


def test_a_boundary_the_clocks_skip_starts_at_the_first_instant_after_the_gap() -> None:
    calendar = BusinessCalendar(
        name="odd", timezone="America/New_York", hours={"sun": ["02:30-04:00"]}
    )
    day = dt.datetime(2026, 3, 8, 0, 0, tzinfo=NEW_YORK)
    assert calendar.next_working_instant(day) == dt.datetime(2026, 3, 8, 7, 0, tzinfo=UTC)
    assert calendar.working_time_between(day, day + dt.timedelta(days=1)) == hours(1)


def test_business_hours_over_a_european_clock_change_weekend() -> None:
    berlin = BusinessCalendar(
        name="berlin", timezone="Europe/Berlin", hours={"mon-fri": ["09:00-17:00"]}
    )
    friday = dt.datetime(2026, 3, 27, 16, 0, tzinfo=ZoneInfo("Europe/Berlin"))  # CET, UTC+1
    assert berlin.add_working_time(friday, hours(2)) == dt.datetime(
        2026, 3, 30, 8, 0, tzinfo=UTC
    )  # Monday 10:00 CEST, UTC+2


def test_intervals_may_run_to_midnight() -> None:
    evenings = BusinessCalendar(name="evenings", hours={"sat-sun": ["17:30-24:00"]})
    assert evenings.add_working_time(cst(2026, 3, 14, 23, 0), hours(1)) == cst(2026, 3, 15, 0, 0)
    assert evenings.add_working_time(cst(2026, 3, 14, 23, 0), hours(2)) == cst(2026, 3, 15, 18, 30)
    assert evenings.model_dump(mode="json")["hours"]["sat"] == ["17:30-24:00"]


# ---------------------------------------------------------------------- 24/7


def test_an_always_open_calendar_counts_wall_time() -> None:
    always = always_open_calendar()
    saturday_night = cst(2026, 10, 3, 23, 0)  # a holiday weekend makes no difference
    assert always.add_working_time(saturday_night, hours(2)) == cst(2026, 10, 4, 1, 0)
    assert always.working_time_between(saturday_night, cst(2026, 10, 5, 23, 0)) == hours(48)
    assert always.is_working(saturday_night)
    assert always.next_working_instant(saturday_night) == saturday_night


# ---------------------------------------------------------------------- validation and data


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"timezone": "Mars/Olympus"}, "unknown IANA timezone 'Mars/Olympus'"),
        ({"hours": {"mon": ["08:00-12:00", "11:00-13:00"]}}, "mon: 11:00-13:00 overlaps"),
        ({"hours": {"mon": ["13:30-17:30", "08:00-12:00"]}}, "mon: 08:00-12:00 overlaps or comes"),
        ({"hours": {"mon": ["12:00-08:00"]}}, "12:00-08:00 ends before it starts"),
        ({"hours": {"mon": ["8am-noon"]}}, "'8am' is not a time of day"),
        ({"hours": {"monday": ["08:00-12:00"]}}, "unknown day 'monday'"),
        ({"hours": {"fri-mon": ["08:00-12:00"]}}, "day range 'fri-mon' runs backwards"),
        ({"hours": {"mon-fri": ["08:00-12:00"], "fri": []}}, "fri is given twice"),
        ({"hours": {}}, "needs hours on at least one weekday"),
        ({"always_open": True}, "an always_open calendar takes no hours"),
        (
            {"holidays": [dt.date(2026, 3, 14)], "extra_workdays": [dt.date(2026, 3, 14)]},
            "2026-03-14 listed both as holiday and as extra workday",
        ),
        (
            {"extra_workdays": [dt.date(2026, 3, 14)], "extra_workday_schedule": "sat"},
            "extra_workday_schedule is sat, which has no hours",
        ),
    ],
)
def test_invalid_calendars_are_refused_with_the_reason(
    fields: dict[str, object], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        BusinessCalendar.model_validate({"name": "x", "hours": {"mon": ["08:00-12:00"]}, **fields})


def test_a_calendar_survives_a_json_round_trip_with_a_stable_payload() -> None:
    payload = CHINA.model_dump_json()
    restored = BusinessCalendar.model_validate_json(payload)
    assert restored == CHINA
    assert restored.model_dump_json() == payload
    assert restored.add_working_time(cst(2026, 9, 30, 16, 0), hours(4)) == cst(2026, 10, 8, 10, 30)
    listed = restored.model_dump(mode="json")["holidays"]
    assert listed == sorted(listed)


def test_a_copy_with_changes_is_validated_and_computes_afresh() -> None:
    friday = cst(2026, 3, 13, 16, 0)
    assert CHINA.add_working_time(friday, hours(4)) == cst(2026, 3, 16, 10, 30)
    closed_monday = CHINA.model_copy(update={"holidays": CHINA.holidays | {dt.date(2026, 3, 16)}})
    assert closed_monday.add_working_time(friday, hours(4)) == cst(2026, 3, 17, 10, 30)
    with pytest.raises(ValidationError, match="unknown IANA timezone"):
        CHINA.model_copy(update={"timezone": "Nowhere/Land"})


# ---------------------------------------------------------------------- properties

starts = st.datetimes(
    min_value=dt.datetime(2025, 1, 1), max_value=dt.datetime(2026, 11, 30), timezones=st.just(UTC)
)
durations = st.timedeltas(min_value=dt.timedelta(0), max_value=dt.timedelta(days=8))
# Odd hours in a daylight-saving zone: boundaries inside the skipped and the repeated hour.
NIGHTS = BusinessCalendar(
    name="nights",
    timezone="America/New_York",
    hours={"mon-fri": ["08:00-12:00", "13:30-17:30"], "sat-sun": ["00:30-02:30", "22:00-24:00"]},
    holidays=[dt.date(2026, 11, 26)],
    extra_workdays=[dt.date(2026, 3, 1)],
)
calendars = st.sampled_from([CHINA, NIGHTS])


@settings(max_examples=300, deadline=None, database=None)
@given(calendar=calendars, start=starts, a=durations, b=durations)
def test_adding_more_working_time_never_gives_an_earlier_instant(
    calendar: BusinessCalendar, start: dt.datetime, a: dt.timedelta, b: dt.timedelta
) -> None:
    shorter, longer = sorted((a, b))
    assert calendar.add_working_time(start, shorter) <= calendar.add_working_time(start, longer)


@settings(max_examples=300, deadline=None, database=None)
@given(calendar=calendars, start=starts, duration=durations)
def test_working_time_between_undoes_add_working_time(
    calendar: BusinessCalendar, start: dt.datetime, duration: dt.timedelta
) -> None:
    end = calendar.add_working_time(start, duration)
    assert calendar.working_time_between(start, end) == duration


@settings(max_examples=300, deadline=None, database=None)
@given(calendar=calendars, start=starts, duration=durations)
def test_a_deadline_lands_in_working_time_or_at_the_end_of_an_interval(
    calendar: BusinessCalendar, start: dt.datetime, duration: dt.timedelta
) -> None:
    end = calendar.add_working_time(start, duration)
    assert end >= start
    if duration:
        assert calendar.is_working(end - MICROSECOND)
    else:
        assert calendar.is_working(end)


@settings(max_examples=200, deadline=None, database=None)
@given(calendar=calendars, start=starts, a=durations, b=durations.filter(bool))
def test_adding_in_two_steps_is_adding_once(
    calendar: BusinessCalendar, start: dt.datetime, a: dt.timedelta, b: dt.timedelta
) -> None:
    step = calendar.add_working_time(start, a)
    assert calendar.add_working_time(step, b) == calendar.add_working_time(start, a + b)
