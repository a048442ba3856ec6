"""Accounts, tokens, the audit log, and patients (with consent) — the administrative API."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Query, Request, Response, status
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
    """Who this token acts as: username, role, departments, permissions and, for an
    integrator token, its scopes. Any valid token: to check a token before using it.

    中文：当前令牌对应的账号：用户名、角色、科室、权限，对接系统令牌另含其授权范围。任何有效令牌均可调用。
    """
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


_USER_EXAMPLES = {
    "zh": {
        "summary": "A cardiology nurse",
        "value": {
            "username": "nurse.chen",
            "display_name": "陈护士",
            "role": "nurse",
            "departments": ["cardiology"],
        },
    },
    "en": {
        "summary": "An integrator account for the HIS discharge feed",
        "value": {"username": "his.adt", "display_name": "HIS ADT feed", "role": "integrator"},
    },
}


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
    """Every account, staff and integrator, active or not, by id. Administrators only.

    中文：所有账号（医护人员与对接系统，含已停用），按编号排序。仅管理员可用。
    """
    users = session.exec(select(StaffUser).order_by(col(StaffUser.id))).all()
    return [UserView.model_validate(u, from_attributes=True) for u in users]


@router.post("/users", response_model=UserView, status_code=status.HTTP_201_CREATED)
def add_user(
    body: Annotated[UserIn, Body(openapi_examples=_USER_EXAMPLES)], session: SessionDep, _: Admin
) -> UserView:
    """Create a staff or integrator account; it signs in with a token issued next
    (``POST /users/{user_id}/tokens``). Doctors, nurses and agents need a department; an
    unknown department or a username already taken is 422. Administrators only.

    中文：新建医护人员或对接系统账号，之后为其签发令牌；医生、护士、客服须至少属于一个科室，
    科室不存在或用户名已被占用时返回 422。仅管理员可用。
    """
    user = create_user(session, **body.model_dump())
    return UserView.model_validate(user, from_attributes=True)


@router.post("/users/{user_id}/deactivate", response_model=UserView)
def deactivate_user(user_id: int, session: SessionDep, _: Admin) -> UserView:
    """None of the account's tokens work from now on (a member of staff who left); the
    account is kept for the audit log. 404 for an unknown user. Administrators only.

    中文：停用账号（如人员离职）：其所有令牌立即失效，账号保留供审计；用户不存在时返回 404。
    仅管理员可用。
    """
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


_TOKEN_EXAMPLES = {
    "zh": {
        "summary": "A nurse's token for the ward's follow-up station",
        "value": {"name": "心内科护士站", "expires_in_days": 90},
    },
    "en": {
        "summary": "The HIS discharge feed: cardiology and orthopaedics, intake only",
        "value": {
            "name": "his-adt-feed",
            "expires_in_days": 365,
            "departments": ["cardiology", "orthopaedics"],
            "scopes": ["intake"],
        },
    },
}


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
    user_id: int,
    body: Annotated[TokenIn, Body(openapi_examples=_TOKEN_EXAMPLES)],
    session: SessionDep,
    runtime: RuntimeDep,
    _: Admin,
) -> NewToken:
    """Issue an API token for an account; the token is in this answer only (only its hash is
    kept). Every token expires. An integrator token is limited to departments and scopes,
    or hospital-wide with ``unscoped``; a staff token acts with its account's role and
    departments. 422 for a lifetime or limits that do not fit; 404 for an unknown user.

    中文：为账号签发 API 令牌，令牌只在本次响应中出现（仅保存其哈希），均有有效期；
    对接系统令牌须限定科室和授权范围（或明确 ``unscoped``），医护令牌按账号角色与科室授权。
    有效期或限定不合规返回 422，账号不存在返回 404。
    """
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
    """Every token (or one account's): name, prefix, expiry, revocation, last use, limits;
    never the token itself. Administrators only.

    中文：令牌列表（可按账号筛选）：名称、前缀、到期、吊销、最近使用时间和限定范围；从不返回令牌本身。
    仅管理员可用。
    """
    query = select(ApiToken)
    if user_id is not None:
        query = query.where(ApiToken.user_id == user_id)
    return [TokenView.model_validate(t, from_attributes=True) for t in session.exec(query).all()]


@router.post("/tokens/{token_id}/revoke", response_model=TokenView)
def revoke(token_id: int, session: SessionDep, _: Admin) -> TokenView:
    """The token stops working at once; revoking it again changes nothing. 404 for an
    unknown token. Administrators only.

    中文：吊销令牌，立即失效；重复吊销不改变结果。令牌不存在时返回 404。仅管理员可用。
    """
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
    """Who did what to which record and patient, and with what outcome, newest first:
    filter by actor, patient, resource, outcome and time (``since`` ≤ at < ``until``).

    中文：审计日志（最新在前）：谁在何时对哪条记录、哪位患者做了什么及结果；可按操作人、患者、资源、
    结果和时间筛选。
    """
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
    """A patient's record with contacts masked and their consent state; never the ID number
    or address. 404 for a patient who does not exist or is not the caller's departments'.

    中文：患者信息（联系方式已脱敏）及联系同意状态，不含身份证号和地址；患者不存在或不在本科室范围内时
    返回 404。
    """
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
    """A patient's measurements (answers, devices, lab results), oldest first, all or one
    ``indicator`` (e.g. ``sbp``): to draw a trend. 404 as for the patient.

    中文：患者的指标测量记录（问卷、设备、检验结果），按时间先后排列，可只看某一指标（如 ``sbp``），
    用于绘制趋势；患者不可见时返回 404。
    """
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


_CONSENT_EXAMPLES = {
    "zh": {"summary": "Said on a follow-up call", "value": {"source": "随访电话"}},
    "en": {"summary": "Asked for at the patient services desk", "value": {"source": "desk"}},
}


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
    body: Annotated[ConsentIn, Body(openapi_examples=_CONSENT_EXAMPLES)],
    runtime: RuntimeDep,
    session: SessionDep,
    request: Request,
    principal: Annotated[Principal, Depends(require(Permission.PATIENTS_CONSENT))],
) -> ConsentOut:
    """Record that the patient withdrew consent: every send checks it from now on, on every
    channel, and every active or paused journey is stopped (their ids are answered). The
    record names ``source`` and who called. 404 for a patient the caller cannot see.

    中文：患者撤回联系同意：此后所有渠道的发送均会拦截，并终止其全部进行中或暂停的随访旅程（返回其编号）；
    记录来源和操作人。患者不可见时返回 404。
    """
    await in_session_thread(session, require_patient_in_scope, principal, patient_id)
    audit_patients(request, patient_id)
    stopped = await withdraw_consent(
        runtime, session, patient_id, source=f"{body.source} ({principal.actor})"
    )
    return ConsentOut(patient_id=patient_id, do_not_contact=True, stopped_journeys=stopped)


class CodecPayload(BaseModel):
    """A Temporal payload in its protobuf JSON form: bytes as base64."""

    metadata: dict[str, str] = Field(
        default_factory=dict, description="e.g. encoding, encryption-key-id; values base64"
    )
    data: str = Field("", description="base64")


class CodecPayloads(BaseModel):
    """What a Temporal codec server takes and answers (Temporal Web UI, ``temporal`` CLI)."""

    payloads: list[CodecPayload] = Field(default_factory=list)


_CODEC_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"$ref": "#/components/schemas/CodecPayloads"},
                "examples": {
                    "encrypted": {
                        "summary": "A payload as Temporal stores it (decode)",
                        "value": {
                            "payloads": [
                                {
                                    "metadata": {
                                        "encoding": "YmluYXJ5L2VuY3J5cHRlZC1hZXMtMjU2LWdjbQ==",
                                        "encryption-key-id": "M2Y5YTFjMGI3ZDJlNGE2NQ==",
                                    },
                                    "data": "O8cc4sGLsxDOzZBX9HowXHXwHdqqRmsor2Xoxc+HTT0yNlyyILJXU"
                                    "eTY187zDZJj",
                                }
                            ]
                        },
                    },
                    "plain": {
                        "summary": "A plain JSON payload (encode)",
                        "value": {
                            "payloads": [
                                {
                                    "metadata": {"encoding": "anNvbi9wbGFpbg=="},
                                    "data": "eyJlbnJvbGxtZW50X2lkIjogMjA0OCwgInRvdWNocG9pbnRfa2V5"
                                    "IjogImRheTcifQ==",
                                }
                            ]
                        },
                    },
                },
            }
        },
    }
}


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
    responses={200: {"model": CodecPayloads, "description": "The payloads, decrypted"}},
    openapi_extra=_CODEC_BODY,
)
async def codec_decode(request: Request, runtime: RuntimeDep) -> Response:
    """Decrypt workflow payloads for an operator reading a history in the Temporal Web UI or
    CLI (point its codec endpoint at ``/codec``); payloads this codec did not encrypt come
    back unchanged. 400 for a body that is not Payloads JSON, 422 for payloads no
    configured key opens. Audited.

    中文：Temporal 编解码服务的解密接口：供运维人员在 Temporal Web UI 或命令行中查看工作流历史
    （编解码地址设为 ``/codec``）；非本编解码器加密的内容原样返回。请求体格式错误返回 400，
    无法解密返回 422。调用会被审计。
    """
    return await _codec_call(request, runtime, "decode")


@router.post(
    "/codec/encode",
    summary="Codec server: encrypt Temporal payloads",
    dependencies=[Depends(require(Permission.CODEC_DECODE))],
    responses={200: {"model": CodecPayloads, "description": "The payloads, encrypted"}},
    openapi_extra=_CODEC_BODY,
)
async def codec_encode(request: Request, runtime: RuntimeDep) -> Response:
    """Encrypt payloads with the current key, as workers do: for an operator who sends a
    signal or starts a workflow from the Temporal Web UI or CLI. 400 for a body that is not
    Payloads JSON.

    中文：Temporal 编解码服务的加密接口：用当前密钥加密，与 worker 相同；
    供运维人员在 Temporal Web UI 或命令行中发送信号、启动工作流时使用。请求体格式错误返回 400。
    """
    return await _codec_call(request, runtime, "encode")
