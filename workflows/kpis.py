"""Follow-up KPIs per period, department and pathway: what hospitals are scored on.

Every KPI carries its value, numerator and denominator (a report shows "92.0% (230/250)") and a
``definition``. ``docs/kpis.md`` explains them with examples; in short:

Period
    ``start`` and ``end`` are calendar dates, both included, in the hospital's timezone
    (``Asia/Shanghai`` by default): 1–30 Nov is [1 Nov 00:00, 1 Dec 00:00) local time. Each KPI
    says which timestamp must fall in the period. ``as_of`` (default: now) is when the report
    is made: outcomes not known yet at ``as_of`` are left out of numerator and denominator and
    counted as ``pending``.

Filters
    ``department`` and the caller's scope ``departments`` (None = all) apply to the journey's
    department (enrollment; for discharges, the encounter) and to the ticket's current
    department (its queue). ``pathway`` applies to the enrollment; tickets match through their
    ``enrollment_id`` (tickets without a journey drop out when a pathway is given).

KPIs
    follow_up_coverage (随访覆盖率)
        Enrollments reached by at least one touchpoint due in the period (and by ``as_of``) —
        status sent, answered or missed — ÷ enrollments with a touchpoint due in the period.
        Pending: enrollments whose only due touchpoints are still waiting to go out (quiet
        hours, a send in flight). Touchpoints that fell due before the patient was enrolled
        are no opportunity and are ignored.
    discharges_enrolled (出院患者入组率)
        Encounters discharged in the period with at least one enrollment (in ``pathway``, if
        given) ÷ encounters discharged in the period (department = the encounter's).
    response_rate (应答率)
        Touchpoints answered ÷ touchpoints whose answer window has closed (answered + missed),
        due in the period. Informational touchpoints and questions still waiting for an answer
        (status sent) are not counted; a late answer to a missed touchpoint does not count.
    lost_to_follow_up_rate (失访率)
        Enrollments that ended as ``lost`` ÷ enrollments that ended in the period (completed,
        lost or stopped; ``ended_at`` in the period).
    alert_rate, alert_rate_l1/l2/l3 (预警率)
        Alerts raised in the period (``created_at``) per 100 touchpoints answered in the period
        (``answered_at``), overall and by tier.
    first_response_sla / resolution_sla (首次响应/解决时限达标率)
        Tickets opened in the period and routed to a department (L1 automatic answers start no
        SLA clock) whose first response (resolution) was made without breaching its target ÷
        those whose outcome is known: met, or breached (a recorded breach, or a clock still
        running past its due time). Tickets whose clock is still within its target, paused
        (waiting on the patient) or not started are ``pending``; a reopened ticket's
        resolution is pending again until it is resolved once more. The ticket read model
        clears ``first_response_due``/``resolution_due`` once a clock is met, so "due in the
        period" cannot be reconstructed: the period rule is the ticket's ``opened_at``.
    time_to_first_response_median / _p90 (首次响应时长)
        Minutes from ``opened_at`` to ``first_response_at`` (wall clock, not business hours)
        over the tickets of the first-response SLA KPI that have a first response (met or
        breached): the median and the 90th percentile (nearest rank). ``denominator`` is how
        many tickets were measured.
    tickets_opened (工单量)
        Tickets opened in the period; ``tickets_by_category`` and ``tickets_by_department``
        split them (``unrouted``: no department yet, e.g. answered automatically at L1).
    readmission_30d (30天再入院率)
        Discharges (encounters) in the period with an enrollment, whose 30-day window has
        closed by ``as_of``, that have an enrollment with ``readmitted_at`` within 30 days of
        discharge ÷ those discharges. Discharges less than 30 days before ``as_of`` are pending.
        Staff record a readmission with ``suifang journeys readmitted ID [--at TIME]`` or
        ``POST /journeys/{id}/readmitted``, also after the journey has ended.
    satisfaction_mean / satisfaction_rate (满意度 / 满意率)
        Tickets scored in the period (time of their latest satisfaction score, else
        ``closed_at``): the mean score (numerator: the sum of the scores; denominator: how
        many tickets) and the share scored 4 or 5.
"""

