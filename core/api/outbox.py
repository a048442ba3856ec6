"""The outbox: every message the embedded default delivered, readable without any provider."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel
from sqlmodel import Session, col, or_, select

from suifang.core.api.deps import SessionDep
from suifang.core.api.security import audit_patients, require
from suifang.core.models import Enrollment, Message, Ticket
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
    """The outbox channel's messages (``all_channels=true``: every channel's)."""
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
