"""A patient's contact points: list, add, prefer, retire (see suifang.core.contacts)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Request
from pydantic import BaseModel, Field

from suifang.core import contacts
from suifang.core.api.deps import RuntimeDep, SessionDep
from suifang.core.api.security import audit_patients, require, require_patient_in_scope
from suifang.core.contacts import known_systems
from suifang.core.security.auth import Permission, Principal

router = APIRouter(tags=["patients"])

CanRead = Annotated[Principal, Depends(require(Permission.PATIENTS_READ))]
CanManage = Annotated[Principal, Depends(require(Permission.PATIENTS_CONSENT))]


class ContactView(BaseModel):
    id: int
    system: str = Field(description="phone, email, wechat, app, or a channel's own system")
    value: str = Field(description="Masked: enough to recognise, not to copy.")
    in_use: bool = Field(description="The one messages of this system go to.")
    created_at: dt.datetime
    preferred_at: dt.datetime
    retired_at: dt.datetime | None
    retired_by: str | None
    failed_at: dt.datetime | None = Field(
        description="When a channel said this address is wrong or gone; not used since."
    )
    failed_reason: str | None


@router.get(
    "/patients/{patient_id}/contacts",
    response_model=list[ContactView],
    summary="A patient's contacts, the ones in use marked, retired ones kept as history",
)
def list_contacts(
    patient_id: int, session: SessionDep, request: Request, principal: CanRead
) -> list[ContactView]:
    """Every contact the patient has had, values masked: the one in use for each system
    marked, retired and failed ones kept with when and why. 404 for a patient who does
    not exist or is not the caller's departments'.

    中文：患者的全部联系方式（已脱敏）：标明各类型当前使用的一个，已停用和投递失败的保留时间与原因；
    患者不存在或不在本科室范围内时返回 404。
    """
    require_patient_in_scope(session, principal, patient_id)
    audit_patients(request, patient_id)
    return [ContactView(**view) for view in contacts.contact_views(session, patient_id)]


class ContactIn(BaseModel):
    system: str = Field(
        description="phone, email, wechat, app, or a system a channel declares "
        "(e.g. dingtalk_userid)"
    )
    value: str = Field(min_length=1, max_length=256)


@router.post(
    "/patients/{patient_id}/contacts",
    response_model=ContactView,
    status_code=201,
    summary="Add a contact in any system a channel delivers to; it is in use from now on",
)
def add_contact(
    patient_id: int,
    body: Annotated[
        ContactIn,
        Body(
            openapi_examples={
                "dingtalk": {
                    "summary": "A DingTalk user id (a channel's own system)",
                    "value": {"system": "dingtalk_userid", "value": "manager4521"},
                },
                "phone": {
                    "summary": "A new mobile number",
                    "value": {"system": "phone", "value": "13912345678"},
                },
            }
        ),
    ],
    session: SessionDep,
    request: Request,
    runtime: RuntimeDep,
    principal: CanManage,
) -> ContactView:
    """Add a contact and use it for its system from now on; one the patient already has is
    brought back (also if retired, or failed at a channel: the caller has checked it). The
    system is a built-in one or one a loaded channel declares; anything else is 422.

    中文：为患者新增联系方式（任一渠道声明的系统，如 dingtalk_userid），立即启用；已有的同一联系方式
    （包括已停用或投递失败的）重新启用。未知系统返回 422。
    """
    require_patient_in_scope(session, principal, patient_id)
    audit_patients(request, patient_id)
    known = known_systems(runtime.plugins.channel_classes().values())
    contact = contacts.add_contact(session, patient_id, body.system, body.value, known=known)
    return _view(session, patient_id, contact.id)  # type: ignore[arg-type]


def _view(session: SessionDep, patient_id: int, contact_id: int) -> ContactView:
    views = contacts.contact_views(session, patient_id)
    return ContactView(**next(v for v in views if v["id"] == contact_id))


@router.post(
    "/patients/{patient_id}/contacts/{contact_id}/prefer",
    response_model=ContactView,
    summary="Use this contact for its system from now on (also brings back a retired one)",
)
def prefer_contact(
    patient_id: int, contact_id: int, session: SessionDep, request: Request, principal: CanManage
) -> ContactView:
    """Make this contact the one messages of its system go to, e.g. after the patient
    confirmed an old number; it also brings back a retired one or one a channel said had
    failed. 404 for a contact the patient does not have.

    中文：将此联系方式设为该类型当前使用的一个（如患者确认旧号码仍在用），已停用或投递失败的也会重新启用；
    患者无此联系方式时返回 404。
    """
    require_patient_in_scope(session, principal, patient_id)
    audit_patients(request, patient_id)
    contacts.prefer_contact(session, patient_id, contact_id)
    return _view(session, patient_id, contact_id)


@router.post(
    "/patients/{patient_id}/contacts/{contact_id}/retire",
    response_model=ContactView,
    summary="Stop using a contact (wrong or given-up number); kept as history",
)
def retire_contact(
    patient_id: int, contact_id: int, session: SessionDep, request: Request, principal: CanManage
) -> ContactView:
    """Stop sending to this contact and matching replies to it (a wrong or given-up
    number); it is kept as history with who retired it. 422 if it is already retired, 404
    for a contact the patient does not have.

    中文：停用此联系方式（号码错误或已停用）：不再发送、也不再用于匹配回复，保留为历史并记录操作人；
    已停用时返回 422，患者无此联系方式时返回 404。
    """
    require_patient_in_scope(session, principal, patient_id)
    audit_patients(request, patient_id)
    contacts.retire_contact(session, patient_id, contact_id, actor=principal.actor)
    return _view(session, patient_id, contact_id)
