"""The database side of the KPI report: what to count, as a fixed number of aggregate queries.

Each function counts one thing for the period ``[lo, hi)`` under the report's filters and
hands its counts to the formula in :mod:`suifang.workflows.kpis.formulas`.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, case
from sqlmodel import Session, col, func, select

from suifang.core.enums import TouchpointStatus
from suifang.core.models import (
    Alert,
    Encounter,
    Enrollment,
    PatientTag,
    Ticket,
    TicketEvent,
    TouchpointRecord,
)
from suifang.workflows.kpis import formulas
from suifang.workflows.kpis.definitions import Kpi

__all__ = [
    "READMISSION_WINDOW",
    "UNROUTED",
    "Filters",
    "journey_kpis",
    "readmission",
    "satisfaction",
    "ticket_kpis",
]

READMISSION_WINDOW = dt.timedelta(days=30)
UNROUTED = "unrouted"


@dataclass(frozen=True)
class Filters:
    department: str | None
    pathway: str | None
    scope: list[str] | None
    tag: str | None = None
    """Only patients who have this auto-tag now."""

    def _tagged(self, stmt: Any, patient_id: Any) -> Any:
        if self.tag is None:
            return stmt
        tagged = select(PatientTag.patient_id).where(PatientTag.tag == self.tag)
        return stmt.where(col(patient_id).in_(tagged))

    def enrollments(self, stmt: Any) -> Any:
        """``stmt`` (which selects from or joins Enrollment) narrowed to the filters."""
        stmt = self._tagged(stmt, Enrollment.patient_id)
        if self.department is not None:
            stmt = stmt.where(Enrollment.department_code == self.department)
        if self.scope is not None:
            stmt = stmt.where(col(Enrollment.department_code).in_(self.scope))
        if self.pathway is not None:
            stmt = stmt.where(Enrollment.pathway_id == self.pathway)
        return stmt

    def encounters(self, stmt: Any) -> Any:
        stmt = self._tagged(stmt, Encounter.patient_id)
        if self.department is not None:
            stmt = stmt.where(Encounter.department_code == self.department)
        if self.scope is not None:
            stmt = stmt.where(col(Encounter.department_code).in_(self.scope))
        return stmt

    def tickets(self, stmt: Any) -> Any:
        stmt = self._tagged(stmt, Ticket.patient_id)
        if self.department is not None:
            stmt = stmt.where(Ticket.department_code == self.department)
        if self.scope is not None:
            stmt = stmt.where(col(Ticket.department_code).in_(self.scope))
        if self.pathway is not None:
            stmt = stmt.join(Enrollment, col(Ticket.enrollment_id) == Enrollment.id).where(
                Enrollment.pathway_id == self.pathway
            )
        return stmt


# --------------------------------------------------------------------------- journeys


def journey_kpis(
    session: Session, f: Filters, lo: dt.datetime, hi: dt.datetime, as_of: dt.datetime
) -> list[Kpi]:
    answered, missed = _settled_touchpoints(session, f, lo, hi)
    return [
        formulas.follow_up_coverage(*_coverage(session, f, lo, min(hi, as_of))),
        formulas.discharges_enrolled(*_discharges(session, f, lo, hi)),
        formulas.response_rate(answered, missed),
        formulas.lost_to_follow_up_rate(_ended_journeys(session, f, lo, hi)),
        *formulas.alert_rates(
            _alerts_by_tier(session, f, lo, hi), _answered_in_period(session, f, lo, hi)
        ),
    ]


def _coverage(
    session: Session, f: Filters, lo: dt.datetime, due_by: dt.datetime
) -> tuple[int, int, int]:
    """(reached, due, pending): per enrollment with a touchpoint due in the period, did any of
    them go out, or are they all still waiting to?"""
    tp = TouchpointRecord
    went_out = col(tp.status).in_(formulas.REACHED)
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
    only_waiting = and_(per_enrollment.c.reached == 0, per_enrollment.c.waiting == 1)
    due, reached, pending = session.exec(
        select(
            func.count(),
            func.coalesce(func.sum(per_enrollment.c.reached), 0),
            func.coalesce(func.sum(case((only_waiting, 1), else_=0)), 0),
        ).select_from(per_enrollment)
    ).one()
    return reached, due, pending


def _discharges(session: Session, f: Filters, lo: dt.datetime, hi: dt.datetime) -> tuple[int, int]:
    """(enrolled, discharged): encounters discharged in the period, and those of them enrolled."""
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
    return enrolled, discharged


def _settled_touchpoints(
    session: Session, f: Filters, lo: dt.datetime, hi: dt.datetime
) -> tuple[int, int]:
    """(answered, missed) among the touchpoints due in the period."""
    tp = TouchpointRecord
    settled = dict(
        session.exec(
            f.enrollments(
                select(tp.status, func.count())
                .join(Enrollment, col(tp.enrollment_id) == Enrollment.id)
                .where(tp.due_at >= lo, tp.due_at < hi, col(tp.status).in_(formulas.SETTLED))
            ).group_by(tp.status)
        ).all()
    )
    return settled.get(TouchpointStatus.ANSWERED, 0), settled.get(TouchpointStatus.MISSED, 0)


def _ended_journeys(
    session: Session, f: Filters, lo: dt.datetime, hi: dt.datetime
) -> dict[str, int]:
    """Journeys that ended in the period, by status."""
    return dict(
        session.exec(
            f.enrollments(
                select(Enrollment.status, func.count()).where(
                    Enrollment.ended_at >= lo,  # type: ignore[operator]
                    Enrollment.ended_at < hi,  # type: ignore[operator]
                    col(Enrollment.status).in_(formulas.ENDED),
                )
            ).group_by(Enrollment.status)
        ).all()
    )


def _answered_in_period(session: Session, f: Filters, lo: dt.datetime, hi: dt.datetime) -> int:
    tp = TouchpointRecord
    return session.exec(
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


def _alerts_by_tier(
    session: Session, f: Filters, lo: dt.datetime, hi: dt.datetime
) -> dict[str, int]:
    return dict(
        session.exec(
            f.enrollments(
                select(Alert.tier, func.count())
                .join(Enrollment, col(Alert.enrollment_id) == Enrollment.id)
                .where(Alert.created_at >= lo, Alert.created_at < hi)
            ).group_by(Alert.tier)
        ).all()
    )


def readmission(
    session: Session, f: Filters, lo: dt.datetime, hi: dt.datetime, as_of: dt.datetime
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
    return formulas.readmission_30d(len(readmitted), complete, pending)


# --------------------------------------------------------------------------- tickets


def ticket_kpis(
    session: Session, f: Filters, lo: dt.datetime, hi: dt.datetime, as_of: dt.datetime
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
    first: Counter[formulas.SlaOutcome] = Counter()
    resolution: Counter[formulas.SlaOutcome] = Counter()
    minutes: list[float] = []
    for row in rows:
        by_category[row.category] += 1
        by_department[row.department_code or UNROUTED] += 1
        if row.department_code is None:
            continue  # answered automatically (L1) or not routed yet: no SLA clock ran
        first_outcome = formulas.sla_outcome(
            row.first_response_at, row.first_response_due, row.first_response_breached_at, as_of
        )
        first[first_outcome] += 1
        resolution[
            formulas.sla_outcome(
                row.resolved_at, row.resolution_due, row.resolution_breached_at, as_of
            )
        ] += 1
        if row.first_response_at is not None and first_outcome != "pending":
            minutes.append((row.first_response_at - row.opened_at).total_seconds() / 60)
    kpis = [
        formulas.sla_compliance("first_response_sla", first),
        formulas.sla_compliance("resolution_sla", resolution),
        *formulas.time_to_first_response(minutes),
        formulas.tickets_opened(len(rows)),
    ]
    return kpis, dict(sorted(by_category.items())), dict(sorted(by_department.items()))


def satisfaction(session: Session, f: Filters, lo: dt.datetime, hi: dt.datetime) -> list[Kpi]:
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
    return formulas.satisfaction([int(score) for score in scores if score is not None])
