"""The ticket workflow's side effects, as idempotent activities."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field
from sqlmodel import Session, col, select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from suifang.core.channels import OutboundMessage
from suifang.core.db import in_thread, utcnow
from suifang.core.delivery import (
    NOTICE_CHANNELS,
    DeliveryRequest,
    Recipient,
    RetryableDelivery,
    SendOutcome,
    deliver,
)
from suifang.core.enums import Priority, TicketSource, Tier
from suifang.core.models import Department, Patient, PatientTag, Ticket
from suifang.core.rendering import MessageContext, MessageRenderer, patient_context
from suifang.core.runtime import Runtime
from suifang.core.triage import RoutingRequest, TriageResult
from suifang.tickets.core import PageOutcome, TicketSnapshot
from suifang.tickets.oncall import (
    ChainMember,
    Paging,
    on_call_chain,
    paging_policy_of,
    staff_addresses,
)
from suifang.tickets.opening import TicketStart, build_ticket
from suifang.tickets.records import (
    Supervisor,
    UnknownTicket,
    recorded_staff_notice,
    save_snapshot,
    save_staff_notice,
    supervisor_of,
)
from suifang.tickets.routing import route

__all__ = [
    "PageInput",
    "PatientNoticeInput",
    "RouteInput",
    "StaffNoticeInput",
    "SubTaskInput",
    "TicketActivities",
]


class RouteInput(BaseModel):
    ticket_id: int
    category: str
    clinical: bool
    source: TicketSource
    tier: Tier
    priority: Priority
    discharge_department: str | None = None


class PatientNoticeInput(BaseModel):
    idempotency_key: str
    ticket_id: int
    patient_id: int
    kind: str
    text: str | None = None
    advice: list[str] = Field(default_factory=list)
    """Emergency advice templates (templates/messages/<locale>/advice/<id>.j2), in order."""


class PageInput(BaseModel):
    """Page the on-call chain of ``department`` from chain position ``step``."""

    key: str
    ticket_id: int
    department: str
    step: int
    escalate: bool = True


class StaffNoticeInput(BaseModel):
    event_key: str
    ticket_id: int
    kind: Literal["warning", "breach", "page_failed", "page_unanswered", "fyi"]
    clock: str
    department: str | None
    due_at: dt.datetime
    actions: list[str] = Field(default_factory=list)


class SubTaskInput(BaseModel):
    idempotency_key: str
    parent_ticket_id: int
    department: str
    text: str
    actor: str
    opened_at: dt.datetime


class TicketActivities:
    def __init__(self, runtime: Runtime) -> None:
        # Everything else comes from the runtime at call time (tests switch it per test).
        self.runtime = runtime
        self.renderer = MessageRenderer()

    def all(self) -> list[Any]:
        return [
            self.route_ticket,
            self.notify_patient,
            self.page_on_call,
            self.notify_staff,
            self.sync_ticket,
            self.open_sub_task,
        ]

    @activity.defn(name="route_ticket")
    def route_ticket(self, request: RouteInput) -> str:
        with Session(self.runtime.engine) as session:
            tags = session.exec(
                select(PatientTag.tag)
                .join(Ticket, col(Ticket.patient_id) == col(PatientTag.patient_id))
                .where(Ticket.id == request.ticket_id)
                .order_by(col(PatientTag.tag))
            ).all()
            return route(
                session,
                self.runtime.plugins,
                RoutingRequest(
                    category=request.category,
                    clinical=request.clinical,
                    source=request.source,
                    tier=request.tier,
                    priority=request.priority,
                    discharge_department=request.discharge_department,
                    patient_tags=list(tags),
                ),
            )

    @activity.defn(name="notify_patient")
    async def notify_patient(self, notice: PatientNoticeInput) -> SendOutcome:
        locale, context, due_text, assignee, channels = await in_thread(
            self._patient_notice_context, notice
        )
        advice = [
            self.renderer.file(
                f"advice/{item}", locale, context, crisis_line=self.runtime.settings.crisis_line
            )
            for item in notice.advice
            if self.renderer.has(f"advice/{item}", locale)
        ]
        body = self.renderer.file(
            f"ticket_{notice.kind}",
            locale,
            context,
            ticket=notice.ticket_id,
            text=notice.text or "",
            due=due_text,
            assignee=assignee,
            advice=advice,
        )
        try:
            return await deliver(
                self.runtime.engine,
                self.runtime.channels,
                DeliveryRequest(
                    idempotency_key=notice.idempotency_key,
                    patient_id=notice.patient_id,
                    ticket_id=notice.ticket_id,
                    kind=f"ticket_{notice.kind}",
                    subject=body[:40],
                    body=body,
                    locale=locale,
                    channels=channels,
                ),
                now=activity.info().current_attempt_scheduled_time,
            )
        except RetryableDelivery as exc:
            raise ApplicationError(str(exc), type="TransientChannelError") from None

    def _patient_notice_context(
        self, notice: PatientNoticeInput
    ) -> tuple[str, MessageContext, str, str, list[str]]:
        """The notice's locale, message context, due time, assignee and channels."""
        with Session(self.runtime.engine) as session:
            patient = session.get(Patient, notice.patient_id)
            ticket = session.get(Ticket, notice.ticket_id)
            if patient is None or ticket is None:
                raise ApplicationError("patient or ticket missing", non_retryable=True)
            department = (
                session.get(Department, ticket.department_code) if ticket.department_code else None
            )
            locale = patient.locale
            context = patient_context(
                patient,
                department,
                hospital=self.runtime.settings.hospital_name,
                today=utcnow().date(),
            )
            due = ticket.first_response_due or ticket.resolution_due
            due_text = (
                due.astimezone(ZoneInfo(patient.timezone)).strftime("%m-%d %H:%M") if due else ""
            )
            channels = list(patient.preferred_channels) or NOTICE_CHANNELS
            return locale, context, due_text, ticket.assignee or "", channels

    @activity.defn(name="page_on_call")
    async def page_on_call(self, request: PageInput) -> PageOutcome:
        """Page the department's on-call chain from ``step`` on: the first person one of the
        paging channels accepts the page for is paged (idempotent per person and page)."""
        at = activity.info().current_attempt_scheduled_time
        settings = self.runtime.settings
        paging = await in_thread(self._paging_context, request, at)
        chain, policy, department, addresses = (
            paging.chain,
            paging.policy,
            paging.department,
            paging.addresses,
        )
        patient_id, red_flags, category, priority = (
            paging.patient_id,
            paging.red_flags,
            paging.category,
            paging.priority,
        )
        delay = policy.delay(request.step)
        if not chain:
            return PageOutcome(
                accepted=False, escalate_after=delay, repeat_final=policy.repeat_final
            )
        locale = settings.staff_locale
        department_name = (
            (department.name_en if locale == "en" else department.name_zh)
            if department
            else request.department
        )
        for position in range(min(request.step, len(chain) - 1), len(chain)):
            member = chain[position]
            body = self.renderer.file(
                "page",
                locale,
                MessageContext(
                    name=member.display_name,
                    department=department_name,
                    hospital=settings.hospital_name,
                ),
                ticket=request.ticket_id,
                concepts=", ".join(red_flags) or category,
                emergency=priority == Priority.EMERGENCY,
                escalated=request.step > 0,
                role=member.role,
            )
            try:
                outcome = await deliver(
                    self.runtime.engine,
                    self.runtime.channels,
                    DeliveryRequest(
                        idempotency_key=f"{request.key}:{position}",
                        patient_id=patient_id,
                        ticket_id=request.ticket_id,
                        kind="page",
                        subject=body[:40],
                        body=body,
                        locale=locale,
                        channels=list(policy.channels),
                        recipient=member.username,
                        fail_over_at_once=True,
                    ),
                    now=at,
                    patient=Recipient(patient_id, [], True, addresses[member.username]),
                )
            except RetryableDelivery as exc:
                raise ApplicationError(str(exc), type="TransientChannelError") from None
            if outcome.delivered:
                return PageOutcome(
                    accepted=True,
                    step=position,
                    recipient=member.username,
                    role=member.role,
                    department=member.department,
                    channel=outcome.channel,
                    next_step=position + 1 if position + 1 < len(chain) else None,
                    escalate_after=policy.delay(position),
                    repeat_final=policy.repeat_final,
                    message_id=outcome.message_id,
                )
        return PageOutcome(accepted=False, escalate_after=delay, repeat_final=policy.repeat_final)

    def _paging_context(self, request: PageInput, at: dt.datetime) -> _PagingContext:
        with Session(self.runtime.engine, expire_on_commit=False) as session:
            ticket = session.get(Ticket, request.ticket_id)
            if ticket is None:
                raise ApplicationError(f"ticket {request.ticket_id} missing", non_retryable=True)
            chain = on_call_chain(session, request.department, at)
            return _PagingContext(
                chain=chain,
                policy=paging_policy_of(session, request.department),
                department=session.get(Department, request.department),
                addresses={
                    member.username: staff_addresses(session, member.username) for member in chain
                },
                patient_id=ticket.patient_id,
                red_flags=list(ticket.red_flags),
                category=ticket.category,
                priority=ticket.priority,
            )

    @activity.defn(name="notify_staff")
    async def notify_staff(self, notice: StaffNoticeInput) -> str | None:
        """Record the warning or breach for the department; e-mail its supervisor if possible."""
        # No connection is held while the e-mail goes out (see worker.py: activities never
        # await with one checked out).
        recorded, delivered_via, supervisor = await in_thread(self._staff_notice_state, notice)
        if recorded:
            return delivered_via
        email = self.runtime.channels.get("email")
        if email is not None and supervisor is not None and supervisor.email:
            body = _staff_notice_text(notice, supervisor.department_name)
            try:
                await email.send(
                    OutboundMessage(
                        idempotency_key=notice.event_key,
                        patient_id=0,
                        address=supervisor.email,
                        subject=f"[suifang] SLA {notice.kind}: ticket {notice.ticket_id}",
                        body=body,
                        locale="en",
                    )
                )
                delivered_via = "email"
            except Exception:  # noqa: BLE001 -- the record below is the notification of last resort
                delivered_via = None
        await in_thread(self._save_staff_notice, notice, delivered_via)
        return delivered_via

    def _staff_notice_state(
        self, notice: StaffNoticeInput
    ) -> tuple[bool, str | None, Supervisor | None]:
        """Whether the notice was recorded already (and how it went out), and the supervisor."""
        with self.runtime.engine.connect() as connection:
            recorded, delivered_via = recorded_staff_notice(connection, notice.event_key)
            if recorded:
                return True, delivered_via, None
            supervisor = supervisor_of(connection, notice.department) if notice.department else None
            return False, delivered_via, supervisor

    def _save_staff_notice(self, notice: StaffNoticeInput, delivered_via: str | None) -> None:
        with self.runtime.engine.begin() as connection:
            save_staff_notice(
                connection,
                {
                    "event_key": notice.event_key,
                    "ticket_id": notice.ticket_id,
                    "department_code": notice.department,
                    "kind": notice.kind,
                    "clock": notice.clock,
                    "due_at": notice.due_at,
                    "actions": notice.actions,
                    "delivered_via": delivered_via,
                },
            )

    @activity.defn(name="sync_ticket")
    def sync_ticket(self, snapshot: TicketSnapshot) -> None:
        """Write the read model and the new history lines (idempotent on their sequence numbers)."""
        try:
            with self.runtime.engine.begin() as connection:
                save_snapshot(connection, snapshot)
        except UnknownTicket as exc:
            raise ApplicationError(str(exc), non_retryable=True) from None

    @activity.defn(name="open_sub_task")
    def open_sub_task(self, request: SubTaskInput) -> TicketStart:
        """The row of a collaboration sub-task in another department (the workflow starts it)."""
        with Session(self.runtime.engine) as session:
            parent = session.get(Ticket, request.parent_ticket_id)
            if parent is None:
                raise ApplicationError("parent ticket missing", non_retryable=True)
            return build_ticket(
                session,
                patient_id=parent.patient_id,
                source=TicketSource(parent.source),
                summary=request.text,
                triage=TriageResult(
                    category=parent.category,
                    urgency=Priority(parent.priority),
                    confidence=1.0,
                    suggested_tier=Tier(parent.tier),
                    clinical=parent.clinical,
                ),
                opened_at=request.opened_at,
                enrollment_id=parent.enrollment_id,
                department=request.department,
                tier=Tier(parent.tier),
                parent_ticket_id=parent.id,
                idempotency_key=request.idempotency_key,
            )


