"""The outbox: every message the embedded default delivered, readable without any provider."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel
from sqlmodel import Session, col, or_, select

from suifang.core.api.deps import SessionDep
from suifang.core.api.security import audit_patients, require
from suifang.core.models import DeliveryAttempt, Enrollment, Message, Ticket
from suifang.core.security.auth import Permission, Principal

router = APIRouter(tags=["outbox"])


class OutboxMessage(BaseModel):
    id: int
    patient_id: int
    enrollment_id: int | None
    ticket_id: int | None
    kind: str
    recipient: str | None = None
    """The member of staff a page is for (None: the patient)."""
    touchpoint_key: str | None
    locale: str
    subject: str | None
    body: str
    status: str
    channel: str | None
    created_at: dt.datetime
    sent_at: dt.datetime | None


class AttemptOut(BaseModel):
    """One try on one channel: what the cascade did, in order."""

    attempt: int
    channel: str
    outcome: str
    """accepted, permanent_error, transient_error, unavailable, …"""
    error: str | None
    provider_message_id: str | None
    cost: Decimal | None
    currency: str | None
    at: dt.datetime


class MessageDetail(OutboxMessage):
    status_detail: str | None
    delivered_at: dt.datetime | None
    read_at: dt.datetime | None
    attempts: list[AttemptOut]


def message_detail(
    session: Session, message_id: int, departments: list[str] | None = None
) -> MessageDetail | None:
    """A message with every delivery attempt, or None if there is none the caller may see."""
    message = session.get(Message, message_id)
    if message is None:
        return None
    if departments is not None:
        owner = None
        if message.enrollment_id is not None:
            enrollment = session.get(Enrollment, message.enrollment_id)
            owner = enrollment.department_code if enrollment else None
        elif message.ticket_id is not None:
            ticket = session.get(Ticket, message.ticket_id)
            owner = ticket.department_code if ticket else None
        if owner not in departments:
            return None
    attempts = session.exec(
        select(DeliveryAttempt)
        .where(DeliveryAttempt.message_id == message_id)
        .order_by(col(DeliveryAttempt.attempt), col(DeliveryAttempt.id))
    ).all()
    return MessageDetail.model_validate(
        {
            **OutboxMessage.model_validate(message, from_attributes=True).model_dump(),
            "status_detail": message.status_detail,
            "delivered_at": message.delivered_at,
            "read_at": message.read_at,
            "attempts": [AttemptOut.model_validate(a, from_attributes=True) for a in attempts],
        }
    )


def outbox_messages(
    session: Session,
    *,
    patient_id: int | None = None,
    enrollment_id: int | None = None,
    channel: str | None = "outbox",
    after_id: int = 0,
    limit: int = 50,
    departments: list[str] | None = None,
) -> list[OutboxMessage]:
    """Messages, newest first (or oldest first after ``after_id``, for following).

    ``departments`` (None: all) keeps only messages of those departments' journeys and tickets.
    """
    query = select(Message)
    if departments is not None:
        journeys = select(Enrollment.id).where(col(Enrollment.department_code).in_(departments))
        tickets = select(Ticket.id).where(col(Ticket.department_code).in_(departments))
        query = query.where(
            or_(col(Message.enrollment_id).in_(journeys), col(Message.ticket_id).in_(tickets))
        )
    if channel:
        query = query.where(Message.channel == channel)
    if patient_id is not None:
        query = query.where(Message.patient_id == patient_id)
    if enrollment_id is not None:
        query = query.where(Message.enrollment_id == enrollment_id)
    if after_id:
        query = query.where(col(Message.id) > after_id).order_by(col(Message.id))
    else:
        query = query.order_by(col(Message.id).desc())
    rows = session.exec(query.limit(limit)).all()
    return [OutboxMessage.model_validate(m, from_attributes=True) for m in rows]


@router.get(
    "/outbox", response_model=list[OutboxMessage], summary="Messages delivered to the outbox"
)
def outbox(
    session: SessionDep,
    request: Request,
    principal: Annotated[Principal, Depends(require(Permission.OUTBOX_READ))],
    patient_id: int | None = None,
    enrollment_id: int | None = None,
    all_channels: bool = False,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[OutboxMessage]:
    """The outbox channel's messages (``all_channels=true``: every channel's), newest first,
    by patient or journey; staff see their own departments' only. How the embedded default
    shows what would have been sent.

    中文：发件箱渠道的消息（``all_channels=true`` 时为所有渠道），最新在前，可按患者或旅程筛选；
    医护人员只能看到本科室的消息。
    """
    messages = outbox_messages(
        session,
        patient_id=patient_id,
        enrollment_id=enrollment_id,
        channel=None if all_channels else "outbox",
        limit=limit,
        departments=principal.scope,
    )
    audit_patients(request, *(m.patient_id for m in messages))
    return messages


@router.get(
    "/messages/{message_id}",
    response_model=MessageDetail,
    summary="A message and every delivery attempt",
)
def get_message(
    message_id: int,
    session: SessionDep,
    request: Request,
    principal: Annotated[Principal, Depends(require(Permission.OUTBOX_READ))],
) -> MessageDetail:
    """A message to a patient or a member of staff, with each attempt the channel cascade made
    (channel, outcome, error, the provider's id, cost, time), e.g. "dingtalk
    permanent_error, then sms accepted". 404 for a message outside the caller's departments.

    中文：一条消息及其每次投递尝试（渠道、结果、错误、服务商编号、费用、时间），例如
    “钉钉永久失败，随后短信已受理”。不在本科室范围内的消息返回 404。
    """
    detail = message_detail(session, message_id, principal.scope)
    if detail is None:
        raise HTTPException(status_code=404, detail=f"no message {message_id}")
    audit_patients(request, detail.patient_id)
    return detail