from __future__ import annotations

import datetime as dt
import math
import statistics
from collections import Counter
from dataclasses import dataclass
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field, computed_field
from sqlalchemy import and_, case
from sqlmodel import Session, col, func, select

from suifang.core.db import utcnow
from suifang.core.enums import JourneyStatus, TouchpointStatus
from suifang.core.errors import NotFoundError, ValidationFailed
from suifang.core.models import (
    Alert,
    Department,
    Encounter,
    Enrollment,
    Ticket,
    TicketEvent,
    TouchpointRecord,
)
from suifang.core.timezones import check_timezone

__all__ = [
    "KPI_DEFINITIONS",
    "Kpi",
    "KpiDefinition",
    "KpiReport",
    "compute_kpis",
    "filter_problems",
    "period_window",
]

Unit = Literal["percent", "per_100", "minutes", "score", "count"]

READMISSION_WINDOW = dt.timedelta(days=30)
SATISFIED_SCORE = 4
"""Scores 4 and 5 count as satisfied (top-two box; the ticket core reopens below 3)."""
UNROUTED = "unrouted"

_REACHED = (TouchpointStatus.SENT, TouchpointStatus.ANSWERED, TouchpointStatus.MISSED)
_SETTLED = (TouchpointStatus.ANSWERED, TouchpointStatus.MISSED)
_ENDED = (JourneyStatus.COMPLETED, JourneyStatus.LOST, JourneyStatus.STOPPED)


class KpiDefinition(BaseModel):
    key: str
    name: str
    name_zh: str
    unit: Unit
    short: str = Field(description="Numerator / denominator in a few words, for tables.")
    definition: str


def _d(key: str, name: str, name_zh: str, unit: Unit, short: str, definition: str) -> KpiDefinition:
    return KpiDefinition(
        key=key, name=name, name_zh=name_zh, unit=unit, short=short, definition=definition
    )


_TIER_RATE = (
    "{tier} alerts raised in the period (created_at) per 100 touchpoints answered in the "
    "period (answered_at)."
)

