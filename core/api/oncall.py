"""On-call rosters over HTTP: who is paged for a department now, and importing a roster."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query
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


_ROSTER_EXAMPLES = {
    "zh": {
        "summary": "Cardiology's weekly rota, with phones and a paging policy",
        "value": {
            "timezone": "Asia/Shanghai",
            "staff": [
                {
                    "username": "dr.wang",
                    "display_name": "王医生",
                    "role": "doctor",
                    "departments": ["cardiology"],
                    "contacts": [{"system": "phone", "value": "13900000001"}],
                },
                {
                    "username": "nurse.li",
                    "display_name": "李护士",
                    "role": "nurse",
                    "departments": ["cardiology"],
                    "contacts": [{"system": "phone", "value": "13900000002"}],
                },
                {
                    "username": "dr.zhou",
                    "display_name": "周主任",
                    "role": "doctor",
                    "departments": ["cardiology"],
                },
            ],
            "departments": {
                "cardiology": {
                    "paging": {
                        "channels": ["sms", "voice", "outbox"],
                        "escalate_after": ["5m", "10m"],
                    },
                    "supervisor": "dr.zhou",
                    "shifts": [
                        {
                            "days": "mon-fri",
                            "hours": "08:00-17:30",
                            "primary": "dr.wang",
                            "backup": "nurse.li",
                        },
                        {
                            "days": "mon-fri",
                            "hours": "17:30-08:00",
                            "primary": "nurse.li",
                            "backup": "dr.wang",
                        },
                        {
                            "days": "weekends",
                            "hours": "00:00-24:00",
                            "primary": "dr.wang",
                            "backup": "nurse.li",
                        },
                    ],
                }
            },
        },
    },
    "en": {
        "summary": "Holiday cover: a dated shift in orthopaedics",
        "value": {
            "staff": [
                {
                    "username": "dr.zhao",
                    "display_name": "Dr Zhao (orthopaedics)",
                    "departments": ["orthopaedics"],
                    "contacts": [{"system": "email", "value": "zhao@hospital.example.org"}],
                }
            ],
            "departments": {
                "orthopaedics": {
                    "shifts": [
                        {
                            "from": "2027-02-05T08:00:00+08:00",
                            "to": "2027-02-12T08:00:00+08:00",
                            "primary": "dr.zhao",
                        }
                    ]
                }
            },
        },
    },
}


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
    """The paging chain for a department now (or at ``at``): primary, backup, supervisor,
    then the duty office, with the channels and escalation delays an emergency page uses.
    404 for an unknown department or one outside the caller's departments.

    中文：某科室当前（或 ``at`` 时刻）的值班呼叫顺序：主班、备班、主任、总值班，以及急诊呼叫所用渠道
    和升级间隔；科室不存在或不在本科室范围内时返回 404。
    """
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
    body: Annotated[RosterFile, Body(openapi_examples=_ROSTER_EXAMPLES)],
    session: SessionDep,
    runtime: RuntimeDep,
    principal: Admin,
) -> RosterImported:
    """Each department named has its shifts and paging policy replaced; staff are created or
    updated. Nothing changes if anything in the roster is wrong (422 lists every problem).
    The same file ``suifang oncall import`` reads, as JSON.

    中文：导入值班表：所列科室的班次和呼叫策略整体替换，人员新建或更新；有任何错误则全部不生效
    （422 列出所有问题）。
    """
    counts = import_roster(session, body, known_channels=staff_channels(runtime.channels.classes))
    return RosterImported(**counts)
