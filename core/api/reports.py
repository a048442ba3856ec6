"""Reports: the follow-up KPIs per period, department and pathway.

Scope: admins and auditors see every department. Department staff get the KPIs of their own
departments; asking for another department (``department=``) is refused with 403 rather than
answered with an empty report, so a zero is never mistaken for a real result. KPIs are
aggregates: the audit record of the request names no patients.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Response
from sqlmodel import Session

from suifang.core.api.deps import RuntimeDep, SessionDep
from suifang.core.api.security import require
from suifang.core.runtime import Runtime
from suifang.core.security.auth import Permission, Principal
from suifang.tickets.analytics import FeedbackReport, feedback_report
from suifang.workflows.kpis import KpiReport, compute_kpis, filter_problems
from suifang.workflows.monthly_report import (
    MonthlyReport,
    build_monthly_report,
    monthly_html,
    monthly_pdf,
)
from suifang.workflows.tags import tag_rules

__all__ = ["router"]

router = APIRouter(tags=["reports"])

CanReport = Annotated[Principal, Depends(require(Permission.REPORTS_READ))]


def _check_filters(
    session: Session,
    runtime: Runtime,
    principal: Principal,
    department: str | None,
    pathway: str | None,
    tag: str | None = None,
) -> None:
    scope = principal.scope
    if department is not None and scope is not None and department not in scope:
        yours = ", ".join(scope) or "none"
        raise HTTPException(
            status_code=403,
            detail=f"department {department!r} is outside your departments ({yours})",
        )
    problems = filter_problems(
        session,
        department=department,
        pathway=pathway,
        pathways=runtime.catalog.ids(),
        tag=tag,
        tags=list(tag_rules(runtime.settings.tags_file, runtime.settings.indicators_file)),
    )
    if problems:
        raise HTTPException(
            status_code=422,
            detail="; ".join(f"query.{name}: {problem}" for name, problem in problems.items()),
        )


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
    tag: Annotated[
        str | None,
        Query(max_length=64, description="Only patients with this auto-tag now (tags.yaml)."),
    ] = None,
) -> KpiReport:
    """Every KPI with its value, numerator, denominator and definition (see docs/kpis.md).

    Days are calendar days in the hospital's timezone (``SUIFANG_TIMEZONE``). Staff get
    their own departments' figures; another department is 403, an unknown filter 422.

    中文：指定时段的随访质量指标（覆盖率、应答率、失访、预警、SLA、再入院等），每项含数值、分子、
    分母和定义；按医院时区的自然日计算。医护人员只能查看本科室，查询其他科室返回 403。
    """
    if start > end:
        raise HTTPException(
            status_code=422, detail=f"query.from ({start}) is after query.to ({end})"
        )
    department, pathway, tag = department or None, pathway or None, tag or None
    _check_filters(session, runtime, principal, department, pathway, tag)
    return compute_kpis(
        session,
        start=start,
        end=end,
        department=department,
        pathway=pathway,
        departments=principal.scope,
        timezone=runtime.settings.timezone,
        tag=tag,
    )


@router.get(
    "/reports/feedback",
    response_model=FeedbackReport,
    summary="Feedback hotspots by department and month, top phrases, resolution (热点分析)",
)
def feedback(
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
    top: Annotated[int, Query(ge=1, le=50, description="Phrases per department.")] = 10,
) -> FeedbackReport:
    """Tickets opened in the period counted by department, month and category with the change
    from the month before; the commonest words patients used, by department; and how each
    department resolves them (median and 90th-percentile hours, reopen rate, satisfaction
    after resolution). Staff see their own departments only.

    中文：按科室、月份和类别统计期间内新开工单及环比变化；各科室患者反馈中最常见的词语；
    以及各科室的处理情况（解决时长中位数与第90百分位、重开率、处理后满意度）。医护人员只能查看本科室。
    """
    if start > end:
        raise HTTPException(
            status_code=422, detail=f"query.from ({start}) is after query.to ({end})"
        )
    department = department or None
    _check_filters(session, runtime, principal, department, None)
    return feedback_report(
        session,
        start=start,
        end=end,
        timezone=runtime.settings.timezone,
        department=department,
        scope=principal.scope,
        top=top,
    )


_MONTHLY_DOC = """The month's follow-up quality review for a department, or hospital-wide without
``department``: the KPIs of docs/kpis.md, SLA compliance, tickets opened per day (a chart), the
feedback hotspot table and staff workload. Staff get their own departments only (another is
403); a month that is not YYYY-MM is 422.

中文：月度随访质量报告（科室或全院）：docs/kpis.md 中的各项指标、SLA 达标、每日新开工单
（图表）、反馈热点表和人员工作量。医护人员只能查看本科室（其他科室返回 403）；月份格式须为
YYYY-MM，否则返回 422。"""

Month = Annotated[
    str,
    Query(
        pattern=r"^\d{4}-\d{2}$",
        description="The month, YYYY-MM (calendar days in the hospital's timezone).",
    ),
]
MonthlyDepartment = Annotated[
    str | None, Query(max_length=64, description="Only this department (default: all yours).")
]


def _monthly(
    session: SessionDep,
    runtime: RuntimeDep,
    principal: CanReport,
    month: Month,
    department: MonthlyDepartment = None,
) -> MonthlyReport:
    """The review both routes render (a dependency: one set of parameters, one check)."""
    department = department or None
    _check_filters(session, runtime, principal, department, None)
    return build_monthly_report(
        session,
        month=month,
        timezone=runtime.settings.timezone,
        department=department,
        scope=principal.scope,
    )


MonthlyReview = Annotated[MonthlyReport, Depends(_monthly)]


@router.get(
    "/reports/monthly.pdf",
    summary="The monthly follow-up quality review (月度随访质量报告) as PDF",
    description=_MONTHLY_DOC + "\n\nThe PDF embeds its Chinese font (Noto Sans CJK SC).",
    response_class=Response,
    responses={
        200: {
            "description": "The review, Chinese font embedded",
            "content": {"application/pdf": {"schema": {"type": "string", "format": "binary"}}},
        },
        422: {"description": "Not a month, or an unknown department"},
    },
)
def monthly_review_pdf(report: MonthlyReview) -> Response:
    name = f"monthly-{report.month}-{report.department or 'hospital'}.pdf"
    return Response(
        monthly_pdf(report),
        media_type="application/pdf",
        headers={"Content-Disposition": f'inline; filename="{name}"'},
    )


@router.get(
    "/reports/monthly.html",
    summary="The same monthly review as one HTML page",
    description=_MONTHLY_DOC + "\n\nOne self-contained page, the chart inline.",
    response_class=Response,
    responses={
        200: {
            "description": "The review as one HTML page",
            "content": {"text/html": {"schema": {"type": "string"}}},
        },
        422: {"description": "Not a month, or an unknown department"},
    },
)
def monthly_review_html(report: MonthlyReview) -> Response:
    return Response(monthly_html(report), media_type="text/html; charset=utf-8")
