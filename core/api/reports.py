"""Reports: the follow-up KPIs per period, department and pathway.

Scope: admins and auditors see every department. Department staff get the KPIs of their own
departments; asking for another department (``department=``) is refused with 403 rather than
answered with an empty report, so a zero is never mistaken for a real result. KPIs are
aggregates: the audit record of the request names no patients.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query
from sqlmodel import Session

from suifang.core.api.deps import RuntimeDep, SessionDep
from suifang.core.api.security import require
from suifang.core.models import Department
from suifang.core.security.auth import Permission, Principal
from suifang.workflows.kpis import KpiReport, compute_kpis

__all__ = ["router"]

router = APIRouter(tags=["reports"])

CanReport = Annotated[Principal, Depends(require(Permission.REPORTS_READ))]


def _check_department(session: Session, principal: Principal, department: str | None) -> None:
    if department is None:
        return
    scope = principal.scope
    if scope is not None and department not in scope:
        raise HTTPException(
            status_code=403,
            detail=f"department {department!r} is outside your departments ({', '.join(scope)})",
        )
    if session.get(Department, department) is None:
        raise HTTPException(status_code=422, detail=f"query.department: unknown {department!r}")


@router.get(
    "/reports/kpis",
    response_model=KpiReport,
    summary="Follow-up KPIs for a period (coverage, response, 失访, alerts, SLA, readmission…)",
)
def kpis(
    session: SessionDep,
    runtime: RuntimeDep,
    principal: CanReport,
    start: Annotated[
        dt.date, Query(alias="from", description="First day of the period (YYYY-MM-DD).")
    ],
    end: Annotated[
        dt.date, Query(alias="to", description="Last day of the period, included (YYYY-MM-DD).")
    ],
    department: Annotated[
        str | None, Query(max_length=64, description="Only this department.")
    ] = None,
    pathway: Annotated[str | None, Query(max_length=64, description="Only this pathway.")] = None,
) -> KpiReport:
    """Every KPI with its value, numerator, denominator and definition (see docs/kpis.md).

    Days are calendar days in the hospital's timezone (``SUIFANG_TIMEZONE``).
    """
    if start > end:
        raise HTTPException(
            status_code=422, detail=f"query.from ({start}) is after query.to ({end})"
        )
    department = department or None
    _check_department(session, principal, department)
    return compute_kpis(
        session,
        start=start,
        end=end,
        department=department,
        pathway=pathway or None,
        departments=principal.scope,
        timezone=runtime.settings.timezone,
    )
