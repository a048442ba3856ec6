"""On-call rosters: who is paged for a department's emergency now, and how the page escalates.

A roster file (``suifang oncall import roster.yaml``, ``PUT /oncall``) names the staff and
their contact points, and for each department its paging policy and its shifts::

    timezone: Asia/Shanghai
    staff:
      - username: dr.wang
        display_name: 王医生
        role: doctor
        departments: [cardiology]
        contacts: [{system: phone, value: "13800000001"}, {system: email, value: w@h.cn}]
    departments:
      cardiology:
        paging: {channels: [sms, voice, outbox], escalate_after: [5m, 10m]}
        supervisor: dr.li               # standing holders of a role
        shifts:                         # a dated line beats a weekly one, which beats standing
          - {days: mon-fri, hours: "08:00-17:30", primary: dr.wang, backup: dr.chen}
          - {days: daily, hours: "17:30-08:00", primary: dr.zhang}
          - {from: "2026-12-24 17:30", to: "2026-12-25 08:00", primary: dr.liu}
      duty_office:                      # 总值班室: the last step of every department's chain
        shifts: [{days: daily, hours: "00:00-24:00", primary: duty.chen}]

:func:`on_call_chain` turns it into the people to page, in order — the department's primary,
its backup, its supervisor, the duty office — and :func:`paging_policy_of` into how long to
wait for an acknowledgement before the next (default 5 minutes, then 10).
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)
from sqlalchemy import delete
from sqlmodel import Session, col, select

from suifang.core.channels import Channel
from suifang.core.db import utcnow
from suifang.core.errors import ValidationFailed
from suifang.core.models import (
    DUTY_OFFICE,
    Department,
    OnCallShift,
    PagingPolicy,
    StaffContact,
    StaffUser,
)
from suifang.core.security.crypto import blind_index
from suifang.core.timezones import IanaTimezone
from suifang.tickets.sla import parse_working_time

__all__ = [
    "DEFAULT_ESCALATION",
    "DEFAULT_PAGE_CHANNELS",
    "ChainMember",
    "Paging",
    "RosterFile",
    "import_roster",
    "on_call_chain",
    "paging_policy_of",
    "roster_view",
    "staff_addresses",
    "staff_channels",
]

DEFAULT_PAGE_CHANNELS = ("sms", "voice", "wechat", "webhook", "email", "outbox")
"""Pages go out on the first of these the person can be reached on (and that is set up)."""
DEFAULT_ESCALATION = (dt.timedelta(minutes=5), dt.timedelta(minutes=10))
"""Primary → next after 5 minutes without an acknowledgement, then every 10 minutes."""
DEFAULT_REPEAT_FINAL = 3
_DAYS = {"mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6}
_DAY_SETS = {
    "daily": list(range(7)),
    "weekdays": [0, 1, 2, 3, 4],
    "weekends": [5, 6],
}
_HOURS = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
_Username = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]*$", max_length=64)]
_SYSTEM = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$", max_length=32)]


# --------------------------------------------------------------------------- the file


class ContactIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    system: _SYSTEM = Field(description="phone, email, wechat, app, or a channel's own system.")
    value: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=256)]


class StaffIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: _Username
    display_name: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)
    ]
    role: Literal["admin", "agent", "nurse", "doctor", "integrator", "auditor"] = "doctor"
    departments: list[str] = Field(default_factory=list)
    contacts: list[ContactIn] = Field(default_factory=list)


class PagingIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channels: list[Annotated[str, StringConstraints(min_length=1, max_length=32)]] = Field(
        default_factory=lambda: list(DEFAULT_PAGE_CHANNELS)
    )
    escalate_after: list[dt.timedelta] = Field(default_factory=lambda: list(DEFAULT_ESCALATION))
    repeat_final: int = Field(DEFAULT_REPEAT_FINAL, ge=0, le=20)

    @field_validator("escalate_after", mode="before")
    @classmethod
    def _durations(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [parse_working_time(item) for item in value]
        return value

    @field_validator("escalate_after")
    @classmethod
    def _sensible(cls, value: list[dt.timedelta]) -> list[dt.timedelta]:
        if not value:
            raise ValueError("give at least one delay, e.g. [5m, 10m]")
        for delay in value:
            if not dt.timedelta(seconds=30) <= delay <= dt.timedelta(hours=2):
                raise ValueError(
                    f"{delay} is not between 30s and 2h: an emergency cannot wait longer"
                )
        return value


class ShiftIn(BaseModel):
    """A line of the roster: dated (from/to) or weekly (days + hours)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_: dt.datetime | None = Field(None, alias="from")
    to: dt.datetime | None = None
    days: str | list[str] | None = None
    hours: str | None = None
    primary: _Username | None = None
    backup: _Username | None = None
    supervisor: _Username | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> ShiftIn:
        dated = self.from_ is not None or self.to is not None
        weekly = self.days is not None or self.hours is not None
        if dated and weekly:
            raise ValueError("a shift is dated (from/to) or weekly (days/hours), not both")
        if not dated and not weekly:
            raise ValueError("give from/to for a dated shift or days/hours for a weekly one")
        if dated and (self.from_ is None or self.to is None):
            raise ValueError("a dated shift needs both from and to")
        if dated and self.to <= self.from_:  # type: ignore[operator]
            raise ValueError(f"to ({self.to}) must be after from ({self.from_})")
        if weekly:
            if self.days is None or self.hours is None:
                raise ValueError("a weekly shift needs both days and hours")
            self.weekdays()
            self.times()
        if not (self.primary or self.backup or self.supervisor):
            raise ValueError("name at least one of primary, backup, supervisor")
        return self

    def weekdays(self) -> list[int]:
        spec = self.days
        items = spec if isinstance(spec, list) else [part.strip() for part in str(spec).split(",")]
        days: list[int] = []
        for item in items:
            item = item.lower().strip()
            if item in _DAY_SETS:
                days.extend(_DAY_SETS[item])
            elif "-" in item:
                first, _, last = item.partition("-")
                if first not in _DAYS or last not in _DAYS:
                    raise ValueError(f"days: {item!r} is not a range like mon-fri")
                start, end = _DAYS[first], _DAYS[last]
                days.extend(
                    range(start, end + 1)
                    if start <= end
                    else [*range(start, 7), *range(0, end + 1)]
                )
            elif item in _DAYS:
                days.append(_DAYS[item])
            else:
                raise ValueError(
                    f"days: {item!r} is not a day (mon…sun), a range (mon-fri), "
                    "daily, weekdays or weekends"
                )
        return sorted(set(days))

    def times(self) -> tuple[str, str]:
        match = _HOURS.match(self.hours or "")
        if match is None:
            raise ValueError(f"hours: {self.hours!r} is not like 08:00-17:30")
        h1, m1, h2, m2 = (int(part) for part in match.groups())
        if not (0 <= h1 <= 23 and 0 <= m1 <= 59 and 0 <= h2 <= 24 and 0 <= m2 <= 59) or (
            h2 == 24 and m2
        ):
            raise ValueError(f"hours: {self.hours!r} has an impossible time")
        if (h1, m1) == (h2, m2):
            raise ValueError(f"hours: {self.hours!r} starts and ends at the same time")
        return f"{h1:02d}:{m1:02d}", f"{h2:02d}:{m2:02d}"


class DepartmentRosterIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    paging: PagingIn | None = None
    primary: _Username | None = None
    backup: _Username | None = None
    supervisor: _Username | None = None
    shifts: list[ShiftIn] = Field(default_factory=list)


class RosterFile(BaseModel):
    """A roster import: staff, and per department its paging policy and shifts."""

    model_config = ConfigDict(extra="forbid")

    timezone: IanaTimezone = "Asia/Shanghai"
    staff: list[StaffIn] = Field(default_factory=list)
    departments: dict[
        Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=64)],
        DepartmentRosterIn,
    ] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _unique_staff(self) -> RosterFile:
        seen: set[str] = set()
        for person in self.staff:
            if person.username in seen:
                raise ValueError(f"staff: {person.username!r} is listed twice")
            seen.add(person.username)
        return self


# --------------------------------------------------------------------------- importing


def staff_channels(classes: Mapping[str, type[Channel]]) -> list[str]:
    """The installed channels that can reach a member of staff (``Channel.reaches_staff``)."""
    return sorted(name for name, channel in classes.items() if channel.reaches_staff)


def import_roster(
    session: Session,
    roster: RosterFile,
    *,
    known_channels: Sequence[str] | None = None,
) -> dict[str, int]:
    """Apply ``roster``: staff (and their contacts) upserted, each named department's shifts
    and paging policy replaced, all in one transaction; nothing changes if anything is wrong.

    Returns counts (staff, shifts, departments). Raises ValidationFailed naming every problem.
    """
    problems: list[str] = []
    departments = {d.code for d in session.exec(select(Department)).all()}
    existing = {u.username for u in session.exec(select(StaffUser)).all()}
    named = {person.username for person in roster.staff}
    for person in roster.staff:
        for code in person.departments:
            if code not in departments:
                problems.append(f"staff {person.username}: unknown department {code!r}")
        # Compared as stored (the blind index normalises phones, case and spaces): a contact
        # given twice once broke the table's uniqueness, a 500.
        seen_contacts: set[str] = set()
        for index, contact in enumerate(person.contacts):
            key = blind_index(contact.system, contact.value)
            if key in seen_contacts:
                problems.append(
                    f"staff {person.username}: contacts[{index}] repeats an earlier "
                    f"{contact.system} contact"
                )
            seen_contacts.add(key)
    zone = roster.timezone
    lines: list[OnCallShift] = []
    for code, plan in roster.departments.items():
        if code not in departments:
            problems.append(f"departments.{code}: no such department (see GET /departments)")
            continue
        if plan.paging and known_channels is not None:
            for name in plan.paging.channels:
                if name not in known_channels:
                    problems.append(
                        f"departments.{code}.paging.channels: {name!r} is not an installed "
                        f"channel that reaches staff; those that do: {', '.join(known_channels)}"
                    )
        for role in ("primary", "backup", "supervisor"):
            holder = getattr(plan, role)
            if holder is not None:
                lines.append(
                    OnCallShift(department_code=code, role=role, username=holder, timezone=zone)
                )
        for shift in plan.shifts:
            for role in ("primary", "backup", "supervisor"):
                holder = getattr(shift, role)
                if holder is None:
                    continue
                line = OnCallShift(department_code=code, role=role, username=holder, timezone=zone)
                if shift.from_ is not None:
                    line.starts_at = _aware(shift.from_, zone)
                    line.ends_at = _aware(shift.to, zone)  # type: ignore[arg-type]
                else:
                    line.weekdays = shift.weekdays()
                    line.start_time, line.end_time = shift.times()
                lines.append(line)
        problems.extend(_overlaps(code, [line for line in lines if line.department_code == code]))
    for line in lines:
        if line.username not in named and line.username not in existing:
            problems.append(
                f"departments.{line.department_code}: {line.username!r} is not a member of staff "
                "(add them under staff: or with `suifang users add`)"
            )
    if problems:
        raise ValidationFailed("invalid roster\n  " + "\n  ".join(dict.fromkeys(problems)))

    for person in roster.staff:
        user = session.exec(select(StaffUser).where(StaffUser.username == person.username)).first()
        if user is None:
            user = StaffUser(
                username=person.username, display_name=person.display_name, role=person.role
            )
        user.display_name = person.display_name
        user.role = person.role
        user.departments = list(person.departments)
        session.add(user)
        session.flush()
        if person.contacts:
            session.exec(delete(StaffContact).where(col(StaffContact.user_id) == user.id))  # type: ignore[call-overload]
            for rank, contact in enumerate(person.contacts, start=1):
                session.add(
                    StaffContact(
                        user_id=user.id,  # type: ignore[arg-type]
                        system=contact.system,
                        value=contact.value,
                        value_hash=blind_index(contact.system, contact.value),
                        rank=rank,
                    )
                )
    for code, plan in roster.departments.items():
        session.exec(delete(OnCallShift).where(col(OnCallShift.department_code) == code))  # type: ignore[call-overload]
        if plan.paging is not None:
            policy = session.get(PagingPolicy, code) or PagingPolicy(department_code=code)
            policy.channels = list(plan.paging.channels)
            policy.escalate_after_seconds = [
                int(d.total_seconds()) for d in plan.paging.escalate_after
            ]
            policy.repeat_final = plan.paging.repeat_final
            policy.updated_at = utcnow()
            session.add(policy)
    for line in lines:
        session.add(line)
    session.commit()
    return {
        "staff": len(roster.staff),
        "shifts": len(lines),
        "departments": len(roster.departments),
    }


