"""Business-hours calendars and the exact working-time arithmetic SLA deadlines are built on.

A :class:`BusinessCalendar` is plain data — a time zone, weekly working hours, holiday dates
and make-up working days (调休) — so it can be built outside a Temporal workflow, passed in as
a payload and used inside one. Even the time zone's UTC offsets travel as data: they are read
from the tz database once, when the calendar is built, so a workflow never touches
``zoneinfo`` (no file read, and no disagreement between workers with different tz data).
The methods are pure: no I/O, no wall clock, the same answer for the same input in every
process. They walk the calendar interval by interval (each local day's working intervals
are converted to UTC once and cached on the instance), never minute by minute.

Conventions:

- Every instant given must be timezone-aware; every instant returned is aware UTC.
- Working intervals are half-open ``[start, end)``. A deadline that uses up an interval
  exactly lands on that interval's end (Friday 17:30, not Monday 08:00).
- Wall-clock boundaries are read in the calendar's time zone. On a daylight-saving change a
  boundary that does not exist (the clocks skip it) becomes the first instant after the gap,
  and a boundary that happens twice means its first occurrence; so "08:00-12:00" is the
  real time between the clock showing 08:00 and showing 12:00.
- A make-up working day (调休, usually a Saturday or Sunday) works the hours of
  ``extra_workday_schedule`` (Monday unless told otherwise); a holiday has no hours at all.

:func:`china_calendar` fills holidays and make-up working days from the ``chinesecalendar``
package (China's State Council arrangements, updated each November for the next year) and,
for years that package does not know yet, from ``templates/calendars/cn_statutory.yaml``.
"""

from __future__ import annotations

import bisect
import datetime as dt
import enum
import functools
import itertools
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, NamedTuple
from zoneinfo import ZoneInfo

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    field_serializer,
    field_validator,
    model_serializer,
    model_validator,
)

from suifang.core.errors import ConfigurationError
from suifang.core.timezones import check_timezone

__all__ = [
    "STANDARD_HOURS",
    "STATUTORY_DATA_FILE",
    "BusinessCalendar",
    "StatutoryArrangements",
    "UtcDatetime",
    "UtcOffsetChange",
    "Weekday",
    "WorkingInterval",
    "always_open_calendar",
    "as_utc",
    "china_calendar",
    "load_statutory_file",
]

UTC = dt.UTC
# Pure path arithmetic: resolve() would touch the file system, which a workflow sandbox refuses.
STATUTORY_DATA_FILE = Path(__file__).parent.parent / "templates" / "calendars" / "cn_statutory.yaml"
STANDARD_HOURS: Mapping[str, Sequence[str]] = {"mon-fri": ("08:00-12:00", "13:30-17:30")}
"""A Chinese public hospital's office hours: Monday to Friday, 08:00-12:00 and 13:30-17:30."""

_ZERO = dt.timedelta(0)
_ONE_DAY = dt.timedelta(days=1)
_MIDNIGHT = dt.time(0)
# Stands in for "never closes"; far enough for any SLA, near enough to subtract from safely.
_FAR_FUTURE = dt.datetime(9000, 1, 1, tzinfo=UTC)
# A long-running simulator visits a few thousand distinct days; this only bounds a pathological
# caller, so clearing the cache wholesale is fine.
_CACHE_LIMIT = 20_000
# The span in which UTC offsets are exact; before it the first offset applies, after it the last.
_OFFSETS_FROM = dt.datetime(2000, 1, 1, tzinfo=UTC)
_OFFSETS_UNTIL = dt.datetime(2100, 1, 1, tzinfo=UTC)
_LONGEST_OFFSET = dt.timedelta(hours=26)
_CLOCK_TIME = re.compile(r"^\s*(\d{1,2}):(\d{2})(?::(\d{2}))?\s*$")


def as_utc(value: dt.datetime, what: str = "instant") -> dt.datetime:
    """``value`` in UTC; a naive datetime is refused because its meaning would be a guess."""
    if not isinstance(value, dt.datetime):
        raise TypeError(f"{what} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got naive {value.isoformat()}")
    return value.astimezone(UTC)


UtcDatetime = Annotated[AwareDatetime, AfterValidator(as_utc)]
"""A pydantic field type: any aware datetime, stored in UTC; naive ones are rejected."""


class UtcOffsetChange(NamedTuple):
    """From ``since`` (UTC) on, the zone's clocks read UTC + ``offset``."""

    since: UtcDatetime
    offset: dt.timedelta


