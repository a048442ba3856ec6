"""Channels: which are usable, and the signed inbound webhooks providers call (public)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlmodel import col, select

from suifang.core.api.deps import RuntimeDep, SessionDep
from suifang.core.api.errors import error_body
from suifang.core.api.security import audit_patients, require
from suifang.core.channel_directory import ChannelDirectory
from suifang.core.channels import InboundRejected, InboundRequest
from suifang.core.models import Enrollment, InboundRecord, Ticket
from suifang.core.security.auth import Permission, Principal
from suifang.workflows.inbound import InboundFailure, receive_inbound

router = APIRouter(tags=["channels"])
webhooks = APIRouter(tags=["channels"])


def directory_for(request: Request) -> ChannelDirectory:
    return request.app.state.runtime.channels


class ChannelStatus(BaseModel):
    name: str
    available: bool
    problem: str | None
    capabilities: list[str]


@router.get(
    "/channels",
    response_model=list[ChannelStatus],
    summary="Installed channels",
    dependencies=[Depends(require(Permission.CHANNELS_READ))],
)
def list_channels(request: Request) -> list[ChannelStatus]:
    directory = directory_for(request)
    return [
        ChannelStatus(
            name=name,
            available=problem is None,
            problem=problem,
            capabilities=sorted(directory.classes[name].capabilities),
        )
        for name, problem in directory.status().items()
    ]


async def _inbound_request(request: Request) -> InboundRequest:
    return InboundRequest(
        method=request.method,
        path=str(request.url),
        headers=dict(request.headers),
        query=dict(request.query_params),
        body=await request.body(),
    )


@webhooks.api_route(
    "/channels/{name}/inbound",
    methods=["POST"],
    summary="A provider's webhook: patient replies and delivery receipts",
    response_class=Response,
    responses={
        200: {"description": "Accepted; the body is what the provider expects back"},
        400: {"description": "Malformed body"},
        401: {"description": "Bad or expired signature"},
        404: {"description": "Unknown channel, or sender/message not matched (stored)"},
        413: {"description": "Body too large"},
    },
)
async def inbound(name: str, request: Request, runtime: RuntimeDep) -> Response:
    """Verified by the channel's own signature scheme; every call is stored before it is used."""
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
            return JSONResponse(
                status_code=exc.status_code, content=error_body("rejected", str(exc))
            )
    try:
        result = await receive_inbound(runtime, directory, name, incoming)
    except InboundFailure as exc:
        return JSONResponse(
            status_code=exc.status_code,
            content=error_body("inbound_rejected", str(exc), stored_as=exc.record_id),
        )
    return Response(content=result.reply_body, media_type=result.reply_media_type)


# Providers such as WeChat verify the endpoint with a GET to the same address; its own
# operation id keeps the OpenAPI document valid (one id per operation).
webhooks.add_api_route(
    "/channels/{name}/inbound",
    inbound,
    methods=["GET"],
    operation_id="verify_inbound_endpoint",
    summary="A provider's endpoint check (e.g. WeChat's echostr handshake)",
    response_class=Response,
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
    """Replies, feedback, receipts and refused calls, newest first (payloads decrypted)."""
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
