"""Pathway templates: what is registered, the dated dry run of any of them, and the catalogue
administrators manage (import a draft, publish, retire, read a version's YAML)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel
from sqlmodel import Session

from suifang.core.api.deps import RuntimeDep
from suifang.core.api.security import PrincipalDep, require
from suifang.core.db import in_thread
from suifang.core.enums import RiskTier
from suifang.core.errors import ValidationFailed
from suifang.core.pathway_catalogue import CatalogueChange, add_draft, export, publish, retire
from suifang.core.pathways import check_groups, resolve_plan
from suifang.core.security.auth import Permission
from suifang.core.timestamps import PlausibleDate
from suifang.core.timezones import IanaTimezone
from suifang.workflows.journey_core import preview_schedule

router = APIRouter(prefix="/pathways", tags=["pathways"])
CanRead = Depends(require(Permission.PATHWAYS_READ))
CanWrite = Depends(require(Permission.PATHWAYS_WRITE))


class PathwaySummary(BaseModel):
    id: str
    version: int
    versions: list[int]
    name: str
    department: str | None
    touchpoints: int
    open_ended: bool
    variants: list[str]


class PreviewRow(BaseModel):
    key: str
    day: int
    due_at: dt.datetime
    local_time: str


class Preview(BaseModel):
    pathway_id: str
    version: int
    variants: list[str]
    timezone: str
    schedule: list[PreviewRow]


@router.get(
    "", response_model=list[PathwaySummary], summary="Registered pathways", dependencies=[CanRead]
)
def list_pathways(runtime: RuntimeDep, locale: str = "zh-CN") -> list[PathwaySummary]:
    """Every pathway new discharges can be enrolled into, at its current version: id,
    versions, name (in ``locale``), department, touchpoint count and risk variants.

    中文：可入组的随访路径（当前版本）：编号、各版本、名称（按 ``locale``）、科室、
    随访节点数和风险分层变体。
    """
    catalog = runtime.catalog
    return [
        PathwaySummary(
            id=t.id,
            version=t.version,
            versions=catalog.versions(t.id),
            name=t.name.get(locale),
            department=t.department,
            touchpoints=len(t.touchpoints),
            open_ended=t.open_ended,
            variants=sorted(t.variants),
        )
        for t in catalog.current()
    ]


@router.get("/{pathway_id}", summary="A pathway template, as validated", dependencies=[CanRead])
def get_pathway(runtime: RuntimeDep, pathway_id: str, version: int | None = None) -> dict[str, Any]:
    """The whole template as validated (questionnaires, touchpoints, alert rules, variants),
    at its current version or ``version``. 404 for an unknown pathway or version.

    中文：随访路径模板全文（问卷、随访节点、预警规则、变体），默认当前版本，可指定 ``version``；
    路径或版本不存在时返回 404。
    """
    return runtime.catalog.get(pathway_id, version).model_dump(mode="json", by_alias=True)


@router.get(
    "/{pathway_id}/preview",
    response_model=Preview,
    summary="Dry run: the dated schedule",
    dependencies=[CanRead],
)
def preview(
    runtime: RuntimeDep,
    pathway_id: str,
    discharged: PlausibleDate,
    risk: RiskTier | None = None,
    group: Annotated[list[str] | None, Query()] = None,
    timezone: IanaTimezone = "Asia/Shanghai",
    version: int | None = None,
) -> Preview:
    """Dates each touchpoint would go out for a patient discharged on ``discharged``, for a
    risk tier and groups, in a timezone: check a pathway (or a draft) before enrolling.

    中文：试算随访计划：按出院日期、风险等级、分组和时区，列出每个随访节点的发送时间，用于入组前核对路径
    （包括草稿）。
    """
    template = runtime.catalog.get(pathway_id, version)
    plan = resolve_plan(template, risk, check_groups(group or []))
    zone = ZoneInfo(timezone)  # a name from the tz database's own list (IanaTimezone)
    start = dt.datetime.combine(discharged, dt.time(12, 0), tzinfo=zone)
    rows = preview_schedule(plan, start, timezone=timezone)
    return Preview(
        pathway_id=template.id,
        version=template.version,
        variants=plan.variants,
        timezone=timezone,
        schedule=[
            PreviewRow(
                key=k, day=d, due_at=due, local_time=due.astimezone(zone).strftime("%Y-%m-%d %H:%M")
            )
            for k, d, due in rows
        ],
    )


class CatalogueChangeView(BaseModel):
    pathway_id: str
    version: int
    status: str
    previous: str | None


def _changed(request: Request, change: CatalogueChange) -> CatalogueChangeView:
    request.state.audit_detail = change.audit_detail()
    return CatalogueChangeView(
        pathway_id=change.pathway_id,
        version=change.version,
        status=change.status,
        previous=change.previous,
    )


_YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", "text/plain")
_YAML_EXAMPLE = """\
# Inguinal hernia repair: a call on day 3, a questionnaire on days 7 and 30.
id: hernia-repair
version: 1
name: {zh-CN: 疝修补术后随访, en: Hernia repair follow-up}
department: general_surgery
channels: [wechat, sms]
send_window: {start: "09:00", end: "20:00"}
questionnaires:
  recovery:
    title: {zh-CN: 术后恢复情况, en: How you are recovering}
    questions:
      - id: pain
        type: number
        text: {zh-CN: "伤口疼痛打几分(0-10)?", en: "How bad is the pain, 0 to 10?"}
        min: 0
        max: 10
        indicator: pain_score
      - id: swelling
        type: yes_no
        text: {zh-CN: "伤口有没有红肿、渗液?", en: "Is the wound red, swollen or oozing?"}