#: Every KPI, in report order.
KPI_DEFINITIONS: dict[str, KpiDefinition] = {
    d.key: d
    for d in (
        _d(
            "follow_up_coverage",
            "Follow-up coverage",
            "随访覆盖率",
            "percent",
            "enrollments reached / enrollments with a touchpoint due",
            "Enrollments reached by at least one touchpoint due in the period (sent, answered "
            "or missed) ÷ enrollments with a touchpoint due in the period. Enrollments whose "
            "due touchpoints are all still waiting to go out are pending; touchpoints due "
            "before the patient was enrolled are ignored.",
        ),
        _d(
            "discharges_enrolled",
            "Discharges enrolled",
            "出院患者入组率",
            "percent",
            "discharges with an enrollment / discharges",
            "Encounters discharged in the period that have an enrollment (in the pathway, if "
            "one is given) ÷ encounters discharged in the period (encounter department).",
        ),
        _d(
            "response_rate",
            "Response rate",
            "应答率",
            "percent",
            "answered / answered + missed",
            "Touchpoints due in the period that were answered ÷ touchpoints due in the period "
            "that were sent, expected an answer and whose answer window closed (answered or "
            "missed). Informational touchpoints and questions still awaiting an answer are "
            "not counted.",
        ),
        _d(
            "lost_to_follow_up_rate",
            "Lost to follow-up",
            "失访率",
            "percent",
            "ended as lost / enrollments ended",
            "Enrollments that ended in the period (ended_at) with status lost ÷ enrollments "
            "that ended in the period (completed, lost or stopped).",
        ),
        _d(
            "alert_rate",
            "Alert rate",
            "预警率",
            "per_100",
            "alerts / 100 answered touchpoints",
            _TIER_RATE.format(tier="All"),
        ),
        _d(
            "alert_rate_l1",
            "Alert rate L1",
            "预警率(L1)",
            "per_100",
            "L1 alerts / 100 answered touchpoints",
            _TIER_RATE.format(tier="L1"),
        ),
        _d(
            "alert_rate_l2",
            "Alert rate L2",
            "预警率(L2)",
            "per_100",
            "L2 alerts / 100 answered touchpoints",
            _TIER_RATE.format(tier="L2"),
        ),
        _d(
            "alert_rate_l3",
            "Alert rate L3",
            "预警率(L3)",
            "per_100",
            "L3 alerts / 100 answered touchpoints",
            _TIER_RATE.format(tier="L3"),
        ),
        _d(
            "first_response_sla",
            "First response within SLA",
            "首次响应达标率",
            "percent",
            "met / met + breached",
            "Tickets opened in the period and routed to a department whose first response "
            "was made without breaching its target ÷ those whose outcome is known (met, or "
            "breached: a recorded breach or no response after the due time). Tickets still "
            "within their target, waiting on the patient or not routed yet are pending.",
        ),
        _d(
            "resolution_sla",
            "Resolution within SLA",
            "解决时限达标率",
            "percent",
            "met / met + breached",
            "Tickets opened in the period and routed to a department that were resolved "
            "without breaching the resolution target ÷ those whose outcome is known (resolved, "
            "or breached: a recorded breach or unresolved after the due time). Open tickets "
            "within their target or waiting on the patient, and reopened ones, are pending.",
        ),
        _d(
            "time_to_first_response_median",
            "Time to first response (median)",
            "首次响应时长(中位数)",
            "minutes",
            "median minutes, n = tickets",
            "Median of first_response_at − opened_at in minutes (wall clock) over the tickets "
            "of the first-response SLA KPI that have a first response (met or breached).",
        ),
        _d(
            "time_to_first_response_p90",
            "Time to first response (p90)",
            "首次响应时长(P90)",
            "minutes",
            "90th percentile minutes, n = tickets",
            "90th percentile (nearest rank) of first_response_at − opened_at in minutes (wall "
            "clock) over the tickets of the first-response SLA KPI that have a first response.",
        ),
        _d(
            "tickets_opened",
            "Tickets opened",
            "工单量",
            "count",
            "tickets opened",
            "Tickets opened in the period (opened_at), split by category and by department.",
        ),
        _d(
            "readmission_30d",
            "30-day readmission",
            "30天再入院率",
            "percent",
            "readmitted ≤30 d / discharges with 30 d elapsed",
            "Discharges (encounters) in the period with an enrollment and a closed 30-day "
            "window that have an enrollment with readmitted_at within 30 days of discharge ÷ "
            "those discharges. Discharges less than 30 days before the report time are pending.",
        ),
        _d(
            "satisfaction_mean",
            "Satisfaction (mean)",
            "平均满意度",
            "score",
            "mean score 1–5, n = tickets scored",
            "Mean satisfaction score (1–5) of tickets scored in the period (time of the latest "
            "score, else closed_at).",
        ),
        _d(
            "satisfaction_rate",
            "Satisfied",
            "满意率",
            "percent",
            "scored 4–5 / tickets scored",
            "Tickets scored 4 or 5 ÷ tickets scored in the period (time of the latest score, "
            "else closed_at).",
        ),
    )
}


class Kpi(BaseModel):
    key: str
    name: str
    name_zh: str
    unit: Unit
    value: float | None = Field(
        description="percent (0–100), per 100, minutes, mean score or count; None if no data."
    )
    numerator: int | None = Field(description="None for minutes; for a mean score, the sum.")
    denominator: int | None = Field(
        description="For minutes and mean scores: how many tickets were measured."
    )
    pending: int = Field(0, description="Left out: outcome not known yet at the report time.")
    short: str
    definition: str

    @property
    def value_text(self) -> str:
        """The value alone, e.g. ``92.0%``, ``12 min``, ``4.25``; ``—`` without data."""
        v = self.value
        if self.unit == "count":
            return str(self.numerator)
        if v is None:
            return "—"
        return {
            "percent": f"{v:.1f}%",
            "per_100": f"{v:.1f} per 100",
            "minutes": f"{v:.0f} min",
            "score": f"{v:.2f}",
        }[self.unit]

    @property
    def counts_text(self) -> str:
        """Numerator/denominator (``230/250``), or the sample size (``n=12``) of a median or
        mean (whose numerator, for a mean, is the sum)."""
        if self.unit == "count":
            return ""
        if self.numerator is None or self.unit == "score":
            return f"n={self.denominator}"
        return f"{self.numerator}/{self.denominator}"

    @computed_field  # type: ignore[prop-decorator]
    @property
    def display(self) -> str:
        """The value as a report shows it, e.g. ``92.0% (230/250)``."""
        counts = self.counts_text
        return f"{self.value_text} ({counts})" if counts else self.value_text


