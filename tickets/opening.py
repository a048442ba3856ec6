"""Opening a ticket: its row (idempotent on a key) and the input its workflow starts with.

Apart from the service so that the ticket workflow's activities (a sub-task is a ticket too)
and the journey's activities can open tickets without importing the service, which starts
the ticket workflow and so imports it.
"""

from __future__ import annotations

import datetime as dt
import functools
import uuid

from pydantic import BaseModel
from sqlmodel import Session, col, select

from suifang.core.enums import TicketSource, TicketStatus, Tier
from suifang.core.errors import NotFoundError, ValidationFailed
from suifang.core.models import Department, Encounter, Enrollment, Patient, Ticket
from suifang.core.triage import TriageResult
from suifang.tickets.core import TicketSetup
from suifang.tickets.sla import SlaPolicy, default_policy

__all__ = ["TicketStart", "build_ticket", "sla_policy", "ticket_workflow_id"]


@functools.cache
def sla_policy() -> SlaPolicy:
    """The SLA policy tickets start with (``templates/sla/policy.yaml``), loaded once."""
    return default_policy()


def ticket_workflow_id(ticket_id: int, token: str) -> str:
    return f"ticket-{ticket_id}-{token}"


class TicketStart(BaseModel):
    ticket_id: int
    workflow_id: str
    setup: TicketSetup
    created: bool


def build_ticket(
    session: Session,
    *,
    patient_id: int,
    source: TicketSource,
    summary: str,
    triage: TriageResult,
    opened_at: dt.datetime,
    enrollment_id: int | None = None,
    alert_id: int | None = None,
    department: str | None = None,
    tier: Tier | None = None,
    parent_ticket_id: int | None = None,
    idempotency_key: str | None = None,
) -> TicketStart:
    """Create the ticket row (idempotent on ``idempotency_key``) and its workflow's input."""
    if idempotency_key is not None:
        existing = session.exec(
            select(Ticket).where(Ticket.idempotency_key == idempotency_key)
        ).first()
        if existing is not None:
            return TicketStart(
                ticket_id=existing.id,  # type: ignore[arg-type]
                workflow_id=existing.workflow_id,
                setup=_setup(session, existing, triage, department, tier, parent_ticket_id),
                created=False,
            )
    patient = session.get(Patient, patient_id)
    if patient is None:
        raise NotFoundError(f"no patient {patient_id}")
    if department is not None and session.get(Department, department) is None:
        raise ValidationFailed(f"department: unknown department {department!r}")
    ticket = Ticket(
        workflow_id=f"pending-{uuid.uuid4().hex}",
        idempotency_key=idempotency_key,
        source=source,
        patient_id=patient_id,
        enrollment_id=enrollment_id,
        alert_id=alert_id,
        parent_ticket_id=parent_ticket_id,
        category=triage.category,
        clinical=triage.clinical,
        department_code=department,
        tier=tier or triage.suggested_tier,
        priority=triage.urgency,
        status=TicketStatus.NEW,
        summary=summary,
        red_flags=triage.red_flags,
        opened_at=opened_at,
    )
    session.add(ticket)
    session.flush()
    ticket.workflow_id = ticket_workflow_id(ticket.id, uuid.uuid4().hex[:8])  # type: ignore[arg-type]
    session.add(ticket)
    session.commit()
    return TicketStart(
        ticket_id=ticket.id,  # type: ignore[arg-type]
        workflow_id=ticket.workflow_id,
        setup=_setup(session, ticket, triage, department, tier, parent_ticket_id),
        created=True,
    )


def _setup(
    session: Session,
    ticket: Ticket,
    triage: TriageResult,
    department: str | None,
    tier: Tier | None,
    parent_ticket_id: int | None,
) -> TicketSetup:
    patient = session.get(Patient, ticket.patient_id)
    discharge_department = None
    if ticket.enrollment_id is not None:
        enrollment = session.get(Enrollment, ticket.enrollment_id)
        discharge_department = enrollment.department_code if enrollment else None
    else:
        encounter = session.exec(
            select(Encounter)
            .where(Encounter.patient_id == ticket.patient_id)
            .order_by(col(Encounter.discharged_at).desc())
        ).first()
        discharge_department = encounter.department_code if encounter else None
    return TicketSetup(
        ticket_id=ticket.id,  # type: ignore[arg-type]
        patient_id=ticket.patient_id,
        source=TicketSource(ticket.source),
        summary=ticket.summary,
        opened_at=ticket.opened_at,
        triage=triage,
        policy=sla_policy(),
        enrollment_id=ticket.enrollment_id,
        discharge_department=discharge_department,
        department=department,
        tier=tier,
        parent_ticket_id=parent_ticket_id,
        locale=patient.locale if patient else "zh-CN",
    )