touchpoints:
  - id: d3
    day: 3
    kind: check_in
    message:
      zh-CN: "{{ name }}您好，术后第3天，恢复得怎么样？有问题可以直接回复。"
      en: "Hello {{ name }}, day 3 after your operation: how are you? Reply with any worry."
  - id: d7
    day: 7
    kind: questionnaire
    questionnaire: recovery
    message: {zh-CN: "{{ name }}您好，请回答几个问题", en: "Hello {{ name }}, a few questions"}
  - id: d30
    day: 30
    kind: questionnaire
    questionnaire: recovery
    message: {zh-CN: "{{ name }}您好，术后一个月随访", en: "Hello {{ name }}, one month on"}
alert_rules:
  - id: wound
    if: {question: swelling, value: yes}
    tier: L2
    summary: {zh-CN: 伤口红肿渗液, en: Wound red or oozing}
  - id: pain
    if: {question: pain, op: gte, value: 7}
    tier: L2
    summary: {zh-CN: 疼痛评分≥7, en: Pain 7 or more}
"""
_YAML_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/yaml": {
                "schema": {"type": "string"},
                "examples": {
                    "hernia": {
                        "summary": "A small pathway (names and messages in zh-CN and en)",
                        "value": _YAML_EXAMPLE,
                    }
                },
            }
        },
        "description": "The pathway YAML, as `suifang pathways validate` reads it.",
    }
}


@router.post(
    "",
    response_model=CatalogueChangeView,
    status_code=201,
    summary="Import a pathway YAML as a draft",
    dependencies=[CanWrite],
    openapi_extra=_YAML_BODY,
)
async def add_pathway(
    request: Request, runtime: RuntimeDep, principal: PrincipalDep
) -> CatalogueChangeView:
    """Checked as `pathways validate` checks it (errors name the line); a draft of the same id
    and version is replaced, a published version never is. Publish it to enroll into it.

    中文：导入路径 YAML 作为草稿，校验方式同 ``pathways validate``（错误指明行号）；
    同编号同版本的草稿被替换，已发布版本不可更改。发布后方可入组。
    """
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type not in _YAML_TYPES:
        raise HTTPException(
            415,
            "a pathway is YAML sent as Content-Type: application/yaml, "
            f"not {media_type or 'no type'!r}",
        )
    try:
        source = (await request.body()).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValidationFailed(f"body: the YAML is not UTF-8 (byte {exc.start})") from None
    if "\x00" in source:
        raise ValidationFailed("body: the YAML holds a NUL character")

    def store() -> CatalogueChange:
        with Session(runtime.engine) as session:
            return add_draft(
                session,
                source,
                origin="body",
                actor=principal.actor,
                vocabulary=runtime.vocabulary(),
                registered=runtime.catalog,
            )

    return _changed(request, await in_thread(store))


@router.post(
    "/{pathway_id}/versions/{version}/publish",
    response_model=CatalogueChangeView,
    summary="Publish a draft: open it for enrollment",
    dependencies=[CanWrite],
)
def publish_pathway(
    request: Request, runtime: RuntimeDep, pathway_id: str, version: int
) -> CatalogueChangeView:
    """It never changes after this; new discharges onto the pathway get it.

    中文：发布草稿：此后不可更改，新出院患者入组该路径时使用此版本。
    """
    with Session(runtime.engine) as session:
        change = publish(session, pathway_id, version, vocabulary=runtime.vocabulary())
    return _changed(request, change)


@router.post(
    "/{pathway_id}/versions/{version}/retire",
    response_model=CatalogueChangeView,
    summary="Retire a published version",
    dependencies=[CanWrite],
)
def retire_pathway(
    request: Request, runtime: RuntimeDep, pathway_id: str, version: int
) -> CatalogueChangeView:
    """Closed to new enrollments; running journeys keep the plan they started with.

    中文：停用已发布的版本：不再接受新入组，进行中的随访按原计划继续。
    """
    with Session(runtime.engine) as session:
        change = retire(session, pathway_id, version)
    return _changed(request, change)


@router.get(
    "/{pathway_id}/versions/{version}/yaml",
    response_class=PlainTextResponse,
    summary="A version's YAML, as written",
    dependencies=[CanRead],
    responses={200: {"content": {"application/yaml": {"schema": {"type": "string"}}}}},
)
def pathway_yaml(runtime: RuntimeDep, pathway_id: str, version: int) -> PlainTextResponse:
    """A version's YAML exactly as written (comments kept): to copy, edit and import as the
    next version. 404 for an unknown pathway or version.

    中文：某版本路径的 YAML 原文（保留注释），可复制修改后作为新版本导入；
    路径或版本不存在时返回 404。
    """
    with Session(runtime.engine) as session:
        text = export(session, runtime.catalog, pathway_id, version)
    return PlainTextResponse(text, media_type="application/yaml")
