"""SLA policies (what a ticket must meet) and the SLA clock (when it is due).

A policy (``templates/sla/policy.yaml``) gives each tier × priority a :class:`SlaTarget`: the
working time allowed until the first response and until resolution, the calendar that time
is counted on, when to warn and what to do on breach. Departments may override any entry or
the calendar all their targets use. :func:`load_policy` validates the file and resolves every
override up front, so :meth:`SlaPolicy.target_for` is a lookup.

A :class:`SlaClock` is the running form of one target for one ticket: started at an instant,
paused while the ticket waits on the patient. It is immutable — :meth:`SlaClock.pause` and
:meth:`SlaClock.resume` return new clocks — and plain serializable data, so a ticket
workflow keeps clocks in its state and turns :meth:`SlaClock.due_at` and
:meth:`SlaClock.warn_at` into timers. Like the calendar it is pure: nothing here reads a
file, the wall clock or the network at call time (YAML is imported only by the loader).
"""

from __future__ import annotations

import datetime as dt
import enum
import functools
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, NamedTuple

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from suifang.core.enums import Priority, Tier
from suifang.core.errors import ConfigurationError, NotFoundError, ValidationFailed
from suifang.tickets.calendar import (
    STANDARD_HOURS,
    BusinessCalendar,
    UtcDatetime,
    as_utc,
    china_calendar,
)

__all__ = [
    "DEFAULT_POLICY_FILE",
    "BreachAction",
    "Pause",
    "SlaClock",
    "SlaMeasure",
    "SlaPolicy",
    "SlaTarget",
    "deadline",
    "default_policy",
    "load_policy",
    "parse_working_time",
]

# Pure path arithmetic: resolve() would touch the file system, which a workflow sandbox refuses.
DEFAULT_POLICY_FILE = Path(__file__).parent.parent / "templates" / "sla" / "policy.yaml"

_ZERO = dt.timedelta(0)
_FAR_FUTURE = dt.datetime(9000, 1, 1, tzinfo=dt.UTC)
_DURATION = re.compile(r"^\s*(?:\d+(?:\.\d+)?\s*[dhms]\s*)+$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([dhms])")
_UNITS = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}


class BreachAction(enum.StrEnum):
    """What the ticket workflow does when a target is breached, in the order listed."""

    NOTIFY_SUPERVISOR = "notify_supervisor"
    BUMP_TIER = "bump_tier"
    REASSIGN = "reassign"


class SlaMeasure(enum.StrEnum):
    FIRST_RESPONSE = "first_response"
    RESOLUTION = "resolution"


def parse_working_time(value: Any) -> Any:
    """``"4h"``, ``"15m"``, ``"1h30m"``, ``"3d"`` → timedelta; ISO 8601 (``"PT4H"``) is left
    to pydantic. A bare number is refused: ``48`` would silently mean 48 seconds."""
    if isinstance(value, bool | int | float):
        raise ValueError(f"{value!r} has no unit: write it like '48h', '15m' or '1h30m'")
    if isinstance(value, str) and _DURATION.match(value):
        parts = _DURATION_PART.findall(value)
        try:
            return sum(
                (dt.timedelta(**{_UNITS[unit]: float(amount)}) for amount, unit in parts), _ZERO
            )
        except OverflowError:
            raise ValueError(f"{value!r} is too long a duration") from None
    return value


WorkingTime = Annotated[dt.timedelta, BeforeValidator(parse_working_time)]