@dataclasses.dataclass(frozen=True)
class _PagingContext:
    """What paging a department's on-call chain needs from the database, read at once."""

    chain: list[ChainMember]
    policy: Paging
    department: Department | None
    addresses: dict[str, dict[str, str]]
    patient_id: int
    red_flags: list[str]
    category: str
    priority: str


def _staff_notice_text(notice: StaffNoticeInput, department: str) -> str:
    if notice.kind == "page_failed":
        return (
            f"EMERGENCY ticket {notice.ticket_id} ({department}): nobody on the on-call chain "
            "could be paged. Find a clinician for it now and acknowledge it in suifang."
        )
    if notice.kind == "page_unanswered":
        return (
            f"EMERGENCY ticket {notice.ticket_id} ({department}): the on-call pages were not "
            "acknowledged. Find a clinician for it now and acknowledge it in suifang."
        )
    if notice.kind == "fyi":
        return f"Ticket {notice.ticket_id} concerns a patient of {department}: for information."
    verb = "breached" if notice.kind == "breach" else "is close to breaching"
    actions = ", ".join(notice.actions) or "none"
    return (
        f"Ticket {notice.ticket_id} ({department}) {verb} its {notice.clock} SLA, due "
        f"{notice.due_at:%Y-%m-%d %H:%M} UTC. Actions: {actions}."
    )
