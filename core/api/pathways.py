"""Pathway templates: what is registered, and the dated dry run of any of them."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from suifang.core.api.deps import RuntimeDep
from suifang.core.api.security import require
from suifang.core.enums import RiskTier
from suifang.core.pathways import check_groups, resolve_plan
from suifang.core.security.auth import Permission
from suifang.core.timestamps import PlausibleDate
from suifang.core.timezones import IanaTimezone
from suifang.workflows.journey_core import preview_schedule

router = APIRouter(prefix="/pathways", tags=["pathways"])
CanRead = Depends(require(Permission.PATHWAYS_READ))


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
