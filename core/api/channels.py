"""Channels: which are usable, and the signed inbound webhooks providers call (public)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlmodel import Session, col, select

from suifang.core.api.deps import RuntimeDep, SessionDep
from suifang.core.api.errors import error_body
from suifang.core.api.security import audit_patients, require
from suifang.core.api.webhook_guard import RETRY_AFTER_SECONDS, WebhookLimits, webhook_limits
from suifang.core.channel_directory import ChannelDirectory
from suifang.core.channels import InboundRejected, InboundRequest
from suifang.core.contacts import contact_system
from suifang.core.db import in_thread
from suifang.core.models import Enrollment, InboundRecord, Ticket, WebhookRejection
from suifang.core.runtime import Runtime
from suifang.core.security.audit import record_audit
from suifang.core.security.auth import Permission, Principal
from suifang.core.security.webhook_rejections import record_rejection
from suifang.workflows.inbound import InboundFailure, InboundOutcome, receive_inbound

router = APIRouter(tags=["channels"])
webhooks = APIRouter(tags=["channels"])


def directory_for(request: Request) -> ChannelDirectory:
    return request.app.state.runtime.channels


class ChannelStatus(BaseModel):
    name: str
    available: bool
    problem: str | None
    contact_system: str | None = Field(
        description="The patient contacts it sends to (None: it needs none)."
    )
    settings: dict[str, str] = Field(
        description="Its SUIFANG_CHANNEL_<NAME>_* settings as set, secrets masked."
    )


def channel_statuses(directory: ChannelDirectory) -> list[ChannelStatus]:
    """Every installed channel: available or why not, what it sends to, its settings."""
    return [
        ChannelStatus(
            name=name,
            available=problem is None,
            problem=problem,
            contact_system=contact_system(directory.classes[name]),
            settings=directory.classes[name].settings_view(),
        )
        for name, problem in directory.status().items()
    ]


@router.get(
    "/channels",
    response_model=list[ChannelStatus],
    summary="Installed channels",
    dependencies=[Depends(require(Permission.CHANNELS_READ))],
)
def list_channels(request: Request) -> list[ChannelStatus]:
    """Each installed channel: whether it can send (or why not: a missing setting, a bad
    value), the contact system it sends to, and its settings as set, secrets masked.

    中文：已安装的各渠道：能否发送（不能时说明原因，如缺少或错误的配置）、发送到的联系方式类型、
    以及当前配置（密钥已隐藏）。
    """
    return channel_statuses(directory_for(request))


async def _inbound_request(request: Request) -> InboundRequest:
    return InboundRequest(
        method=request.method,
        path=str(request.url),
        headers=dict(request.headers),
        query=dict(request.query_params),
        body=await request.body(),
    )


_WEBHOOK_ACTION = "POST /channels/{name}/inbound"


def _source(request: Request) -> str:
    return request.client.host if request.client else "-"


async def _refuse(
    request: Request,
    runtime: Runtime,
    limits: WebhookLimits,
    name: str,
    incoming: InboundRequest,
    *,
    status_code: int,
    reason: str,
    verified: bool = False,
) -> Response:
    """Answer a refused call, recorded as metadata only while the channel's budget lasts."""
    source = _source(request)
    if not limits.count_refusal(source, name, verified=verified):
        return JSONResponse(
            status_code=429,
            content=error_body(
                "rate_limited",
                f"{reason} — and too many refused calls on channel {name!r} this minute: "
                "this one was not recorded (SUIFANG_WEBHOOK_FAILURES_PER_CHANNEL)",
            ),
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )

    def store() -> int:
        with Session(runtime.engine) as session:
            return record_rejection(
                session,
                channel=name,
                source=source,
                reason=reason,
                status_code=status_code,
                body=incoming.body,
                headers=incoming.headers,
                query=incoming.query,
                keep=runtime.settings.webhook_rejections_kept,
            )

    rejection_id = await in_thread(store)
    if status_code < 400:  # a replay: the provider gets what it expects, nothing happens
        return Response(status_code=status_code)
    return JSONResponse(
        status_code=status_code,
        content=error_body("inbound_rejected", reason, rejection_id=rejection_id),
    )


