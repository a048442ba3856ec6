"""The department API: ticket queues, ticket detail and history, and every department action."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import (
    APIRouter,
    Body,
    Depends,
    Header,
    HTTPException,
    Query,
    Request,
    Response,
    status,
)
from pydantic import BaseModel, Field
from sqlmodel import Session, col, select

from suifang.core.api.deps import RuntimeDep, SessionDep
from suifang.core.api.idempotency import Claim, claim_key, remember_result
from suifang.core.api.security import audit_patients, require, require_department_in_scope
from suifang.core.db import in_session_thread
from suifang.core.enums import TicketStatus, Tier
from suifang.core.models import Enrollment, RoutingRule, StaffNotification
from suifang.core.security.auth import Permission, Principal, Role, patient_in_scope
from suifang.tickets import routing, service
from suifang.tickets.core import Action, ActorAction, PatientEvent
from suifang.tickets.service import TicketDetail, TicketIn, TicketSummary

router = APIRouter(tags=["tickets"])

CanRead = Annotated[Principal, Depends(require(Permission.TICKETS_READ))]
CanCreate = Annotated[Principal, Depends(require(Permission.TICKETS_CREATE))]
CanAct = Annotated[Principal, Depends(require(Permission.TICKETS_ACT))]
CanPatientEvent = Annotated[Principal, Depends(require(Permission.TICKETS_PATIENT_EVENT))]


_TICKET_EXAMPLES = {
    "zh": {
        "summary": "A patient's message from the app, during a journey",
        "value": {
            "patient_id": 1024,
            "text": "支架术后第5天，晚上睡觉时胸口有点闷，要不要紧？",
            "source": "patient_message",
            "enrollment_id": 2048,
            "idempotency_key": "app-msg-88f2c1",
        },
    },
    "en": {
        "summary": "A complaint taken at the patient services desk",
        "value": {
            "patient_id": 1025,
            "text": "There was nowhere to park at the outpatient building on Saturday morning.",
            "source": "complaint",
        },
    },
}
_ACTION_EXAMPLES = {
    "zh": {
        "summary": "reply: the answer the patient gets",
        "value": {
            "action": "reply",
            "text": "您好，胸闷时请先休息并测量血压；如持续超过15分钟或伴出汗，请立即拨打120。",
        },
    },
    "en": {
        "summary": "transfer: to the department that owns it",
        "value": {
            "action": "transfer",
            "department": "logistics",
            "text": "Parking complaint: for logistics to answer",
        },
    },
    "claim": {"summary": "claim: take it yourself", "value": {"action": "claim"}},
}
_ACK_EXAMPLES = {
    "zh": {"summary": "With a note", "value": {"note": "已收到，正在电话联系患者"}},
    "en": {"summary": "With a note", "value": {"note": "calling now"}},
}
_PATIENT_EVENT_EXAMPLES = {
    "zh": {
        "summary": "The patient replied",
        "value": {"kind": "reply", "text": "已经按医生说的测了血压，135/85，现在好多了。"},
    },
    "en": {
        "summary": "The patient replied",
        "value": {"kind": "reply", "text": "Thank you, the pain is much better today."},
    },
    "satisfaction": {
        "summary": "The patient scored their satisfaction",
        "value": {"kind": "satisfaction", "score": 5},
    },
}


class ActionIn(BaseModel):
    """A department action on a ticket."""

    action: Action
    text: str | None = Field(None, max_length=4000, description="Reply, note, reason…")
    department: str | None = Field(None, max_length=64, description="For transfer/collaborate.")
    assignee: str | None = Field(None, max_length=64, description="For claim (default: you).")


@router.get("/tickets", response_model=list[TicketSummary], summary="A ticket queue")
def queue(
    session: SessionDep,
    request: Request,
    principal: CanRead,
    department: str | None = None,
    status_: Annotated[TicketStatus | None, Query(alias="status")] = None,
    tier: Tier | None = None,
    assignee: str | None = None,
    due_before: dt.datetime | None = None,
    breached: bool | None = None,
    open_only: Annotated[bool, Query(alias="open")] = False,
    patient_id: int | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[TicketSummary]:
    """Tickets by due time (soonest first): filter by department, status, tier, due, breached.
    Staff see their own departments' tickets only.

    中文：工单队列，按到期时间排序（最早在前），可按科室、状态、层级、到期时间、是否超时筛选；
    医护人员只能看到本科室的工单。
    """
    tickets = service.list_tickets(
        session,
        departments=principal.scope,
        department=department,
        status=status_,
        tier=tier,
        assignee=assignee,
        due_before=due_before,
        breached=breached,
        open_only=open_only,
        patient_id=patient_id,
        limit=limit,
        offset=offset,
    )
    audit_patients(request, *(t.patient_id for t in tickets))
    return tickets


@router.post(
    "/tickets",
    response_model=TicketSummary,
    status_code=status.HTTP_201_CREATED,
    summary="Open a ticket: a patient's message, complaint or suggestion",
)
async def create(
    body: Annotated[TicketIn, Body(openapi_examples=_TICKET_EXAMPLES)],
    runtime: RuntimeDep,
    session: SessionDep,
    request: Request,
    response: Response,
    principal: CanCreate,
    idempotency_key: Annotated[str | None, Header(max_length=160)] = None,
) -> TicketSummary:
    """Classified (L1 triage: category, urgency, red flags, knowledge answer) and routed.

    Staff open tickets only for patients their departments already see (an encounter, a
    journey or a ticket there) and only in their own departments: involving another
    department is a transfer or a collaboration on the ticket. A patient who does not exist
    and one who is not yours get the same 404.

    Send an ``Idempotency-Key`` header (or ``idempotency_key`` in the body): a retry of the
    same request with the same key returns the same ticket and never opens a second one; the
    same key with a different body is refused (422 ``idempotency_key_reused``). Keys are
    yours alone and are remembered for ``SUIFANG_IDEMPOTENCY_KEY_HOURS`` (24 h).

    中文：为患者开工单（留言、投诉或建议），自动分类（类别、紧急程度、危险信号、知识库答复）并分派科室；
    医护只能为本科室已接诊的患者、在本科室开单。可用 Idempotency-Key 幂等重试。
    """
    key = idempotency_key or body.idempotency_key

    def check_and_claim(session: Session) -> Claim | None:
        may_open_ticket(session, principal, body)
        if key is None:
            return None
        return claim_key(
            session,
            principal,
            "POST /tickets",
            key,
            body,
            hours=runtime.settings.idempotency_key_hours,
        )

    claim = await in_session_thread(session, check_and_claim)
    body = body.model_copy(update={"idempotency_key": claim.internal_key if claim else None})
    audit_patients(request, body.patient_id)
    summary = await service.open_ticket(runtime, body, actor=principal.actor)
    audit_patients(request, summary.patient_id)  # whose data the answer holds
    if claim is not None:
        response.status_code = await in_session_thread(
            session, remember_result, claim, summary.id, status.HTTP_201_CREATED
        )
    return summary


def _audit_ticket_patient(
    session: Session, request: Request, ticket_id: int, principal: Principal
) -> None:
    audit_patients(request, service.get_ticket(session, ticket_id, principal.scope).patient_id)


def may_open_ticket(session: SessionDep, principal: Principal, body: TicketIn) -> None:
    """Refuse a ticket that would reach beyond what the caller may already see."""
    scope = principal.scope  # None: every department (admins, unscoped integrator tokens)
    if not patient_in_scope(session, body.patient_id, scope):
        raise HTTPException(status_code=404, detail=f"no patient {body.patient_id}")
    if scope is None:
        return
    if body.enrollment_id is not None:
        enrollment = session.get(Enrollment, body.enrollment_id)
        if enrollment is None or enrollment.department_code not in scope:
            raise HTTPException(status_code=404, detail=f"no journey {body.enrollment_id}")
    if body.department is not None and principal.role is Role.INTEGRATOR:
        require_department_in_scope(principal, body.department, "department")
    if body.department is not None and body.department not in scope:
        raise HTTPException(
            status_code=403,
            detail=(
                f"department: you open tickets in your own departments ({', '.join(scope)}); "
                f"to involve {body.department}, transfer the ticket or ask it to collaborate"
            ),
        )


@router.get("/tickets/{ticket_id}", response_model=TicketDetail, summary="A ticket and its history")
def detail(
    ticket_id: int, session: SessionDep, request: Request, principal: CanRead
) -> TicketDetail:
    """A ticket with its SLA clocks, paging state, every event and every note. 404 for a
    ticket that does not exist or is outside the caller's departments.

    中文：工单详情：SLA 时限、急诊呼叫状态、全部处理记录和备注；不存在或不在本科室范围内时返回 404。
    """
    ticket = service.ticket_detail(session, ticket_id, principal.scope)
    audit_patients(request, ticket.patient_id)
    return ticket


@router.post(
    "/tickets/{ticket_id}/actions",
    response_model=TicketDetail,
    summary="Claim, reply, note, transfer, collaborate, escalate, wait on patient, resolve, reopen",
)
async def act(
    ticket_id: int,
    body: Annotated[ActionIn, Body(openapi_examples=_ACTION_EXAMPLES)],
    runtime: RuntimeDep,
    session: SessionDep,
    request: Request,
    principal: CanAct,
) -> TicketDetail:
    """Applied by the ticket's workflow; refused with 422 and the reason if it cannot apply.
    Answers the ticket as it is after the action.

    中文：处理工单：认领、回复、备注、转科、协作、升级、等待患者、解决、重新打开等，由工单工作流执行；
    无法执行时返回 422 并说明原因。返回处理后的工单。
    """
    await in_session_thread(session, _audit_ticket_patient, request, ticket_id, principal)
    action = ActorAction(
        action=body.action,
        actor=principal.actor,
        text=body.text,
        department=body.department,
        assignee=body.assignee,
    )
    return await service.act_on_ticket(
        runtime, session, ticket_id, action, departments=principal.scope
    )


class AcknowledgeIn(BaseModel):
    """Acknowledging an emergency page: the clinician has it (stops the escalation)."""

    note: str | None = Field(
        None, max_length=4000, description="An internal note, e.g. 'calling now'."
    )


@router.post(
    "/tickets/{ticket_id}/ack",
    response_model=TicketDetail,
    summary="Acknowledge the on-call page of an emergency ticket",
)
async def acknowledge(
    ticket_id: int,
    body: Annotated[AcknowledgeIn, Body(openapi_examples=_ACK_EXAMPLES)],
    runtime: RuntimeDep,
    session: SessionDep,
    request: Request,
    principal: CanAct,
) -> TicketDetail:
    """Stops the page's escalation and makes you the ticket's owner; 422 if the ticket has
    no page waiting (none was sent, or someone acknowledged it already).

    中文：确认急诊工单的值班呼叫：停止逐级升级呼叫，并由确认人负责该工单；
    没有待确认的呼叫时返回 422。
    """
    await in_session_thread(session, _audit_ticket_patient, request, ticket_id, principal)
    action = ActorAction(action="acknowledge", actor=principal.actor, text=body.note)
    return await service.act_on_ticket(
        runtime, session, ticket_id, action, departments=principal.scope
    )


@router.post(
    "/tickets/{ticket_id}/patient-events",
    status_code=status.HTTP_202_ACCEPTED,
    summary="The patient replied, or scored their satisfaction (1–5)",
    response_class=Response,
    responses={
        202: {
            "description": "Handed to the ticket's workflow; the body is empty",
            "content": {
                "text/plain": {"schema": {"type": "string", "maxLength": 0}, "example": ""}
            },
        }
    },
)
async def patient_event(
    ticket_id: int,
    body: Annotated[PatientEvent, Body(openapi_examples=_PATIENT_EVENT_EXAMPLES)],
    runtime: RuntimeDep,
    session: SessionDep,
    request: Request,
    principal: CanPatientEvent,
) -> Response:
    """The patient's reply to a ticket, or their satisfaction score (1–5), from the patient
    app or another integrator; a closed ticket's workflow takes it up again. 202 with an
    empty body; 404 for a ticket outside the caller's departments.

    中文：患者对工单的回复或满意度评分（1–5 分），来自患者 App 或其他对接系统；
    已关闭的工单会重新接收。返回 202，无响应体；不在本科室范围内的工单返回 404。
    """
    await in_session_thread(session, _audit_ticket_patient, request, ticket_id, principal)
    await service.patient_event(runtime, session, ticket_id, body)
    return Response(status_code=status.HTTP_202_ACCEPTED)


class RoutingRuleView(BaseModel):
    category: str
    department: str


@router.get(
    "/routing",
    response_model=list[RoutingRuleView],
    summary="The routing table",
    dependencies=[Depends(require(Permission.ROUTING_READ))],
)
def routing_table(session: SessionDep) -> list[RoutingRuleView]:
    """Which department each ticket category goes to, by category. Categories without a
    rule go to the patient's discharge department (clinical) or the patient services desk.

    中文：工单分派表：各工单类别对应的科室；无规则的类别分派到患者出院科室（临床类）或患者服务中心。
    """
    rules = session.exec(select(RoutingRule).order_by(col(RoutingRule.category))).all()
    return [RoutingRuleView(category=r.category, department=r.department_code) for r in rules]


class RoutingRuleIn(BaseModel):
    department: str = Field(min_length=1, max_length=64)


_ROUTE_EXAMPLES = {
    "parking": {
        "summary": "PUT /routing/parking: parking complaints to logistics",
        "value": {"department": "logistics"},
    }
}


@router.put(
    "/routing/{category}",
    response_model=RoutingRuleView,
    summary="Route a category",
    dependencies=[Depends(require(Permission.ROUTING_WRITE))],
)
def set_route(
    category: str,
    body: Annotated[RoutingRuleIn, Body(openapi_examples=_ROUTE_EXAMPLES)],
    session: SessionDep,
    request: Request,
) -> RoutingRuleView:
    """Route ``category`` (one of the ticket categories; an unknown one is refused with the
    close one meant) to an existing department. The audit record says from where to where.
    An unknown category is 422, an unknown department 404.

    中文：设置某工单类别的分派科室，审计记录写明修改前后；未知类别返回 422（提示最接近的类别），
    科室不存在返回 404。
    """
    change = routing.set_rule(session, category, body.department)
    request.state.audit_detail = change.audit_detail()
    return RoutingRuleView(category=change.category, department=body.department)


@router.delete(
    "/routing/{category}",
    status_code=204,
    summary="Remove a category's rule",
    dependencies=[Depends(require(Permission.ROUTING_WRITE))],
)
def delete_route(category: str, session: SessionDep, request: Request) -> None:
    """Its tickets then go to the patient's discharge department (clinical categories) or the
    patient services desk, unless a plugin routes them. 404 if the category has no rule.

    中文：删除某工单类别的分派规则：此后该类工单分派到患者出院科室（临床类）或患者服务中心，
    除非插件另行分派；该类别无规则时返回 404。
    """
    change = routing.delete_rule(session, category)
    request.state.audit_detail = change.audit_detail()


class NotificationView(BaseModel):
    id: int
    ticket_id: int
    department_code: str | None
    kind: str
    clock: str
    due_at: dt.datetime
    actions: list[str]
    delivered_via: str | None
    created_at: dt.datetime


@router.get(
    "/notifications", response_model=list[NotificationView], summary="SLA warnings and breaches"
)
def notifications(
    session: SessionDep,
    principal: Annotated[Principal, Depends(require(Permission.NOTIFICATIONS_READ))],
    department: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[NotificationView]:
    """SLA warnings and breaches raised for tickets (first response, resolution), newest
    first, with how they were delivered; staff see their own departments' only.

    中文：工单 SLA 预警与超时通知（首次响应、解决时限），最新在前，含送达方式；
    医护人员只能看到本科室的通知。
    """
    query = select(StaffNotification)
    if department:
        query = query.where(StaffNotification.department_code == department)
    if principal.scope is not None:
        query = query.where(col(StaffNotification.department_code).in_(principal.scope))
    rows = session.exec(query.order_by(col(StaffNotification.id).desc()).limit(limit)).all()
    return [NotificationView.model_validate(r, from_attributes=True) for r in rows]