@functools.lru_cache(maxsize=64)
def _offset_changes(timezone: str) -> tuple[UtcOffsetChange, ...]:
    """The zone's UTC offsets from 2000 to 2100, read from the tz database (build time only)."""
    zone = ZoneInfo(check_timezone(timezone))  # never a path the tz database does not list

    def offset_at(instant: dt.datetime) -> dt.timedelta:
        offset = instant.astimezone(zone).utcoffset()
        assert offset is not None  # a ZoneInfo always knows its offset
        return offset

    changes = [UtcOffsetChange(_OFFSETS_FROM, offset_at(_OFFSETS_FROM))]
    # Daily samples find the changes (they come months apart; the table was checked against
    # every zone of the tz database); bisection to the second pins each one down, as the
    # database counts in seconds.
    before, previous = _OFFSETS_FROM, changes[0].offset
    while before < _OFFSETS_UNTIL:
        after = before + _ONE_DAY
        current = offset_at(after)
        if current != previous:
            early, late = before, after
            while late - early > dt.timedelta(seconds=1):
                middle = early + dt.timedelta(seconds=(late - early).total_seconds() // 2)
                if offset_at(middle) == previous:
                    early = middle
                else:
                    late = middle
            changes.append(UtcOffsetChange(late, current))
        before, previous = after, current
    return tuple(changes)


class Weekday(enum.StrEnum):
    MON = "mon"
    TUE = "tue"
    WED = "wed"
    THU = "thu"
    FRI = "fri"
    SAT = "sat"
    SUN = "sun"

    @property
    def index(self) -> int:
        """0 for Monday … 6 for Sunday, as :meth:`datetime.date.weekday` counts."""
        return list(Weekday).index(self)


def _parse_clock_time(value: Any, *, end: bool) -> dt.time:
    if isinstance(value, dt.time):
        return value
    if isinstance(value, int) and 0 <= value < 24 * 60:
        # YAML 1.1 reads an unquoted 13:30 as the sexagesimal integer 810.
        return dt.time(value // 60, value % 60)
    match = _CLOCK_TIME.match(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"{value!r} is not a time of day like '08:00'")
    hour, minute, second = int(match[1]), int(match[2]), int(match[3] or 0)
    if end and (hour, minute, second) == (24, 0, 0):
        return _MIDNIGHT  # the end of the day
    if hour > 23 or minute > 59 or second > 59:
        raise ValueError(f"{value!r} is not a time of day (00:00 to 23:59, or 24:00 as an end)")
    return dt.time(hour, minute, second)


def _format_clock_time(value: dt.time, *, end: bool) -> str:
    if end and value == _MIDNIGHT:
        return "24:00"
    return value.strftime("%H:%M:%S" if value.second else "%H:%M")


def _since_midnight(value: dt.time) -> dt.timedelta:
    return dt.timedelta(
        hours=value.hour, minutes=value.minute, seconds=value.second, microseconds=value.microsecond
    )


class WorkingInterval(BaseModel):
    """One stretch of working time within a day: ``"08:00-12:00"``; ``"17:30-24:00"`` runs to
    midnight. Written and serialized as that string; ``{start: ..., end: ...}`` also works."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    start: dt.time
    end: dt.time
    """``00:00`` here means midnight at the end of the day (written ``24:00``)."""

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, data: Any) -> Any:
        if isinstance(data, str):
            parts = re.split(r"\s*[-–~]\s*", data.strip())
            if len(parts) != 2:
                raise ValueError(f"{data!r} is not an interval like '08:00-12:00'")
            data = {"start": parts[0], "end": parts[1]}
        if isinstance(data, Mapping):
            data = dict(data)
            if "start" in data:
                data["start"] = _parse_clock_time(data["start"], end=False)
            if "end" in data:
                data["end"] = _parse_clock_time(data["end"], end=True)
        return data

    @model_validator(mode="after")
    def _ordered(self) -> WorkingInterval:
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ValueError(f"{self}: give wall-clock times; the calendar has the time zone")
        if self.start_offset >= self.end_offset:
            raise ValueError(f"{self} ends before it starts (intervals cannot cross midnight)")
        return self

    @model_serializer(mode="plain")
    def _as_text(self) -> str:
        return str(self)

    def __str__(self) -> str:
        start = _format_clock_time(self.start, end=False)
        return f"{start}-{_format_clock_time(self.end, end=True)}"

    @property
    def start_offset(self) -> dt.timedelta:
        return _since_midnight(self.start)

    @property
    def end_offset(self) -> dt.timedelta:
        return _ONE_DAY if self.end == _MIDNIGHT else _since_midnight(self.end)

    @property
    def length(self) -> dt.timedelta:
        """Nominal length; a daylight-saving day may make the real span shorter or longer."""
        return self.end_offset - self.start_offset


def _days_of(key: Any) -> list[Weekday]:
    names = [day.value for day in Weekday]
    text = str(key).strip().lower()
    first, _, last = text.partition("-")
    if first not in names or (last and last not in names):
        raise ValueError(
            f"unknown day {key!r}: use mon, tue, wed, thu, fri, sat, sun or a range like mon-fri"
        )
    if not last:
        return [Weekday(first)]
    if names.index(last) < names.index(first):
        raise ValueError(f"day range {key!r} runs backwards: write it from the earlier day")
    return [Weekday(day) for day in names[names.index(first) : names.index(last) + 1]]


class BusinessCalendar(BaseModel):
    """When work happens: weekly hours in a time zone, minus holidays, plus make-up workdays.

    Frozen and serializable (holiday dates are data, not a library call), so a workflow can
    receive one as input. ``model_copy(update=...)`` validates the update and starts a fresh
    interval cache.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    timezone: str = "Asia/Shanghai"
    """An IANA time zone name; the weekly hours and the holiday dates are read in it."""
    hours: dict[Weekday, tuple[WorkingInterval, ...]] = Field(default_factory=dict)
    """Working intervals per weekday, ordered and non-overlapping; a missing day is closed.
    Keys may be day ranges when written: ``{"mon-fri": ["08:00-12:00", "13:30-17:30"]}``."""
    holidays: frozenset[dt.date] = frozenset()
    """Dates with no working time at all, whatever their weekday."""
    extra_workdays: frozenset[dt.date] = frozenset()
    """Make-up working days (调休), usually weekend dates, worked with ``extra_workday_schedule``'s
    hours."""
    extra_workday_schedule: Weekday = Weekday.MON
    always_open: bool = False
    """24/7: every instant is working time and the other fields are ignored."""
    holidays_known_until: dt.date | None = None
    """The last date the holiday data covers, if known. Later dates follow the weekly hours
    alone, so the data must be extended before then (see :func:`china_calendar`)."""
    utc_offsets: tuple[UtcOffsetChange, ...] = ()
    """The zone's UTC offsets, oldest first. Leave it out: it is filled from the tz database
    when the calendar is built (exact from 2000 to 2100; before, the first offset applies,
    after, the last) and then travels with the calendar."""

    _timeline: _Timeline = PrivateAttr()

    @model_validator(mode="before")
    @classmethod
    def _offsets_from_the_tz_database(cls, data: Any) -> Any:
        # Only when building: a calendar that arrives as a payload brings its offsets along.
        if isinstance(data, Mapping) and not data.get("utc_offsets"):
            timezone = data.get("timezone", "Asia/Shanghai")
            if isinstance(timezone, str):
                data = {**data, "utc_offsets": _offset_changes(timezone)}
        return data

    @field_validator("utc_offsets")
    @classmethod
    def _ordered_offsets(cls, value: tuple[UtcOffsetChange, ...]) -> tuple[UtcOffsetChange, ...]:
        if not value:
            raise ValueError("needs at least one offset")
        for earlier, later in itertools.pairwise(value):
            if later.since <= earlier.since:
                raise ValueError(f"offset changes out of order at {later.since.isoformat()}")
        if any(abs(change.offset) >= _LONGEST_OFFSET for change in value):
            raise ValueError("an offset from UTC must be shorter than 26 hours")
        return value

    @field_validator("hours", mode="before")
    @classmethod
    def _expand_day_ranges(cls, value: Any) -> Any:
        if not isinstance(value, Mapping):
            return value
        expanded: dict[Weekday, Any] = {}
        written_as: dict[Weekday, Any] = {}
        for key, intervals in value.items():
            for day in _days_of(key):
                if day in expanded:
                    raise ValueError(f"{day} is given twice ({written_as[day]!r} and {key!r})")
                expanded[day], written_as[day] = intervals, key
        return expanded

    @field_validator("hours")
    @classmethod
    def _non_overlapping(
        cls, value: dict[Weekday, tuple[WorkingInterval, ...]]
    ) -> dict[Weekday, tuple[WorkingInterval, ...]]:
        for day, intervals in value.items():
            for earlier, later in itertools.pairwise(intervals):
                if later.start_offset < earlier.end_offset:
                    raise ValueError(
                        f"{day}: {later} overlaps or comes before {earlier}; list each day's "
                        f"intervals in order, without overlaps"
                    )
        # Keep the days in week order so equal calendars serialize identically.
        return {day: value[day] for day in Weekday if value.get(day)}

    @model_validator(mode="after")
    def _consistent(self) -> BusinessCalendar:
        if self.always_open:
            if self.hours:
                raise ValueError("an always_open calendar takes no hours")
            return self
        if not self.hours:
            raise ValueError(
                "a business calendar needs hours on at least one weekday "
                "(or always_open: true for 24/7)"
            )
        clash = sorted(self.holidays & self.extra_workdays)
        if clash:
            raise ValueError(
                f"{', '.join(map(str, clash))} listed both as holiday and as extra workday"
            )
        if self.extra_workdays and self.extra_workday_schedule not in self.hours:
            raise ValueError(
                f"extra_workday_schedule is {self.extra_workday_schedule}, which has no hours; "
                f"make-up working days would have no working time"
            )
        return self

    def model_post_init(self, context: Any, /) -> None:
        self._timeline = _Timeline(self)

    @field_serializer("holidays", "extra_workdays")
    def _sorted_dates(self, value: frozenset[dt.date]) -> list[dt.date]:
        return sorted(value)  # a stable payload: set order would differ between processes

    def model_copy(
        self, *, update: Mapping[str, Any] | None = None, deep: bool = False
    ) -> BusinessCalendar:
        # pydantic's copy would skip validation and share the derived UTC-interval cache.
        fields = {**self.__dict__, **(update or {})}
        if update and "timezone" in update and "utc_offsets" not in update:
            del fields["utc_offsets"]  # the new zone's offsets come from the tz database
        return type(self).model_validate(fields)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BusinessCalendar):
            return NotImplemented
        return self.__dict__ == other.__dict__  # fields only; the cache is derived

    def __hash__(self) -> int:
        return hash((self.name, self.timezone, self.always_open, self.holidays))

    # ------------------------------------------------------------------ local days

    def intervals_on(self, day: dt.date) -> tuple[WorkingInterval, ...]:
        """The wall-clock working intervals of local date ``day`` (empty on holidays)."""
        if self.always_open:
            return (WorkingInterval(start=_MIDNIGHT, end=_MIDNIGHT),)
        return self._timeline.intervals_on(day)

    # ------------------------------------------------------------------ the arithmetic

    def working_intervals(
        self, since: dt.datetime, until: dt.datetime | None = None
    ) -> Iterator[tuple[dt.datetime, dt.datetime]]:
        """Working intervals in UTC, in order, clipped to ``[since, until)``; endless when
        ``until`` is None (a 24/7 calendar yields one interval reaching far into the future)."""
        since = as_utc(since, "since")
        limit = _FAR_FUTURE if until is None else as_utc(until, "until")
        if since >= limit:
            return
        if self.always_open:
            yield since, limit
            return
        timeline = self._timeline  # fetched once: pydantic's private-attribute lookup is slow
        day = timeline.local_date(since)
        last_day = None if until is None else timeline.local_date(limit)
        while last_day is None or day <= last_day:
            for start, end in timeline.utc_intervals(day):
                if end <= since:
                    continue
                if start >= limit:
                    return
                yield max(start, since), min(end, limit)
            day += _ONE_DAY

    def is_working(self, at: dt.datetime) -> bool:
        """Whether ``at`` falls inside working time (an interval's end does not)."""
        at = as_utc(at, "at")
        if self.always_open:
            return True
        first = next(self.working_intervals(at), None)
        return first is not None and first[0] == at

    def next_working_instant(self, at: dt.datetime) -> dt.datetime:
        """``at`` itself during working time, else the start of the next working interval."""
        at = as_utc(at, "at")
        if self.always_open:
            return at
        return next(self.working_intervals(at))[0]

    def add_working_time(self, start: dt.datetime, duration: dt.timedelta) -> dt.datetime:
        """The instant at which ``duration`` of working time has passed since ``start``.

        ``start`` may lie outside working time (counting begins at the next interval). A zero
        duration gives :meth:`next_working_instant`; a duration that ends exactly with an
        interval gives that interval's end.
        """
        start = as_utc(start, "start")
        if duration < _ZERO:
            raise ValueError(f"duration must not be negative, got {duration}")
        if self.always_open:
            return start + duration
        remaining = duration
        for begin, end in self.working_intervals(start):
            span = end - begin
            if remaining <= span:
                return begin + remaining
            remaining -= span
        raise AssertionError("unreachable: a business calendar has working time every week")

    def working_time_between(self, a: dt.datetime, b: dt.datetime) -> dt.timedelta:
        """Working time from ``a`` to ``b``; negative when ``b`` is before ``a``."""
        a, b = as_utc(a, "a"), as_utc(b, "b")
        if b < a:
            return -self.working_time_between(b, a)
        if self.always_open:
            return b - a
        total = _ZERO
        for begin, end in self.working_intervals(a, b):
            total += end - begin
        return total


class _Timeline:
    """What a calendar derives from its fields to do the arithmetic fast: the weekly schedule
    per weekday, the UTC offsets ready for bisection, and each visited day's working
    intervals in UTC. Runtime state only; never serialized, never compared."""

    __slots__ = (
        "_change_instants",
        "_change_offsets",
        "_day_cache",
        "_extra_workdays",
        "_holidays",
        "_make_up_schedule",
        "_schedules",
    )

    def __init__(self, calendar: BusinessCalendar) -> None:
        self._schedules = tuple(calendar.hours.get(day, ()) for day in Weekday)
        self._holidays = calendar.holidays
        self._extra_workdays = calendar.extra_workdays
        self._make_up_schedule = self._schedules[calendar.extra_workday_schedule.index]
        # Naive UTC and naive wall times from here on: cheaper, and unambiguous given offsets.
        self._change_instants = [
            change.since.replace(tzinfo=None) for change in calendar.utc_offsets
        ]
        self._change_offsets = [change.offset for change in calendar.utc_offsets]
        self._day_cache: dict[dt.date, tuple[tuple[dt.datetime, dt.datetime], ...]] = {}

    def intervals_on(self, day: dt.date) -> tuple[WorkingInterval, ...]:
        if day in self._holidays:
            return ()
        if day in self._extra_workdays:
            return self._make_up_schedule
        return self._schedules[day.weekday()]

    def local_date(self, instant: dt.datetime) -> dt.date:
        naive = instant.replace(tzinfo=None)
        index = bisect.bisect_right(self._change_instants, naive) - 1
        return (naive + self._change_offsets[max(index, 0)]).date()

    def instant(self, day: dt.date, offset: dt.timedelta) -> dt.datetime:
        """The first instant at which the local clock shows ``day`` + ``offset`` or later."""
        wall = dt.datetime.combine(day, _MIDNIGHT) + offset
        # Between changes the clock runs at UTC + a fixed offset, so in each such stretch the
        # earliest instant showing ``wall`` or later is max(its start, wall - offset) if that
        # falls inside it. Stretches come in time order: the first that qualifies wins, which
        # makes a repeated wall time its first occurrence and a skipped one the change itself.
        instants, offsets = self._change_instants, self._change_offsets
        first = max(bisect.bisect_right(instants, wall - _LONGEST_OFFSET) - 1, 0)
        for index in range(first, len(instants)):
            candidate = wall - offsets[index]
            if index + 1 == len(instants) or candidate < instants[index + 1]:
                start = instants[index] if index else candidate
                return max(start, candidate).replace(tzinfo=UTC)
        raise AssertionError("unreachable: the last stretch never ends")

    def utc_intervals(self, day: dt.date) -> tuple[tuple[dt.datetime, dt.datetime], ...]:
        cached = self._day_cache.get(day)
        if cached is None:
            spans = []
            for interval in self.intervals_on(day):
                start = self.instant(day, interval.start_offset)
                end = self.instant(day, interval.end_offset)
                if end > start:
                    spans.append((start, end))
            cached = tuple(spans)
            if len(self._day_cache) >= _CACHE_LIMIT:
                self._day_cache.clear()
            self._day_cache[day] = cached
        return cached


# ---------------------------------------------------------------------- factories


def always_open_calendar(name: str = "always", timezone: str = "Asia/Shanghai") -> BusinessCalendar:
    """A 24/7 calendar: working time is wall time."""
    return BusinessCalendar(name=name, timezone=timezone, always_open=True)


def china_calendar(
    years: range | Iterable[int],
    hours: Mapping[Any, Any] = STANDARD_HOURS,
    *,
    name: str = "business",
    timezone: str = "Asia/Shanghai",
    statutory_file: Path = STATUTORY_DATA_FILE,
) -> BusinessCalendar:
    """A business calendar with China's statutory holidays and 调休 working days for ``years``.

    Each year comes from the ``chinesecalendar`` package when it knows the year, else from
    ``statutory_file`` (add a year there as soon as the State Council publishes its
    arrangement, usually in November). A year neither source knows is refused rather than
    guessed: without the official arrangement the make-up working days are unknowable.
    """
    wanted = sorted(set(years))
    if not wanted:
        raise ConfigurationError("china_calendar: give at least one year")
    if wanted != list(range(wanted[0], wanted[-1] + 1)):
        raise ConfigurationError(
            f"china_calendar: years must be consecutive, got {', '.join(map(str, wanted))}"
        )
    sources = [_library_data()]
    if any(year not in sources[0].years for year in wanted):
        sources.append(load_statutory_file(statutory_file))
    holidays: set[dt.date] = set()
    workdays: set[dt.date] = set()
    for year in wanted:
        source = next((s for s in sources if year in s.years), None)
        if source is None:
            known = sorted(set().union(*(s.years for s in sources)))
            raise ConfigurationError(
                f"no official holiday arrangement for {year}: "
                f"{' and '.join(s.name for s in sources)} cover {_year_span(known)}. Once the "
                f"State Council has published it, add it to {statutory_file} or upgrade "
                f"chinesecalendar."
            )
        holidays.update(day for day in source.holidays if day.year == year)
        workdays.update(day for day in source.workdays if day.year == year)
    return BusinessCalendar(
        name=name,
        timezone=timezone,
        hours=dict(hours),
        holidays=frozenset(holidays),
        extra_workdays=frozenset(workdays),
        holidays_known_until=dt.date(wanted[-1], 12, 31),
    )


def _year_span(years: Sequence[int]) -> str:
    if not years:
        return "no years"
    return f"{years[0]}-{years[-1]}" if len(years) > 1 else str(years[0])


class StatutoryArrangements(NamedTuple):
    """Official holiday arrangements from one source, for the years it covers."""

    name: str
    years: frozenset[int]
    holidays: frozenset[dt.date]
    """Every day off of the announced holiday periods, weekends included."""
    workdays: frozenset[dt.date]
    """Make-up working days (调休), all of them on weekends."""


def _library_data() -> StatutoryArrangements:
    # Imported on use: workflows receive built calendars and never need the package.
    try:
        import chinese_calendar
    except ImportError:
        return StatutoryArrangements(
            "chinesecalendar (not installed)", frozenset(), frozenset(), frozenset()
        )
    holidays = frozenset(chinese_calendar.holidays)
    return StatutoryArrangements(
        f"chinesecalendar {chinese_calendar.__version__}",
        frozenset(day.year for day in holidays),
        holidays,
        frozenset(chinese_calendar.workdays),
    )


def load_statutory_file(path: Path) -> StatutoryArrangements:
    """Read committed arrangements (format and sources: the file's header)."""
    import yaml  # imported on use: keeps this module light for workflow sandboxes

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigurationError(f"{path}: cannot read statutory holidays: {exc}") from None
    if not isinstance(data, Mapping):
        raise ConfigurationError(f"{path}: expected a mapping of year → arrangement")
    holidays: set[dt.date] = set()
    workdays: set[dt.date] = set()
    for year, entry in data.items():
        where = f"{path}: {year}"
        if not isinstance(year, int) or not isinstance(entry, Mapping):
            raise ConfigurationError(f"{where}: expected `<year>: {{source, holidays, workdays}}`")
        if not entry.get("source"):
            raise ConfigurationError(f"{where}: say where the arrangement comes from (source)")
        for holiday, span in (entry.get("holidays") or {}).items():
            if not (
                isinstance(span, list)
                and len(span) == 2
                and all(isinstance(day, dt.date) for day in span)
                and span[0] <= span[1]
            ):
                raise ConfigurationError(
                    f"{where}.holidays.{holiday}: expected [first day, last day], got {span!r}"
                )
            length = (span[1] - span[0]).days + 1
            holidays.update(span[0] + dt.timedelta(days=n) for n in range(length))
        listed = entry.get("workdays") or []
        if not isinstance(listed, list) or not all(isinstance(day, dt.date) for day in listed):
            raise ConfigurationError(f"{where}.workdays: expected a list of dates")
        workdays.update(listed)
    return StatutoryArrangements(
        str(path), frozenset(data), frozenset(holidays), frozenset(workdays)
    )