class SlaTarget(BaseModel):
    """One tier × priority's targets. Durations are *working time* on ``calendar``: on a
    business-hours calendar ``16h`` is two 8-hour working days."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    calendar: str = Field(min_length=1)
    """The policy calendar the time is counted on (``business``, ``always``, …)."""
    first_response: WorkingTime | None = None
    """Until someone (or the L1 automaton) first answers the patient; None: not measured."""
    resolution: WorkingTime
    warn_at: float | None = Field(default=0.8, gt=0, lt=1)
    """Warn when this fraction of the working time has elapsed; None: no warning."""
    on_breach: tuple[BreachAction, ...] = ()

    @field_validator("first_response", "resolution")
    @classmethod
    def _positive(cls, value: dt.timedelta | None) -> dt.timedelta | None:
        if value is not None and value <= _ZERO:
            raise ValueError(f"must be longer than zero, got {value}")
        return value

    @field_validator("on_breach")
    @classmethod
    def _once_each(cls, value: tuple[BreachAction, ...]) -> tuple[BreachAction, ...]:
        twice = sorted({action for action in value if value.count(action) > 1})
        if twice:
            raise ValueError(f"{', '.join(twice)} listed more than once")
        return value

    @model_validator(mode="after")
    def _response_before_resolution(self) -> SlaTarget:
        if self.first_response is not None and self.first_response > self.resolution:
            raise ValueError(
                f"first_response ({self.first_response}) is longer than resolution "
                f"({self.resolution})"
            )
        return self

    def duration(self, measure: SlaMeasure | str) -> dt.timedelta | None:
        return getattr(self, SlaMeasure(measure).value)


# ---------------------------------------------------------------------- the clock


class Pause(NamedTuple):
    """A closed pause of an SLA clock (the ticket waited on the patient), in UTC."""

    start: UtcDatetime
    end: UtcDatetime


def _merged_pauses(
    pauses: Iterable[tuple[dt.datetime, dt.datetime]], since: dt.datetime
) -> list[Pause]:
    """Pauses clipped to ``since`` onwards, sorted, overlapping or touching ones merged."""
    spans = []
    for start, end in pauses:
        start, end = as_utc(start, "pause start"), as_utc(end, "pause end")
        if end < start:
            raise ValueError(f"pause ends ({end.isoformat()}) before it starts ({start})")
        if end > since:
            spans.append((max(start, since), end))
    merged: list[Pause] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1].end:
            merged[-1] = Pause(merged[-1].start, max(merged[-1].end, end))
        elif end > start:
            merged.append(Pause(start, end))
    return merged


def _counted_intervals(
    calendar: BusinessCalendar,
    since: dt.datetime,
    pauses: list[Pause],
    until: dt.datetime | None = None,
) -> Iterator[tuple[dt.datetime, dt.datetime]]:
    """The working intervals from ``since`` (to ``until``) with the merged pauses cut out."""
    index = 0
    for start, end in calendar.working_intervals(since, until):
        cursor = start
        while index < len(pauses) and pauses[index].end <= cursor:
            index += 1
        while index < len(pauses) and pauses[index].start < end:
            pause = pauses[index]
            if pause.start > cursor:
                yield cursor, pause.start
            if pause.end >= end:
                cursor = end
                break
            cursor = pause.end
            index += 1
        if cursor < end:
            yield cursor, end


def deadline(
    start: dt.datetime,
    duration: dt.timedelta,
    calendar: BusinessCalendar,
    pauses: Iterable[tuple[dt.datetime, dt.datetime]] = (),
) -> dt.datetime:
    """When ``duration`` of working time on ``calendar``, not counting ``pauses``, has passed
    since ``start`` (aware UTC). Each pause pushes the deadline by the working time inside it:
    wall time on a 24/7 calendar, only the working hours on a business one."""
    start = as_utc(start, "start")
    if duration < _ZERO:
        raise ValueError(f"duration must not be negative, got {duration}")
    merged = _merged_pauses(pauses, start)
    if not merged:
        return calendar.add_working_time(start, duration)
    remaining = duration
    for begin, end in _counted_intervals(calendar, start, merged):
        if remaining <= end - begin:
            return begin + remaining
        remaining -= end - begin
    raise AssertionError("unreachable: working time never runs out")


class SlaClock(BaseModel):
    """One SLA target running for one ticket. Immutable: ``pause`` and ``resume`` return a
    new clock. All instants are aware UTC; durations are working time on ``calendar``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    started_at: UtcDatetime
    target: dt.timedelta
    calendar: BusinessCalendar
    warn_fraction: float | None = Field(default=0.8, gt=0, lt=1)
    pauses: tuple[Pause, ...] = ()
    """Closed pauses, in order."""
    paused_since: UtcDatetime | None = None
    """Set while the clock is paused (waiting on the patient)."""

    @field_validator("target")
    @classmethod
    def _not_negative(cls, value: dt.timedelta) -> dt.timedelta:
        if value < _ZERO:
            raise ValueError(f"must not be negative, got {value}")
        return value

    @model_validator(mode="after")
    def _chronological(self) -> SlaClock:
        previous_end = self.started_at
        for number, pause in enumerate(self.pauses):
            if pause.start < previous_end or pause.end < pause.start:
                raise ValueError(
                    f"pauses[{number}] ({pause.start.isoformat()} to {pause.end.isoformat()}) "
                    f"must start after the clock started and the previous pause ended, "
                    f"and end after it starts"
                )
            previous_end = pause.end
        if self.paused_since is not None and self.paused_since < previous_end:
            raise ValueError("paused_since must follow the start and every closed pause")
        return self

    @property
    def is_paused(self) -> bool:
        return self.paused_since is not None

    def pause(self, at: dt.datetime) -> SlaClock:
        """This clock, stopped at ``at``."""
        at = as_utc(at, "at")
        if self.paused_since is not None:
            raise ValueError(f"the clock is already paused (since {self.paused_since})")
        last = self.pauses[-1].end if self.pauses else self.started_at
        if at < last:
            raise ValueError(f"cannot pause at {at}: before {last}, when the clock last ran")
        return self.model_copy(update={"paused_since": at})

    def resume(self, at: dt.datetime) -> SlaClock:
        """This clock, running again from ``at``; the pause moves the deadline."""
        at = as_utc(at, "at")
        if self.paused_since is None:
            raise ValueError("the clock is not paused")
        if at < self.paused_since:
            raise ValueError(f"cannot resume at {at}: before the pause began ({self.paused_since})")
        pauses = self.pauses
        if at > self.paused_since:
            pauses = (*pauses, Pause(self.paused_since, at))
        return self.model_copy(update={"pauses": pauses, "paused_since": None})

    def due_at(self) -> dt.datetime | None:
        """When the target is breached; None while paused (no timer should run then)."""
        if self.paused_since is not None:
            return None
        return deadline(self.started_at, self.target, self.calendar, self.pauses)

    def warn_at(self) -> dt.datetime | None:
        """When ``warn_fraction`` of the target has elapsed; None while paused or if no
        warning is configured."""
        if self.paused_since is not None or self.warn_fraction is None:
            return None
        return deadline(
            self.started_at, self.target * self.warn_fraction, self.calendar, self.pauses
        )

    def elapsed(self, at: dt.datetime) -> dt.timedelta:
        """Working time counted from the start up to ``at``, pauses excluded."""
        at = as_utc(at, "at")
        if at <= self.started_at:
            return _ZERO
        pauses = list(self.pauses)
        if self.paused_since is not None:
            pauses.append(Pause(self.paused_since, _FAR_FUTURE))
        return sum(
            (
                end - start
                for start, end in _counted_intervals(self.calendar, self.started_at, pauses, at)
            ),
            _ZERO,
        )

    def remaining(self, at: dt.datetime) -> dt.timedelta:
        """Working time left at ``at``; negative once breached (by how much it is overdue)."""
        return self.target - self.elapsed(at)

    def is_breached(self, at: dt.datetime) -> bool:
        """Whether the target has been used up by ``at`` (true from :meth:`due_at` on)."""
        return self.elapsed(at) >= self.target


