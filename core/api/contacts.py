"""A patient's contact points: list them, prefer one, retire one (see suifang.core.contacts)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from suifang.core import contacts
from suifang.core.api.deps import SessionDep
from suifang.core.api.security import audit_patients, require, require_patient_in_scope
from suifang.core.security.auth import Permission, Principal

router = APIRouter(tags=["patients"])

CanRead = Annotated[Principal, Depends(require(Permission.PATIENTS_READ))]
CanManage = Annotated[Principal, Depends(require(Permission.PATIENTS_CONSENT))]


class ContactView(BaseModel):
    id: int
    system: str = Field(description="phone, email, wechat or app")
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
    require_patient_in_scope(session, principal, patient_id)
    audit_patients(request, patient_id)
    return [ContactView(**view) for view in contacts.contact_views(session, patient_id)]


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
    require_patient_in_scope(session, principal, patient_id)
    audit_patients(request, patient_id)
    contacts.retire_contact(session, patient_id, contact_id, actor=principal.actor)
    return _view(session, patient_id, contact_id)