class KpiReport(BaseModel):
    start: dt.date
    end: dt.date
    timezone: str
    window_start: dt.datetime = Field(description="First instant of the period (UTC).")
    window_end: dt.datetime = Field(description="First instant after the period (UTC).")
    as_of: dt.datetime = Field(description="When the report was made: later events are pending.")
    department: str | None
    pathway: str | None
    scope: list[str] | None = Field(description="The caller's departments; None: all.")
    kpis: list[Kpi]
    tickets_by_category: dict[str, int]
    tickets_by_department: dict[str, int]

    def kpi(self, key: str) -> Kpi:
        for kpi in self.kpis:
            if kpi.key == key:
                return kpi
        raise NotFoundError(f"no KPI {key!r}")


def _kpi(
    key: str,
    value: float | None,
    numerator: int | None,
    denominator: int | None,
    pending: int = 0,
) -> Kpi:
    spec = KPI_DEFINITIONS[key]
    return Kpi(
        key=key,
        name=spec.name,
        name_zh=spec.name_zh,
        unit=spec.unit,
        value=None if value is None else round(value, 2),
        numerator=numerator,
        denominator=denominator,
        pending=pending,
        short=spec.short,
        definition=spec.definition,
    )


def _rate(key: str, numerator: int, denominator: int, scale: float = 100, pending: int = 0) -> Kpi:
    value = numerator * scale / denominator if denominator else None
    return _kpi(key, value, numerator, denominator, pending)


def period_window(start: dt.date, end: dt.date, timezone: str) -> tuple[dt.datetime, dt.datetime]:
    """[start 00:00, end + 1 day 00:00) in ``timezone``, as UTC instants."""
    if start > end:
        raise ValidationFailed(f"the period starts ({start}) after it ends ({end})")
    try:
        zone = ZoneInfo(check_timezone(timezone))
    except ValueError as exc:
        raise ValidationFailed(str(exc)) from None
    try:
        first = dt.datetime.combine(start, dt.time(0), tzinfo=zone).astimezone(dt.UTC)
        after = dt.datetime.combine(end + dt.timedelta(days=1), dt.time(0), tzinfo=zone)
        return first, after.astimezone(dt.UTC)
    except OverflowError:
        raise ValidationFailed(
            f"the period {start} – {end} is out of range (years 2 to 9998)"
        ) from None


def filter_problems(
    session: Session, *, department: str | None, pathway: str | None, pathways: list[str]
) -> dict[str, str]:
    """What is wrong with the filters, by name: an unknown department or pathway.

    A pathway is known if the catalog has it (``pathways``) or a journey was ever enrolled in
    it (a template since removed still has history to report on).
    """
    problems: dict[str, str] = {}
    if department and session.get(Department, department) is None:
        problems["department"] = f"unknown department {department!r}"
    if (
        pathway
        and pathway not in pathways
        and session.exec(select(Enrollment.id).where(Enrollment.pathway_id == pathway)).first()
        is None
    ):
        known = ", ".join(sorted(pathways)) or "none"
        problems["pathway"] = f"unknown pathway {pathway!r} (known: {known})"
    return problems