def _aware(value: dt.datetime, zone: str) -> dt.datetime:
    if value.tzinfo is None:
        value = value.replace(tzinfo=ZoneInfo(zone))
    return value.astimezone(dt.UTC)


def _overlaps(code: str, lines: list[OnCallShift]) -> list[str]:
    """Two dated lines for one role that overlap: which one pages would be a guess."""
    problems = []
    dated = sorted(
        (line for line in lines if line.starts_at is not None),
        key=lambda line: (line.role, line.starts_at),
    )
    for first, second in itertools.pairwise(dated):
        if first.role == second.role and second.starts_at < first.ends_at:  # type: ignore[operator]
            problems.append(
                f"departments.{code}.shifts: two {first.role} shifts overlap "
                f"({first.username} until {first.ends_at:%Y-%m-%d %H:%M} UTC, "
                f"{second.username} from {second.starts_at:%Y-%m-%d %H:%M} UTC)"
            )
    return problems


# --------------------------------------------------------------------------- who is on call


@dataclass(frozen=True, slots=True)
class ChainMember:
    department: str
    role: str
    username: str
    display_name: str


@dataclass(frozen=True, slots=True)
class Paging:
    """A department's paging policy, resolved (defaults filled in)."""

    channels: tuple[str, ...]
    escalate_after: tuple[dt.timedelta, ...]
    repeat_final: int

    def delay(self, step: int) -> dt.timedelta:
        """How long to wait for an acknowledgement after page number ``step`` (0-based)."""
        return self.escalate_after[min(step, len(self.escalate_after) - 1)]


