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
    """Dates each touchpoint would go out for a patient discharged on ``discharged``."""
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
_YAML_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/yaml": {"schema": {"type": "string"}}},
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
    and version is replaced, a published version never is. Publish it to enroll into it."""
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
    """It never changes after this; new discharges onto the pathway get it."""
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
    """Closed to new enrollments; running journeys keep the plan they started with."""
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
    with Session(runtime.engine) as session:
        text = export(session, runtime.catalog, pathway_id, version)
    return PlainTextResponse(text, media_type="application/yaml")