@dataclass(frozen=True)
class _Filters:
    department: str | None
    pathway: str | None
    scope: list[str] | None

    def enrollments(self, stmt: Any) -> Any:
        """``stmt`` (which selects from or joins Enrollment) narrowed to the filters."""
        if self.department is not None:
            stmt = stmt.where(Enrollment.department_code == self.department)
        if self.scope is not None:
            stmt = stmt.where(col(Enrollment.department_code).in_(self.scope))
        if self.pathway is not None:
            stmt = stmt.where(Enrollment.pathway_id == self.pathway)
        return stmt

    def encounters(self, stmt: Any) -> Any:
        if self.department is not None:
            stmt = stmt.where(Encounter.department_code == self.department)
        if self.scope is not None:
            stmt = stmt.where(col(Encounter.department_code).in_(self.scope))
        return stmt

    def tickets(self, stmt: Any) -> Any:
        if self.department is not None:
            stmt = stmt.where(Ticket.department_code == self.department)
        if self.scope is not None:
            stmt = stmt.where(col(Ticket.department_code).in_(self.scope))
        if self.pathway is not None:
            stmt = stmt.join(Enrollment, col(Ticket.enrollment_id) == Enrollment.id).where(
                Enrollment.pathway_id == self.pathway
            )
        return stmt


def compute_kpis(
    session: Session,
    *,
    start: dt.date,
    end: dt.date,
    department: str | None = None,
    pathway: str | None = None,
    departments: list[str] | None = None,
    timezone: str = "Asia/Shanghai",
    as_of: dt.datetime | None = None,
) -> KpiReport:
    """Every KPI for ``start``–``end`` (dates, both included, in ``timezone``).

    ``departments`` is the caller's scope (None: every department); ``department`` narrows
    further. A fixed number of aggregate queries, whatever the number of journeys.
    """
    lo, hi = period_window(start, end, timezone)
    as_of = (as_of or utcnow()).astimezone(dt.UTC)
    f = _Filters(department or None, pathway or None, departments)
    kpis: list[Kpi] = []
    kpis += _journey_kpis(session, f, lo, hi, as_of)
    ticket_kpis, by_category, by_department = _ticket_kpis(session, f, lo, hi, as_of)
    kpis += ticket_kpis
    kpis.append(_readmission(session, f, lo, hi, as_of))
    kpis += _satisfaction(session, f, lo, hi)
    order = list(KPI_DEFINITIONS)
    kpis.sort(key=lambda k: order.index(k.key))
    return KpiReport(
        start=start,
        end=end,
        timezone=timezone,
        window_start=lo,
        window_end=hi,
        as_of=as_of,
        department=f.department,
        pathway=f.pathway,
        scope=departments,
        kpis=kpis,
        tickets_by_category=by_category,
        tickets_by_department=by_department,
    )


# --------------------------------------------------------------------------- journeys