def _weekly_holds(line: OnCallShift, at: dt.datetime) -> bool:
    local = at.astimezone(ZoneInfo(line.timezone))
    start = dt.time.fromisoformat(line.start_time or "00:00")
    end_text = line.end_time or "24:00"
    days = line.weekdays or []
    now = local.time()
    if end_text == "24:00":
        return local.weekday() in days and now >= start
    end = dt.time.fromisoformat(end_text)
    if start < end:
        return local.weekday() in days and start <= now < end
    # Overnight (17:30-08:00): the evening belongs to its own day, the morning to the day before.
    if now >= start:
        return local.weekday() in days
    return now < end and (local.weekday() - 1) % 7 in days


def holder(session: Session, department: str, role: str, at: dt.datetime) -> str | None:
    """Who holds ``role`` in ``department`` at ``at``: dated line, else weekly, else standing."""
    lines = session.exec(
        select(OnCallShift)
        .where(OnCallShift.department_code == department, OnCallShift.role == role)
        .order_by(col(OnCallShift.id).desc())
    ).all()
    for line in lines:
        if line.starts_at is not None and line.starts_at <= at < line.ends_at:  # type: ignore[operator]
            return line.username
    for line in lines:
        if line.weekdays is not None and _weekly_holds(line, at):
            return line.username
    for line in lines:
        if line.starts_at is None and line.weekdays is None:
            return line.username
    return None


def on_call_chain(session: Session, department: str, at: dt.datetime) -> list[ChainMember]:
    """The people to page for ``department`` at ``at``, in order, each once: its primary,
    backup and supervisor, then the duty office's primary and backup. Inactive or unknown
    accounts are skipped."""
    steps = [(department, "primary"), (department, "backup"), (department, "supervisor")]
    if department != DUTY_OFFICE:
        steps += [(DUTY_OFFICE, "primary"), (DUTY_OFFICE, "backup")]
    chain: list[ChainMember] = []
    seen: set[str] = set()
    for code, role in steps:
        username = holder(session, code, role, at)
        if username is None or username in seen:
            continue
        user = session.exec(select(StaffUser).where(StaffUser.username == username)).first()
        if user is None or not user.active:
            continue
        seen.add(username)
        chain.append(ChainMember(code, role, username, user.display_name))
    return chain


def paging_policy_of(session: Session, department: str) -> Paging:
    policy = session.get(PagingPolicy, department)
    if policy is None:
        return Paging(DEFAULT_PAGE_CHANNELS, DEFAULT_ESCALATION, DEFAULT_REPEAT_FINAL)
    delays = (
        tuple(dt.timedelta(seconds=s) for s in policy.escalate_after_seconds) or DEFAULT_ESCALATION
    )
    return Paging(tuple(policy.channels) or DEFAULT_PAGE_CHANNELS, delays, policy.repeat_final)


def staff_addresses(session: Session, username: str) -> dict[str, str]:
    """A member of staff's contact values by system, the first-ranked of each."""
    user = session.exec(select(StaffUser).where(StaffUser.username == username)).first()
    if user is None:
        return {}
    contacts = session.exec(
        select(StaffContact)
        .where(StaffContact.user_id == user.id)
        .order_by(col(StaffContact.rank), col(StaffContact.id))
    ).all()
    addresses: dict[str, str] = {}
    for contact in contacts:
        addresses.setdefault(contact.system, contact.value)
    return addresses


def roster_view(session: Session, department: str, at: dt.datetime) -> dict[str, Any]:
    """What ``suifang oncall show`` and ``GET /oncall/{department}`` say."""
    policy = paging_policy_of(session, department)
    return {
        "department": department,
        "at": at,
        "chain": [
            {
                "role": m.role,
                "department": m.department,
                "username": m.username,
                "name": m.display_name,
            }
            for m in on_call_chain(session, department, at)
        ],
        "channels": list(policy.channels),
        "escalate_after_minutes": [d.total_seconds() / 60 for d in policy.escalate_after],
        "repeat_final": policy.repeat_final,
    }