# ---------------------------------------------------------------------- the policy


class SlaPolicy(BaseModel):
    """Targets per tier × priority, per-department variants and the calendars they use.

    The resolved form: every department listed in ``departments`` has all its entries with
    overrides already applied; other departments use ``targets``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    calendars: dict[str, BusinessCalendar]
    targets: dict[Tier, dict[Priority, SlaTarget]]
    departments: dict[str, dict[Tier, dict[Priority, SlaTarget]]] = Field(default_factory=dict)
    clinical: dict[Tier, dict[Priority, SlaTarget]] = Field(default_factory=dict)
    """Targets of clinical tickets (symptoms, side effects, readings, the mind), whatever the
    department: health matters do not wait for Monday. Empty: clinical tickets use the rest."""

    @model_validator(mode="after")
    def _complete(self) -> SlaPolicy:
        for name, calendar in self.calendars.items():
            if calendar.name != name:
                raise ValueError(f"calendars.{name} is named {calendar.name!r}; make them agree")
        tables = {"targets": self.targets} | {
            f"departments.{code}": table for code, table in self.departments.items()
        }
        if self.clinical:
            tables["clinical"] = self.clinical
        for where, table in tables.items():
            missing = [f"{t}.{p}" for t in Tier for p in Priority if p not in table.get(t, {})]
            if missing:
                raise ValueError(f"{where}: no target for {', '.join(missing)}")
            for tier, row in table.items():
                for priority, target in row.items():
                    if target.calendar not in self.calendars:
                        raise ValueError(
                            f"{where}.{tier}.{priority}.calendar: unknown calendar "
                            f"{target.calendar!r}; defined: {', '.join(self.calendars)}"
                        )
        return self

    def target_for(
        self,
        tier: Tier | str,
        priority: Priority | str,
        department: str | None = None,
        *,
        clinical: bool = False,
    ) -> SlaTarget:
        if clinical and self.clinical:
            table = self.clinical
        else:
            table = self.departments.get(department, self.targets) if department else self.targets
        return table[Tier(tier)][Priority(priority)]

    def calendar(self, name: str) -> BusinessCalendar:
        try:
            return self.calendars[name]
        except KeyError:
            raise NotFoundError(
                f"no SLA calendar named {name!r}; defined: {', '.join(self.calendars)}"
            ) from None

    def clock(
        self,
        tier: Tier | str,
        priority: Priority | str,
        department: str | None = None,
        *,
        measure: SlaMeasure | str,
        started_at: dt.datetime,
    ) -> SlaClock | None:
        """A clock for one measure of the target that applies; None if it is not measured."""
        target = self.target_for(tier, priority, department)
        duration = target.duration(measure)
        if duration is None:
            return None
        return SlaClock(
            started_at=started_at,
            target=duration,
            calendar=self.calendar(target.calendar),
            warn_fraction=target.warn_at,
        )


# ---------------------------------------------------------------------- the YAML file

Loc = tuple[str | int, ...]


class _Problem(Exception):
    def __init__(self, loc: Loc, message: str) -> None:
        super().__init__(message)
        self.loc = loc
        self.message = message


class _TargetPatch(BaseModel):
    """A target entry as written: any field may be left to ``defaults`` or the base entry."""

    model_config = ConfigDict(extra="forbid")

    calendar: str | None = Field(default=None, min_length=1)
    first_response: WorkingTime | None = None
    resolution: WorkingTime | None = None
    warn_at: float | None = None
    on_breach: tuple[BreachAction, ...] | None = None

    _written: dict[str, str] = PrivateAttr(default_factory=dict)

    @model_validator(mode="wrap")
    @classmethod
    def _remember_text(cls, data: Any, handler: Any) -> _TargetPatch:
        patch = handler(data)
        if isinstance(data, Mapping):
            patch._written = {
                field: data[field]
                for field in ("first_response", "resolution")
                if isinstance(data.get(field), str)
            }
        return patch


Table = dict[Tier, dict[Priority, _TargetPatch]]


class _DepartmentDocument(BaseModel):
    model_config = ConfigDict(extra="forbid")

    calendar: str | None = Field(default=None, min_length=1)
    """The calendar every target of this department uses unless its own entry names one."""
    targets: Table = Field(default_factory=dict)


class _PolicyDocument(BaseModel):
    model_config = ConfigDict(extra="forbid")

    calendars: dict[str, dict[str, Any]]
    defaults: _TargetPatch = Field(default_factory=_TargetPatch)
    targets: Table
    departments: dict[str, _DepartmentDocument] = Field(default_factory=dict)
    clinical: _DepartmentDocument | None = None


def _years(value: Any, loc: Loc) -> range:
    if isinstance(value, int):
        return range(value, value + 1)
    if isinstance(value, str) and re.fullmatch(r"\s*\d{4}\s*-\s*\d{4}\s*", value):
        first, last = (int(part) for part in value.split("-"))
        return range(first, last + 1)
    if isinstance(value, list) and value and all(isinstance(year, int) for year in value):
        return range(min(value), max(value) + 1)
    raise _Problem(loc, f"expected a year, a range like '2025-2026' or a list, got {value!r}")


def _build_calendar(name: str, spec: dict[str, Any]) -> BusinessCalendar:
    loc: Loc = ("calendars", name)
    spec = dict(spec)
    statutory = spec.pop("statutory_holidays", None)
    years = spec.pop("years", None)
    if statutory not in (None, "china"):
        raise _Problem((*loc, "statutory_holidays"), f"only 'china' is known, got {statutory!r}")
    if (statutory is None) != (years is None):
        raise _Problem(loc, "statutory_holidays and years go together")
    if "name" in spec:
        raise _Problem((*loc, "name"), "the calendar's name is its key under calendars")
    if statutory is not None:
        spec.setdefault("hours", STANDARD_HOURS)
    try:
        calendar = BusinessCalendar.model_validate({"name": name, **spec})
        if statutory is None:
            return calendar
        official = china_calendar(
            _years(years, (*loc, "years")), spec["hours"], name=name, timezone=calendar.timezone
        )
        # Holidays and make-up days written in the file come on top of the official ones.
        return calendar.model_copy(
            update={
                "holidays": official.holidays | calendar.holidays,
                "extra_workdays": official.extra_workdays | calendar.extra_workdays,
                "holidays_known_until": official.holidays_known_until,
            }
        )
    except ConfigurationError as exc:
        raise _Problem((*loc, "years"), str(exc)) from None
    except ValidationError as exc:
        error = exc.errors()[0]
        raise _Problem((*loc, *error["loc"]), error["msg"].removeprefix("Value error, ")) from None


def _resolve(
    entry: Loc, layers: list[tuple[Loc, _TargetPatch]], calendars: dict[str, BusinessCalendar]
) -> SlaTarget:
    """One target from its layers (later ones win), with errors located where the bad value
    was written."""
    values: dict[str, Any] = {}
    origin: dict[str, tuple[Loc, _TargetPatch]] = {}
    for loc, patch in layers:
        for field in patch.model_fields_set:
            values[field] = getattr(patch, field)
            origin[field] = ((*loc, field), patch)
    try:
        target = SlaTarget.model_validate(values)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = error["loc"][0] if error["loc"] else None
        where = origin[field][0] if field in origin else entry
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "missing":
            message = f"{field} is required (set it here or in defaults)"
        raise _Problem(where, message) from None
    calendar = calendars.get(target.calendar)
    if calendar is None:
        raise _Problem(
            origin["calendar"][0],
            f"unknown calendar {target.calendar!r}; defined: {', '.join(calendars)}",
        )
    for field in ("first_response", "resolution"):
        if field not in origin or calendar.always_open:
            continue
        loc, patch = origin[field]
        text = patch._written.get(field, "")
        if any(unit == "d" for _, unit in _DURATION_PART.findall(text)):
            hours = getattr(target, field) / dt.timedelta(hours=1)
            raise _Problem(
                loc,
                f"{text!r} on business-hours calendar {target.calendar!r} would mean {hours:g} "
                f"working hours (a day is 24 hours of working time); write working time in "
                f"hours, e.g. '16h' for two 8-hour working days",
            )
    return target


def _layers(
    document: _PolicyDocument, tier: Tier, priority: Priority, department: str | None = None
) -> list[tuple[Loc, _TargetPatch]]:
    """What a target is made of, weakest first: defaults, the entry, the override's calendar
    and the override's own entry. ``department`` names a department's override, or
    ``"(clinical)"`` the clinical one."""
    layers: list[tuple[Loc, _TargetPatch]] = [(("defaults",), document.defaults)]
    entry = document.targets.get(tier, {}).get(priority)
    if entry is not None:
        layers.append((("targets", tier.value, priority.value), entry))
    if department is not None:
        if department == _CLINICAL:
            assert document.clinical is not None
            override, where = document.clinical, ("clinical",)
        else:
            override, where = document.departments[department], ("departments", department)
        if override.calendar is not None:
            layers.append((where, _TargetPatch(calendar=override.calendar)))
        own = override.targets.get(tier, {}).get(priority)
        if own is not None:
            loc: Loc = (*where, "targets", tier.value, priority.value)
            layers.append((loc, own))
    return layers


_CLINICAL = "(clinical)"


def _build_policy(document: _PolicyDocument) -> SlaPolicy:
    missing = [f"{t}.{p}" for t in Tier for p in Priority if p not in document.targets.get(t, {})]
    if missing:
        raise _Problem(("targets",), f"no target for {', '.join(missing)}")
    calendars = {name: _build_calendar(name, spec) for name, spec in document.calendars.items()}

    def table(department: str | None) -> dict[Tier, dict[Priority, SlaTarget]]:
        if department == _CLINICAL:
            where: Loc = ("clinical", "targets")
        elif department:
            where = ("departments", department, "targets")
        else:
            where = ("targets",)
        return {
            tier: {
                priority: _resolve(
                    (*where, tier.value, priority.value),
                    _layers(document, tier, priority, department),
                    calendars,
                )
                for priority in Priority
            }
            for tier in Tier
        }

    return SlaPolicy(
        calendars=calendars,
        targets=table(None),
        departments={code: table(code) for code in document.departments},
        clinical=table(_CLINICAL) if document.clinical is not None else {},
    )


def _loc_text(loc: Loc) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part == "[key]" or part.startswith("function-"):
            continue  # pydantic's own markers, not keys of the file
        elif not re.fullmatch(r"[A-Za-z0-9_-]+", part):
            text += f"[{part!r}]"  # a key as odd as an empty one: quoted, so it shows
        else:
            text += f".{part}" if text else part
    return text or "(top level)"


def load_policy(path: Path | str) -> SlaPolicy:
    """Read and validate an SLA policy file; errors say ``file:line: field: reason``."""
    import yaml  # imported on use: workflow code imports this module and never loads files

    from suifang.core.yaml_input import line_of, read_yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        root, data = read_yaml(text)
    except (OSError, UnicodeDecodeError) as exc:
        raise ValidationFailed(f"{path}: cannot read: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ValidationFailed(
            f"{where}: not valid YAML: {getattr(exc, 'problem', None) or exc}"
        ) from None
    if not isinstance(data, dict):
        raise ValidationFailed(
            f"{path}:1: an SLA policy must be a mapping (calendars, defaults, targets, …)"
        )
    try:
        return _build_policy(_PolicyDocument.model_validate(data))
    except ValidationError as exc:
        problems = [
            (tuple(error["loc"]), error["msg"].removeprefix("Value error, "))
            for error in exc.errors()
        ]
    except _Problem as problem:
        problems = [(problem.loc, problem.message)]
    lines = [
        f"{path}:{line_of(root, loc)}: {_loc_text(loc)}: {message}" for loc, message in problems
    ]
    raise ValidationFailed("invalid SLA policy\n  " + "\n  ".join(lines))


@functools.cache
def default_policy() -> SlaPolicy:
    """The shipped policy (``templates/sla/policy.yaml``), loaded once per process."""
    return load_policy(DEFAULT_POLICY_FILE)
