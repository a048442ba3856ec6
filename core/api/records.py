"""A patient's health record and indicator trends (健康档案, 历年指标趋势): department-scoped,
audited."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from suifang.core.api.deps import RuntimeDep, SessionDep
from suifang.core.api.security import audit_patients, require, require_patient_in_scope
from suifang.core.errors import ValidationFailed
from suifang.core.pathway_checks import load_indicators
from suifang.core.security.auth import Permission, Principal
from suifang.workflows.health_record import HealthRecord, health_record
from suifang.workflows.health_report import (
    PatientReport,
    build_patient_report,
    report_html,
    report_pdf,
)
from suifang.workflows.trends import Trend, indicator_trend, trend_svg

router = APIRouter(tags=["patients"])

CanRead = Annotated[Principal, Depends(require(Permission.PATIENTS_READ))]
Locale = Annotated[Literal["zh-CN", "en"], Query(description="Language of summaries and labels.")]


@router.get(
    "/patients/{patient_id}/record",
    response_model=HealthRecord,
    summary="A patient's health record (健康档案)",
)
def get_record(
    patient_id: int,
    session: SessionDep,
    request: Request,
    principal: CanRead,
    locale: Locale = "zh-CN",
) -> HealthRecord:
    """Everything follow-up knows about the patient, newest first in each part: encounters,
    journeys with their touchpoints, answers, observations, alerts with how each was handled,
    tickets, messages and call recordings (a link to play each). 404 for a patient who does
    not exist or is not in the caller's departments; each read is audited.

    中文：患者健康档案（每部分最新在前）：就诊、随访旅程及各随访节点、回答、指标、
    预警及其处理情况、工单、消息和随访电话录音（可点击播放）。患者不存在或不在本科室
    范围内时返回 404；每次读取均记入审计。
    """
    require_patient_in_scope(session, principal, patient_id)
    audit_patients(request, patient_id)
    return health_record(session, patient_id, locale=locale)


@router.get(
    "/patients/{patient_id}/trends",
    response_model=Trend,
    summary="One indicator's readings over the years, its direction and control",
    responses={
        200: {
            "description": "The trend as JSON, or as an SVG chart with `format=svg`",
            "content": {"image/svg+xml": {"schema": {"type": "string"}}},
        },
        422: {"description": "Unknown indicator or bad dates"},
    },
)
def get_trend(
    patient_id: int,
    session: SessionDep,
    runtime: RuntimeDep,
    request: Request,
    principal: CanRead,
    # Optional here, required below: the department check answers first, so another
    # department's caller learns nothing from a 422 about whether the patient exists.
    indicator: Annotated[
        str | None, Query(max_length=64, examples=["sbp"], description="Required: e.g. sbp.")
    ] = None,
    since: Annotated[dt.date | None, Query(description="First day (inclusive).")] = None,
    until: Annotated[dt.date | None, Query(description="Last day (inclusive).")] = None,
    output: Annotated[
        Literal["json", "svg"], Query(alias="format", description="json or an SVG chart")
    ] = "json",
    locale: Locale = "zh-CN",
) -> Trend | Response:
    """The patient's readings of one indicator (questionnaires, labs, devices), oldest first,
    with the target range, the direction they are moving (least-squares slope per 30 days)
    and whether the indicator is controlled (e.g. BP: at least 70 % of readings below
    140/90); ``format=svg`` answers the chart instead. 404 outside the caller's departments.

    中文：某一指标的历年读数（问卷、检验、设备），按时间先后排列，含目标范围、
    变化方向（每30天的最小二乘斜率）和是否达标（如血压：≥70% 的读数低于 140/90）；
    ``format=svg`` 返回趋势图。不在本科室范围内返回 404。
    """
    require_patient_in_scope(session, principal, patient_id)
    audit_patients(request, patient_id)
    if not indicator:
        raise ValidationFailed("indicator: required, e.g. ?indicator=sbp")
    trend = indicator_trend(
        session,
        patient_id,
        indicator,
        load_indicators(runtime.settings.indicators_file),
        locale=locale,
        since=_midnight(since),
        until=_midnight(until + dt.timedelta(days=1)) if until else None,
    )
    if output == "svg":
        return Response(trend_svg(trend, locale=locale), media_type="image/svg+xml")
    return trend


def _midnight(day: dt.date | None) -> dt.datetime | None:
    return dt.datetime.combine(day, dt.time(), dt.UTC) if day else None


ReportStart = Annotated[
    dt.date | None, Query(alias="from", description="First day (default: 90 days before `to`).")
]
ReportEnd = Annotated[dt.date | None, Query(alias="to", description="Last day (default: today).")]
_REPORT_DOC = """For the period: who the patient is and their tags, each journey's progress, the
trend of every indicator read (with a chart), the alerts and how each was handled, diet,
exercise and mental-health advice chosen by their tags and pathways, and the next steps.
404 outside the caller's departments; audited.

中文：指定期间的健康阶段总结：基本信息与标签、各随访旅程进展、每项指标的趋势（含图表）、
预警及其处理、按标签和随访路径选择的饮食/运动/心理健康建议、下一步安排。
不在本科室范围内返回 404；记入审计。"""


def _report(
    session: SessionDep,
    runtime: RuntimeDep,
    request: Request,
    principal: Principal,
    patient_id: int,
    start: dt.date | None,
    end: dt.date | None,
    locale: str,
) -> PatientReport:
    require_patient_in_scope(session, principal, patient_id)
    audit_patients(request, patient_id)
    end = end or dt.datetime.now(dt.UTC).date()
    return build_patient_report(
        runtime,
        session,
        patient_id,
        start=start or end - dt.timedelta(days=90),
        end=end,
        locale=locale,
    )


@router.get(
    "/patients/{patient_id}/report.pdf",
    summary="A printable health report and stage summary (健康阶段总结) as PDF",
    description=_REPORT_DOC + "\n\nThe PDF embeds its Chinese font (Noto Sans CJK SC).",
    response_class=Response,
    responses={
        200: {
            "description": "The report, Chinese font embedded",
            "content": {"application/pdf": {"schema": {"type": "string", "format": "binary"}}},
        },
        422: {"description": "Bad dates or locale"},
    },
)
def get_report_pdf(
    patient_id: int,
    session: SessionDep,
    runtime: RuntimeDep,
    request: Request,
    principal: CanRead,
    start: ReportStart = None,
    end: ReportEnd = None,
    locale: Locale = "zh-CN",
) -> Response:
    report = _report(session, runtime, request, principal, patient_id, start, end, locale)
    return Response(
        report_pdf(report),
        media_type="application/pdf",
        headers={"Content-Disposition": f'inline; filename="patient-{patient_id}-report.pdf"'},
    )


@router.get(
    "/patients/{patient_id}/report.html",
    summary="The same health report as one HTML page",
    description=_REPORT_DOC + "\n\nOne self-contained page, charts inline as SVG.",
    response_class=Response,
    responses={
        200: {
            "description": "The report as one HTML page",
            "content": {"text/html": {"schema": {"type": "string"}}},
        },
        422: {"description": "Bad dates or locale"},
    },
)
def get_report_html(
    patient_id: int,
    session: SessionDep,
    runtime: RuntimeDep,
    request: Request,
    principal: CanRead,
    start: ReportStart = None,
    end: ReportEnd = None,
    locale: Locale = "zh-CN",
) -> Response:
    report = _report(session, runtime, request, principal, patient_id, start, end, locale)
    return Response(report_html(report), media_type="text/html; charset=utf-8")
