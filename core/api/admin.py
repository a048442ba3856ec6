"""Accounts, tokens, the audit log, and patients (with consent) — the administrative API."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field
from sqlmodel import col, select

from suifang.core.api.deps import RuntimeDep, SessionDep
from suifang.core.api.security import (
    PrincipalDep,
    audit_patients,
    require,
    require_patient_in_scope,
)
from suifang.core.contacts import contact_views
from suifang.core.db import in_session_thread
from suifang.core.models import ApiToken, Observation, Patient, StaffUser
from suifang.core.security.audit import query_audit
from suifang.core.security.auth import (
    Permission,
    Principal,
    Role,
    Scope,
    create_user,
    issue_token,
    revoke_token,
)
from suifang.core.security.lifetimes import token_lifetime
from suifang.workflows.journey_service import withdraw_consent

router = APIRouter(tags=["administration"])

Admin = Annotated[Principal, Depends(require(Permission.USERS_ADMIN))]


class WhoAmI(BaseModel):
    username: str
    role: str
    departments: list[str]
    permissions: list[str]
    scopes: list[str] | None = Field(description="A scoped integrator token's scopes, else null.")
    unscoped: bool = Field(description="An integrator token created hospital-wide.")


@router.get("/whoami", response_model=WhoAmI, summary="The account behind this token")
def whoami(principal: PrincipalDep) -> WhoAmI:
    return WhoAmI(
        username=principal.username,
        role=principal.role.value,
        departments=list(principal.departments),
        permissions=sorted(p.value for p in principal.permissions),
        scopes=None if principal.scopes is None else sorted(principal.scopes),
        unscoped=principal.unscoped,
    )


class UserIn(BaseModel):
    username: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9._-]*$")
    display_name: str = Field(min_length=1, max_length=128)
    role: Role
    departments: list[str] = Field(default_factory=list)


class UserView(BaseModel):
    id: int
    username: str
    display_name: str
    role: str
    departments: list[str]
    active: bool
    created_at: dt.datetime


@router.get("/users", response_model=list[UserView], summary="Staff and integrator accounts")
def list_users(session: SessionDep, _: Admin) -> list[UserView]:
    users = session.exec(select(StaffUser).order_by(col(StaffUser.id))).all()
    return [UserView.model_validate(u, from_attributes=True) for u in users]


@router.post("/users", response_model=UserView, status_code=status.HTTP_201_CREATED)
def add_user(body: UserIn, session: SessionDep, _: Admin) -> UserView:
    user = create_user(session, **body.model_dump())
    return UserView.model_validate(user, from_attributes=True)


@router.post("/users/{user_id}/deactivate", response_model=UserView)
def deactivate_user(user_id: int, session: SessionDep, _: Admin) -> UserView:
    user = session.get(StaffUser, user_id)
    if user is None:
        raise HTTPException(status_code=404, detail=f"no user {user_id}")
    user.active = False
    session.add(user)
    session.commit()
    return UserView.model_validate(user, from_attributes=True)


class TokenIn(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    expires_in_days: float = Field(
        90,
        allow_inf_nan=False,
        description="Lifetime in days: from 1 minute (0.000695) to SUIFANG_TOKEN_MAX_LIFETIME_DAYS "
        "(365 by default). Every token expires.",
    )
    departments: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        default_factory=list,
        max_length=100,
        description="Integrator tokens: the departments it acts for (required unless unscoped).",
    )
    scopes: list[Scope] = Field(
        default_factory=list,
        max_length=len(Scope),
        description="Integrator tokens: the routes its feed needs (required unless unscoped).",
    )
    unscoped: bool = Field(
        False, description="Integrator tokens: every department and route, on purpose."
    )


class TokenView(BaseModel):
    id: int
    user_id: int
    name: str
    prefix: str
    created_at: dt.datetime
    expires_at: dt.datetime | None
    revoked_at: dt.datetime | None
    last_used_at: dt.datetime | None
    departments: list[str]
    scopes: list[str]
    unscoped: bool


class NewToken(TokenView):
    token: str = Field(description="Shown once: only its hash is kept.")


@router.post(
    "/users/{user_id}/tokens",
    response_model=NewToken,
    status_code=status.HTTP_201_CREATED,
    summary="Issue a token (shown once)",
)
def add_token(
    user_id: int, body: TokenIn, session: SessionDep, runtime: RuntimeDep, _: Admin
) -> NewToken:
    try:
        expires = token_lifetime(
            body.expires_in_days, max_days=runtime.settings.token_max_lifetime_days
        )
    except ValueError as exc:  # answered like any other invalid field: 422, where and why
        raise RequestValidationError(
            [{"loc": ("body", "expires_in_days"), "msg": str(exc), "type": "value_error"}]
        ) from None
    user = session.get(StaffUser, user_id)
    if user is None:
        raise HTTPException(status_code=404, detail=f"no user {user_id}")
    token, record = issue_token(
        session,
        user,
        name=body.name,
        expires_in=expires,
        departments=body.departments,
        scopes=list(body.scopes),
        unscoped=body.unscoped,
    )
    return NewToken(
        token=token, **TokenView.model_validate(record, from_attributes=True).model_dump()
    )


@router.get(
    "/tokens", response_model=list[TokenView], summary="Tokens (never the tokens themselves)"
)
def list_tokens(session: SessionDep, _: Admin, user_id: int | None = None) -> list[TokenView]:
    query = select(ApiToken)
    if user_id is not None:
        query = query.where(ApiToken.user_id == user_id)
    return [TokenView.model_validate(t, from_attributes=True) for t in session.exec(query).all()]


@router.post("/tokens/{token_id}/revoke", response_model=TokenView)
def revoke(token_id: int, session: SessionDep, _: Admin) -> TokenView:
    return TokenView.model_validate(revoke_token(session, token_id), from_attributes=True)


class AuditView(BaseModel):
    id: int
    at: dt.datetime
    actor: str
    role: str
    action: str
    resource: str
    resource_id: str | None
    patient_id: int | None
    outcome: str
    status_code: int | None
    request_id: str


@router.get("/audit", response_model=list[AuditView], summary="The audit log")
def audit(
    session: SessionDep,
    _: Annotated[Principal, Depends(require(Permission.AUDIT_READ))],
    actor: str | None = None,
    patient_id: int | None = None,
    resource: str | None = None,
    outcome: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AuditView]:
    rows = query_audit(
        session, actor=actor, patient_id=patient_id, resource=resource, outcome=outcome,
        since=since, until=until, limit=limit,
    )  # fmt: skip
    return [AuditView.model_validate(r, from_attributes=True) for r in rows]


class PatientView(BaseModel):
    id: int
    external_id: str
    name: str
    sex: str | None
    birth_date: dt.date | None
    locale: str
    timezone: str
    preferred_channels: list[str]
    contact_points: list[dict[str, Any]]
    contact_consent: bool
    consent_at: dt.datetime | None
    consent_source: str | None
    do_not_contact: bool
    do_not_contact_at: dt.datetime | None
    do_not_contact_source: str | None


@router.get(
    "/patients/{patient_id}", response_model=PatientView, summary="A patient (contacts masked)"
)
def get_patient(
    patient_id: int,
    session: SessionDep,
    request: Request,
    principal: Annotated[Principal, Depends(require(Permission.PATIENTS_READ))],
) -> PatientView:
    require_patient_in_scope(session, principal, patient_id)
    audit_patients(request, patient_id)
    patient = session.get(Patient, patient_id)
    if patient is None:
        raise HTTPException(status_code=404, detail=f"no patient {patient_id}")
    return PatientView(
        **patient.model_dump(
            exclude={"id_number", "id_number_hash", "address", "created_at", "updated_at"}
        ),
        contact_points=contact_views(session, patient_id),
    )


class ObservationView(BaseModel):
    indicator: str
    value: float
    unit: str | None
    observed_at: dt.datetime
    source: str


@router.get(
    "/patients/{patient_id}/observations",
    response_model=list[ObservationView],
    summary="Indicator trends (blood pressure, glucose, pain…) over time",
)
def observations(
    patient_id: int,
    session: SessionDep,
    request: Request,
    principal: Annotated[Principal, Depends(require(Permission.PATIENTS_READ))],
    indicator: str | None = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
) -> list[ObservationView]:
    require_patient_in_scope(session, principal, patient_id)
    audit_patients(request, patient_id)
    query = select(Observation).where(Observation.patient_id == patient_id)
    if indicator:
        query = query.where(Observation.indicator == indicator)
    rows = session.exec(query.order_by(col(Observation.observed_at)).limit(limit)).all()
    return [ObservationView.model_validate(o, from_attributes=True) for o in rows]


class ConsentIn(BaseModel):
    source: str = Field(min_length=1, max_length=64, description="How it was said: phone, WeChat…")
    reason: str | None = Field(None, max_length=128)


class ConsentOut(BaseModel):
    patient_id: int
    do_not_contact: bool
    stopped_journeys: list[int]


@router.post(
    "/patients/{patient_id}/do-not-contact",
    response_model=ConsentOut,
    summary="Consent withdrawn: stop all contact, everywhere, at once",
)
async def do_not_contact(
    patient_id: int,
    body: ConsentIn,
    runtime: RuntimeDep,
    session: SessionDep,
    request: Request,
    principal: Annotated[Principal, Depends(require(Permission.PATIENTS_CONSENT))],
) -> ConsentOut:

    await in_session_thread(session, require_patient_in_scope, principal, patient_id)
    audit_patients(request, patient_id)
    stopped = await withdraw_consent(
        runtime, session, patient_id, source=f"{body.source} ({principal.actor})"
    )
    return ConsentOut(patient_id=patient_id, do_not_contact=True, stopped_journeys=stopped)


async def _codec_call(request: Request, runtime: Any, operation: str) -> Response:
    from google.protobuf import json_format
    from temporalio.api.common.v1 import Payloads

    body = await request.body()
    try:
        payloads = json_format.Parse(body, Payloads())
    except json_format.ParseError as exc:
        raise HTTPException(status_code=400, detail=f"not a Payloads JSON object: {exc}") from None
    codec = runtime.codec
    try:
        done = await getattr(codec, operation)(list(payloads.payloads))
    except Exception:  # noqa: BLE001 -- wrong key or corrupted payload: say so, nothing more
        raise HTTPException(status_code=422, detail=f"cannot {operation} these payloads") from None
    return Response(
        content=json_format.MessageToJson(Payloads(payloads=done)), media_type="application/json"
    )


@router.post(
    "/codec/decode",
    summary="Codec server: decrypt Temporal payloads (authorised operators only)",
    dependencies=[Depends(require(Permission.CODEC_DECODE))],
)
async def codec_decode(request: Request, runtime: RuntimeDep) -> Response:
    return await _codec_call(request, runtime, "decode")


@router.post(
    "/codec/encode",
    summary="Codec server: encrypt Temporal payloads",
    dependencies=[Depends(require(Permission.CODEC_DECODE))],
)
async def codec_encode(request: Request, runtime: RuntimeDep) -> Response:
    return await _codec_call(request, runtime, "encode")