async def _audit_writes(
    request: Request, runtime: Runtime, name: str, outcomes: list[InboundOutcome], status: int
) -> None:
    """One audit record per webhook write (a stored reply, a ticket, a status update)."""

    def write() -> None:
        for outcome in outcomes:
            detail: dict[str, Any] = {"channel": name, "kind": outcome.kind}
            if outcome.ticket_id is not None:
                detail["ticket_id"] = outcome.ticket_id
            if outcome.enrollment_id is not None:
                detail["enrollment_id"] = outcome.enrollment_id
            record_audit(
                runtime.engine,
                actor=f"channel:{name}",
                role="webhook",
                action=_WEBHOOK_ACTION,
                resource="inbound",
                resource_id=str(outcome.record_id),
                patient_ids=[outcome.patient_id] if outcome.patient_id is not None else None,
                outcome="ok" if status < 400 else "not_found",
                status_code=status,
                request_id=getattr(request.state, "request_id", "-"),
                detail=detail,
            )

    await in_thread(write)


@webhooks.api_route(
    "/channels/{name}/inbound",
    methods=["POST"],
    summary="A provider's webhook: patient replies and delivery receipts",
    response_class=Response,
    responses={
        200: {
            "description": "Accepted (or a replay, which has no effect); the body the channel's "
            "provider expects back",
            "content": {
                "application/json": {"schema": {"type": "object"}, "example": {"ok": True}},
                "text/plain": {"schema": {"type": "string"}, "example": "success"},
                "application/xml": {
                    "schema": {"type": "string"},
                    "example": "<Response />",
                },
            },
        },
        400: {"description": "Malformed or too deeply nested body"},
        401: {"description": "Bad or expired signature"},
        404: {"description": "Unknown channel, or sender/message not matched (stored)"},
        413: {"description": "Body too large"},
        429: {"description": "Too many refused calls from this source or on this channel"},
    },
)
async def inbound(name: str, request: Request, runtime: RuntimeDep) -> Response:
    """Verified by the channel's own signature scheme, then claimed in the replay cache: a
    replay has no second effect. What a verified call carries is stored (encrypted); a
    refused call is recorded as metadata only (size, SHA-256, a few headers, the reason).
    Public (no token): each provider's signature is the credential.

    中文：服务商回调（公开，无需令牌，以各渠道签名验证）：患者回复与送达回执。验证后先在防重放缓存中登记，
    重放不会重复生效；已验证的内容加密保存，被拒绝的调用只记录元数据（大小、SHA-256、部分请求头、原因）。
    """
    limits = webhook_limits(request)
    if limits.source_blocked(_source(request)):
        return JSONResponse(
            status_code=429,
            content=error_body(
                "rate_limited",
                "too many refused webhook calls from this address; retry in a minute "
                "(SUIFANG_WEBHOOK_FAILURES_PER_SOURCE)",
            ),
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    directory = directory_for(request)
    incoming = await _inbound_request(request)
    if request.method == "GET":
        channel = directory.get(name)
        verify = getattr(channel, "verify_endpoint", None)
        if verify is None:
            return JSONResponse(
                status_code=405, content=error_body("method_not_allowed", "use POST")
            )
        try:
            return Response(content=verify(incoming), media_type="text/plain")
        except InboundRejected as exc:
            return await _refuse(
                request,
                runtime,
                limits,
                name,
                incoming,
                status_code=exc.status_code,
                reason=str(exc),
            )
    try:
        result = await receive_inbound(runtime, directory, name, incoming)
    except InboundFailure as exc:  # verified, stored, matched nobody
        outcome = InboundOutcome(record_id=exc.record_id, kind="unmatched")
        await _audit_writes(request, runtime, name, [outcome], exc.status_code)
        return JSONResponse(
            status_code=exc.status_code,
            content=error_body("inbound_rejected", str(exc), stored_as=exc.record_id),
        )
    except InboundRejected as exc:
        return await _refuse(
            request, runtime, limits, name, incoming, status_code=exc.status_code, reason=str(exc)
        )
    except RecursionError:  # a channel's own parser, past the nesting check: still a 4xx
        return await _refuse(
            request,
            runtime,
            limits,
            name,
            incoming,
            status_code=400,
            reason="the body nests too deeply to be read",
        )
    if result.replayed:
        await _refuse(
            request,
            runtime,
            limits,
            name,
            incoming,
            status_code=200,
            reason="replay of a call already taken: no effect",
            verified=True,
        )
        return Response(content=result.reply_body, media_type=result.reply_media_type)
    await _audit_writes(request, runtime, name, result.outcomes, 200)
    return Response(content=result.reply_body, media_type=result.reply_media_type)


# Providers such as WeChat verify the endpoint with a GET to the same address; its own
# operation id keeps the OpenAPI document valid (one id per operation).
webhooks.add_api_route(
    "/channels/{name}/inbound",
    inbound,
    methods=["GET"],
    operation_id="verify_inbound_endpoint",
    summary="A provider's endpoint check (e.g. WeChat's echostr handshake)",
    description=(
        "A provider checks the webhook address with a GET before sending to it: a channel "
        "that verifies endpoints checks the signature and answers what the provider expects "
        "(WeChat: its `echostr`); a channel without one (or an unknown name) answers 405. "
        "Public (no token); a "
        "refused check is recorded as metadata only.\n\n"
        "中文：服务商配置回调地址时的 GET 校验（如微信 echostr 握手）："
        "支持校验的渠道验证签名后按服务商要求返回（微信返回 echostr），"
        "不支持的渠道或未知渠道返回 405。公开接口，无需令牌；被拒绝的校验只记录元数据。"
    ),
    response_class=Response,
    responses={
        200: {
            "description": "What the provider expects back (WeChat: the `echostr` it sent)",
            "content": {
                "text/plain": {"schema": {"type": "string"}, "example": "5837263517928374651"}
            },
        },
        405: {"description": "This channel has no endpoint check: use POST"},
    },
)


class InboundView(BaseModel):
    id: int
    channel: str
    kind: str
    patient_id: int | None
    enrollment_id: int | None
    touchpoint_key: str | None
    ticket_id: int | None
    error: str | None
    payload: str
    received_at: dt.datetime


class WebhookRejectionView(BaseModel):
    id: int
    channel: str
    source: str
    reason: str
    status_code: int
    size: int
    body_sha256: str
    headers: dict[str, Any]
    received_at: dt.datetime


@router.get("/inbound", response_model=list[InboundView], summary="Stored inbound calls")
def list_inbound(
    session: SessionDep,
    request: Request,
    principal: Annotated[Principal, Depends(require(Permission.INBOUND_READ))],
    kind: str | None = None,
    channel: str | None = None,
    patient_id: int | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[InboundView]:
    """Replies, feedback, receipts and unmatched calls, newest first (payloads decrypted).
    Refused calls are not here: they are kept as metadata only (``/inbound/rejections``).

    中文：已保存的回调（患者回复、反馈、回执和未匹配的调用），最新在前，内容已解密；被拒绝的调用不在此，
    见 ``/inbound/rejections``。
    """
    query = select(InboundRecord)
    if kind:
        query = query.where(InboundRecord.kind == kind)
    if channel:
        query = query.where(InboundRecord.channel == channel)
    if patient_id is not None:
        query = query.where(InboundRecord.patient_id == patient_id)
    scope = principal.scope
    if scope is not None:
        journeys = select(Enrollment.id).where(col(Enrollment.department_code).in_(scope))
        tickets = select(Ticket.id).where(col(Ticket.department_code).in_(scope))
        query = query.where(
            col(InboundRecord.enrollment_id).in_(journeys)
            | col(InboundRecord.ticket_id).in_(tickets)
        )
    rows = session.exec(query.order_by(col(InboundRecord.id).desc()).limit(limit)).all()
    audit_patients(request, *(r.patient_id for r in rows))
    return [InboundView.model_validate(r, from_attributes=True) for r in rows]


@router.get(
    "/inbound/rejections",
    response_model=list[WebhookRejectionView],
    summary="Refused webhook calls (metadata only)",
    dependencies=[Depends(require(Permission.AUDIT_READ))],
)
def list_rejections(
    session: SessionDep,
    channel: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[WebhookRejectionView]:
    """Calls the webhook refused or found to be replays, newest first: size, SHA-256 of the
    body, a few headers, the source and the reason — never the body itself.

    中文：被回调接口拒绝或判定为重放的调用（最新在前）：大小、请求体 SHA-256、部分请求头、
    来源和原因，从不保存请求体本身。
    """
    query = select(WebhookRejection)
    if channel:
        query = query.where(WebhookRejection.channel == channel)
    rows = session.exec(query.order_by(col(WebhookRejection.id).desc()).limit(limit)).all()
    return [WebhookRejectionView.model_validate(r, from_attributes=True) for r in rows]