def _journey_kpis(
    session: Session, f: _Filters, lo: dt.datetime, hi: dt.datetime, as_of: dt.datetime
) -> list[Kpi]:
    tp = TouchpointRecord
    due_by = min(hi, as_of)

    # Coverage: per enrollment with a touchpoint due in the period, did any of them go out?
    went_out = col(tp.status).in_(_REACHED)
    waiting = tp.status == TouchpointStatus.SCHEDULED
    per_enrollment = (
        f.enrollments(
            select(
                tp.enrollment_id,
                func.max(case((went_out, 1), else_=0)).label("reached"),
                func.max(case((waiting, 1), else_=0)).label("waiting"),
            )
            .join(Enrollment, col(tp.enrollment_id) == Enrollment.id)
            .where(tp.due_at >= lo, tp.due_at < due_by, tp.due_at >= Enrollment.enrolled_at)
        )
        .group_by(tp.enrollment_id)
        .subquery()
    )
    due_enrollments, reached, coverage_pending = session.exec(
        select(
            func.count(),
            func.coalesce(func.sum(per_enrollment.c.reached), 0),
            func.coalesce(
                func.sum(
                    case(
                        (and_(per_enrollment.c.reached == 0, per_enrollment.c.waiting == 1), 1),
                        else_=0,
                    )
                ),
                0,
            ),
        ).select_from(per_enrollment)
    ).one()

    # Discharges enrolled.
    has_enrollment = select(Enrollment.id).where(Enrollment.encounter_id == Encounter.id)
    if f.pathway is not None:
        has_enrollment = has_enrollment.where(Enrollment.pathway_id == f.pathway)
    discharges = f.encounters(
        select(func.count())
        .select_from(Encounter)
        .where(Encounter.discharged_at >= lo, Encounter.discharged_at < hi)
    )
    discharged = session.exec(discharges).one()
    enrolled = session.exec(discharges.where(has_enrollment.exists())).one()

    # Response rate: settled touchpoints due in the period.
    settled = dict(
        session.exec(
            f.enrollments(
                select(tp.status, func.count())
                .join(Enrollment, col(tp.enrollment_id) == Enrollment.id)
                .where(tp.due_at >= lo, tp.due_at < hi, col(tp.status).in_(_SETTLED))
            ).group_by(tp.status)
        ).all()
    )
    answered_due = settled.get(TouchpointStatus.ANSWERED, 0)
    missed_due = settled.get(TouchpointStatus.MISSED, 0)

    # Lost to follow-up: journeys that ended in the period.
    ended = dict(
        session.exec(
            f.enrollments(
                select(Enrollment.status, func.count()).where(
                    Enrollment.ended_at >= lo,  # type: ignore[operator]
                    Enrollment.ended_at < hi,  # type: ignore[operator]
                    col(Enrollment.status).in_(_ENDED),
                )
            ).group_by(Enrollment.status)
        ).all()
    )

    # Alert rate: alerts raised per 100 touchpoints answered in the period.
    answered_in_period = session.exec(
        f.enrollments(
            select(func.count())
            .select_from(tp)
            .join(Enrollment, col(tp.enrollment_id) == Enrollment.id)
            .where(
                tp.status == TouchpointStatus.ANSWERED,
                tp.answered_at >= lo,  # type: ignore[operator]
                tp.answered_at < hi,  # type: ignore[operator]
            )
        )
    ).one()
    alerts = dict(
        session.exec(
            f.enrollments(
                select(Alert.tier, func.count())
                .join(Enrollment, col(Alert.enrollment_id) == Enrollment.id)
                .where(Alert.created_at >= lo, Alert.created_at < hi)
            ).group_by(Alert.tier)
        ).all()
    )

    return [
        _rate(
            "follow_up_coverage",
            reached,
            due_enrollments - coverage_pending,
            pending=coverage_pending,
        ),
        _rate("discharges_enrolled", enrolled, discharged),
        _rate("response_rate", answered_due, answered_due + missed_due),
        _rate("lost_to_follow_up_rate", ended.get(JourneyStatus.LOST, 0), sum(ended.values())),
        _rate("alert_rate", sum(alerts.values()), answered_in_period),
        *(
            _rate(f"alert_rate_{tier.lower()}", alerts.get(tier, 0), answered_in_period)
            for tier in ("L1", "L2", "L3")
        ),
    ]


def _readmission(
    session: Session, f: _Filters, lo: dt.datetime, hi: dt.datetime, as_of: dt.datetime
) -> Kpi:
    closed_before = as_of - READMISSION_WINDOW
    base = f.enrollments(
        select(func.count(func.distinct(Enrollment.encounter_id)))
        .select_from(Enrollment)
        .join(Encounter, col(Enrollment.encounter_id) == Encounter.id)
        .where(Encounter.discharged_at >= lo, Encounter.discharged_at < hi)
    )
    complete = session.exec(base.where(Encounter.discharged_at <= closed_before)).one()
    pending = session.exec(base.where(Encounter.discharged_at > closed_before)).one()
    readmissions = session.exec(
        f.enrollments(
            select(Enrollment.encounter_id, Encounter.discharged_at, Enrollment.readmitted_at)
            .join(Encounter, col(Enrollment.encounter_id) == Encounter.id)
            .where(
                Encounter.discharged_at >= lo,
                Encounter.discharged_at < hi,
                Encounter.discharged_at <= closed_before,
                col(Enrollment.readmitted_at).is_not(None),
            )
        )
    ).all()
    readmitted = {
        encounter_id
        for encounter_id, discharged_at, readmitted_at in readmissions
        if readmitted_at is not None
        and dt.timedelta(0) <= readmitted_at - discharged_at <= READMISSION_WINDOW
    }
    return _rate("readmission_30d", len(readmitted), complete, pending=pending)


