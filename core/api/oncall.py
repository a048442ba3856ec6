"""On-call rosters over HTTP: who is paged for a department now, and importing a roster."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from suifang.core.api.deps import RuntimeDep, SessionDep
from suifang.core.api.security import require
from suifang.core.db import utcnow
from suifang.core.errors import NotFoundError
from suifang.core.models import Department
from suifang.core.security.auth import Permission, Principal
from suifang.core.timestamps import PlausibleInstant
from suifang.tickets.oncall import RosterFile, import_roster, roster_view, staff_channels

router = APIRouter(tags=["on-call"])

Admin = Annotated[Principal, Depends(require(Permission.USERS_ADMIN))]
CanRead = Annotated[Principal, Depends(require(Permission.TICKETS_READ))]


class OnCallMember(BaseModel):
    role: str
    department: str
    username: str
    name: str


class OnCallView(BaseModel):
    department: str
    at: dt.datetime
    chain: list[OnCallMember]
    """Who is paged, in order: the department's primary, backup, supervisor, the duty office."""
    channels: list[str]
    escalate_after_minutes: list[float]
    repeat_final: int


class RosterImported(BaseModel):
    staff: int
    shifts: int
    departments: int


@router.get(
    "/oncall/{department}",
    response_model=OnCallView,
    summary="Who is on call for a department (now, or at a given time)",
)
def on_call(
    department: str,
    session: SessionDep,
    principal: CanRead,
    at: Annotated[PlausibleInstant | None, Query(description="ISO 8601 with a timezone")] = None,
) -> OnCallView:
    scope = principal.scope
    if session.get(Department, department) is None or (
        scope is not None and department not in scope
    ):
        raise NotFoundError(f"no department {department!r}")
    view: dict[str, Any] = roster_view(session, department, at or utcnow())
    return OnCallView.model_validate(view)


@router.put(
    "/oncall",
    response_model=RosterImported,
    summary="Import a roster: staff and contacts, paging policies and shifts",
)
def put_roster(
    body: RosterFile, session: SessionDep, runtime: RuntimeDep, principal: Admin
) -> RosterImported:
    """Each department named has its shifts and paging policy replaced; staff are created or
    updated. Nothing changes if anything in the roster is wrong (422 lists every problem)."""
    counts = import_roster(session, body, known_channels=staff_channels(runtime.channels.classes))
    return RosterImported(**counts)
