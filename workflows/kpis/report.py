"""The KPI report: every KPI for a period, a department and a pathway, as of a time."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field
from sqlmodel import Session, select

from suifang.core.db import utcnow
from suifang.core.errors import NotFoundError, ValidationFailed
from suifang.core.models import Department, Enrollment
from suifang.core.timezones import check_timezone
from suifang.workflows.kpis import queries
from suifang.workflows.kpis.definitions import KPI_DEFINITIONS, Kpi

__all__ = ["KpiReport", "compute_kpis", "filter_problems", "period_window"]


class KpiReport(BaseModel):
    start: dt.date
    end: dt.date
    timezone: str
    window_start: dt.datetime = Field(description="First instant of the period (UTC).")
    window_end: dt.datetime = Field(description="First instant after the period (UTC).")
    as_of: dt.datetime = Field(description="When the report was made: later events are pending.")
    department: str | None
    pathway: str | None
    tag: str | None = Field(None, description="Only patients with this auto-tag now.")
    scope: list[str] | None = Field(description="The caller's departments; None: all.")
    kpis: list[Kpi]
    tickets_by_category: dict[str, int]
    tickets_by_department: dict[str, int]

    def kpi(self, key: str) -> Kpi:
        for kpi in self.kpis:
            if kpi.key == key:
                return kpi
        raise NotFoundError(f"no KPI {key!r}")


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
    session: Session,
    *,
    department: str | None,
    pathway: str | None,
    pathways: list[str],
    tag: str | None = None,
    tags: list[str] = (),  # type: ignore[assignment]
) -> dict[str, str]:
    """What is wrong with the filters, by name: an unknown department, pathway or tag.

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
    if tag and tag not in tags:
        problems["tag"] = f"unknown tag {tag!r} (known: {', '.join(sorted(tags)) or 'none'})"
    return problems


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
    tag: str | None = None,
) -> KpiReport:
    """Every KPI for ``start``–``end`` (dates, both included, in ``timezone``).

    ``departments`` is the caller's scope (None: every department); ``department`` narrows
    further. A fixed number of aggregate queries, whatever the number of journeys.
    """
    lo, hi = period_window(start, end, timezone)
    as_of = (as_of or utcnow()).astimezone(dt.UTC)
    f = queries.Filters(department or None, pathway or None, departments, tag or None)
    ticket_kpis, by_category, by_department = queries.ticket_kpis(session, f, lo, hi, as_of)
    kpis = [
        *queries.journey_kpis(session, f, lo, hi, as_of),
        *ticket_kpis,
        queries.readmission(session, f, lo, hi, as_of),
        *queries.satisfaction(session, f, lo, hi),
    ]
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
        tag=f.tag,
        scope=departments,
        kpis=kpis,
        tickets_by_category=by_category,
        tickets_by_department=by_department,
    )