# --------------------------------------------------------------------------- tickets


def _nearest_rank(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def _ticket_kpis(
    session: Session, f: _Filters, lo: dt.datetime, hi: dt.datetime, as_of: dt.datetime
) -> tuple[list[Kpi], dict[str, int], dict[str, int]]:
    rows = session.exec(
        f.tickets(
            select(
                Ticket.category,
                Ticket.department_code,
                Ticket.opened_at,
                Ticket.first_response_at,
                Ticket.first_response_due,
                Ticket.first_response_breached_at,
                Ticket.resolved_at,
                Ticket.resolution_due,
                Ticket.resolution_breached_at,
            ).where(Ticket.opened_at >= lo, Ticket.opened_at < hi)
        )
    ).all()
    by_category: Counter[str] = Counter()
    by_department: Counter[str] = Counter()
    first = {"met": 0, "breached": 0, "pending": 0}
    resolution = {"met": 0, "breached": 0, "pending": 0}
    minutes: list[float] = []
    for (
        category,
        department,
        opened_at,
        first_at,
        first_due,
        first_breached,
        resolved_at,
        resolution_due,
        resolution_breached,
    ) in rows:
        by_category[category] += 1
        by_department[department or UNROUTED] += 1
        if department is None:
            continue  # answered automatically (L1) or not routed yet: no SLA clock ran
        first_outcome = _outcome(first_at, first_due, first_breached, as_of)
        first[first_outcome] += 1
        resolution[_outcome(resolved_at, resolution_due, resolution_breached, as_of)] += 1
        if first_at is not None and first_outcome != "pending":
            minutes.append((first_at - opened_at).total_seconds() / 60)
    median = statistics.median(minutes) if minutes else None
    p90 = _nearest_rank(minutes, 0.9) if minutes else None
    kpis = [
        _rate(
            "first_response_sla",
            first["met"],
            first["met"] + first["breached"],
            pending=first["pending"],
        ),
        _rate(
            "resolution_sla",
            resolution["met"],
            resolution["met"] + resolution["breached"],
            pending=resolution["pending"],
        ),
        _kpi("time_to_first_response_median", median, None, len(minutes)),
        _kpi("time_to_first_response_p90", p90, None, len(minutes)),
        _kpi("tickets_opened", len(rows), len(rows), None),
    ]
    return kpis, dict(sorted(by_category.items())), dict(sorted(by_department.items()))


def _outcome(
    done_at: dt.datetime | None,
    due: dt.datetime | None,
    breached_at: dt.datetime | None,
    as_of: dt.datetime,
) -> Literal["met", "breached", "pending"]:
    """One SLA clock: breached (recorded, or running past its due time), met, or pending.

    The read model shows a running clock as its due time (None once met, while paused, or
    before routing), so a due time wins over an earlier ``done_at``: a reopened ticket, or
    an L1 answer taken over by a department, is working to a new target.
    """
    if breached_at is not None:
        return "breached"
    if due is not None:
        return "breached" if due <= as_of else "pending"
    return "met" if done_at is not None else "pending"


def _satisfaction(session: Session, f: _Filters, lo: dt.datetime, hi: dt.datetime) -> list[Kpi]:
    scored = (
        select(TicketEvent.ticket_id, func.max(TicketEvent.at).label("scored_at"))
        .where(TicketEvent.action == "satisfaction")
        .group_by(TicketEvent.ticket_id)
        .subquery()
    )
    scored_at = func.coalesce(scored.c.scored_at, Ticket.closed_at)
    scores = session.exec(
        f.tickets(
            select(Ticket.satisfaction)
            .outerjoin(scored, scored.c.ticket_id == Ticket.id)
            .where(col(Ticket.satisfaction).is_not(None), scored_at >= lo, scored_at < hi)
        )
    ).all()
    values = [int(s) for s in scores if s is not None]
    total = sum(values)
    satisfied = sum(1 for s in values if s >= SATISFIED_SCORE)
    return [
        _kpi("satisfaction_mean", total / len(values) if values else None, total, len(values)),
        _rate("satisfaction_rate", satisfied, len(values)),
    ]
