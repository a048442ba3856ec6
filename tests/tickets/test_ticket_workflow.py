"""Tickets end to end on the time-skipping server, through the department API with real tokens."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlmodel import Session, col, select
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from suifang.core.api import create_app
from suifang.core.db import utcnow
from suifang.core.enums import Priority, TicketSource, Tier
from suifang.core.models import Encounter, Message, Patient, StaffNotification, Ticket
from suifang.core.runtime import Runtime
from suifang.core.security.auth import create_user, issue_token
from suifang.core.triage import TriageResult
from suifang.tickets.calendar import BusinessCalendar
from suifang.tickets.opening import build_ticket, sla_policy
from suifang.tickets.workflow import FeedbackTicketWorkflow, TicketInput

SHANGHAI = ZoneInfo("Asia/Shanghai")


async def settle(check: Any, timeout: float = 10.0) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not (result := check()):
        if loop.time() > deadline:
            raise AssertionError("not reached in time")
        await asyncio.sleep(0.05)
    return result


def patient(runtime: Runtime, name: str = "王秀英") -> int:
    with Session(runtime.engine) as session:
        row = Patient(
            external_id=f"P-{name}", name=name, sex="female", preferred_channels=["outbox"]
        )
        session.add(row)
        session.commit()
        # Discharged from cardiology: its staff may open tickets for them.
        session.add(
            Encounter(
                patient_id=row.id,  # type: ignore[arg-type]
                external_id=f"V-{name}",
                department_code="cardiology",
                discharged_at=utcnow() - dt.timedelta(days=3),
            )
        )
        session.commit()
        return row.id  # type: ignore[return-value]


def token(
    runtime: Runtime,
    username: str,
    role: str,
    departments: list[str] | None = None,
    **limits: Any,
) -> str:
    """A token for a new account; ``limits`` are an integrator token's scopes, departments
    or ``unscoped``."""
    with Session(runtime.engine) as session:
        user = create_user(
            session, username=username, display_name=username, role=role, departments=departments
        )
        value, _ = issue_token(session, user, name="test", **limits)
        return value


def patient_app(runtime: Runtime) -> str:
    """The patient app's token: it relays messages of any patient, so it is hospital-wide —
    on purpose (a new patient has no department yet for a scoped token to name)."""
    return token(runtime, "app", "integrator", unscoped=True)


@pytest.fixture
async def api(
    runtime: Runtime, journey_worker: WorkflowEnvironment
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(runtime)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://suifang.test"
    ) as client:
        yield client


def ticket_row(runtime: Runtime, ticket_id: int) -> Ticket:
    with Session(runtime.engine) as session:
        row = session.get(Ticket, ticket_id)
        assert row is not None
        return row


def auth(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


async def test_a_complaint_is_routed_acknowledged_and_worked_by_its_department(
    runtime: Runtime, journey_worker: WorkflowEnvironment, api: httpx.AsyncClient
) -> None:
    patient_id = patient(runtime)
    integrator = patient_app(runtime)
    logistics = token(runtime, "zhang.logistics", "agent", ["logistics"])
    billing = token(runtime, "li.billing", "agent", ["billing"])
    created = await api.post(
        "/tickets",
        json={
            "patient_id": patient_id,
            "text": "停车场收费太贵了,而且排队很久才能进去",
            "source": "complaint",
        },
        headers=auth(integrator),
    )
    assert created.status_code == 201, created.text
    ticket_id = created.json()["id"]
    row = await settle(
        lambda: ticket_row(runtime, ticket_id).department_code and ticket_row(runtime, ticket_id)
    )
    assert (row.category, row.department_code, row.status) == ("parking", "logistics", "assigned")
    assert row.first_response_due is not None
    acknowledged = await settle(lambda: _messages(runtime, ticket_id))
    assert acknowledged[0].kind == "ticket_received"
    assert "后勤保障部" in acknowledged[0].body

    # Another department cannot see it, not even that it exists.
    assert (await api.get(f"/tickets/{ticket_id}", headers=auth(billing))).status_code == 404
    assert ticket_id not in [
        t["id"] for t in (await api.get("/tickets", headers=auth(billing))).json()
    ]
    queue = (await api.get("/tickets", params={"open": True}, headers=auth(logistics))).json()
    assert [t["id"] for t in queue] == [ticket_id]

    claimed = await api.post(
        f"/tickets/{ticket_id}/actions", json={"action": "claim"}, headers=auth(logistics)
    )
    assert claimed.json()["assignee"] == "zhang.logistics"
    replied = await api.post(
        f"/tickets/{ticket_id}/actions",
        json={"action": "reply", "text": "已反馈给停车场管理方,周一起增加一个入口。"},
        headers=auth(logistics),
    )
    assert replied.json()["first_response_at"] is not None
    resolved = await api.post(
        f"/tickets/{ticket_id}/actions",
        json={"action": "resolve", "text": "新入口已开通"},
        headers=auth(logistics),
    )
    detail = resolved.json()
    assert detail["status"] == "resolved"
    history = [(e["actor"], e["action"]) for e in detail["events"]]
    assert ("zhang.logistics", "claim") in history
    assert ("zhang.logistics", "resolve") in history
    kinds = [
        m.kind
        for m in await settle(
            lambda: len(_messages(runtime, ticket_id)) >= 5 and _messages(runtime, ticket_id)
        )
    ]
    assert kinds == [
        "ticket_received",
        "ticket_assigned",
        "ticket_reply",
        "ticket_resolved",
        "ticket_satisfaction",
    ]

    # A low satisfaction score reopens it.
    scored = await api.post(
        f"/tickets/{ticket_id}/patient-events",
        json={"kind": "satisfaction", "score": 1},
        headers=auth(integrator),
    )
    assert scored.status_code == 202
    reopened = await settle(
        lambda: (
            ticket_row(runtime, ticket_id).status == "reopened" and ticket_row(runtime, ticket_id)
        )
    )
    assert (reopened.reopen_count, reopened.satisfaction) == (1, 1)


def _messages(runtime: Runtime, ticket_id: int) -> list[Message]:
    with Session(runtime.engine) as session:
        return list(
            session.exec(
                select(Message).where(Message.ticket_id == ticket_id).order_by(col(Message.id))
            ).all()
        )


async def test_bad_actions_are_refused_with_a_reason_and_change_nothing(
    runtime: Runtime, journey_worker: WorkflowEnvironment, api: httpx.AsyncClient
) -> None:
    patient_id = patient(runtime)
    nurse = token(runtime, "nurse.wang", "nurse", ["cardiology", "patient_services"])
    created = await api.post(
        "/tickets",
        json={"patient_id": patient_id, "text": "吃了新开的药以后一直头晕,要不要停药?"},
        headers=auth(nurse),
    )
    ticket_id = created.json()["id"]
    await settle(lambda: ticket_row(runtime, ticket_id).department_code)
    before = (await api.get(f"/tickets/{ticket_id}", headers=auth(nurse))).json()
    unknown = await api.post(
        f"/tickets/{ticket_id}/actions",
        json={"action": "transfer", "department": "nowhere"},
        headers=auth(nurse),
    )
    assert unknown.status_code == 422
    assert "unknown department 'nowhere'" in unknown.json()["error"]["message"]
    reopen = await api.post(
        f"/tickets/{ticket_id}/actions", json={"action": "reopen"}, headers=auth(nurse)
    )
    assert reopen.status_code == 422
    assert "only a resolved or closed ticket can be reopened" in reopen.json()["error"]["message"]
    garbage = await api.post(
        f"/tickets/{ticket_id}/actions", json={"action": "delete"}, headers=auth(nurse)
    )
    assert garbage.status_code == 422
    assert "body.action" in garbage.json()["error"]["message"]
    after = (await api.get(f"/tickets/{ticket_id}", headers=auth(nurse))).json()
    assert after["events"] == before["events"]
    assert after["status"] == before["status"]


async def test_red_flag_text_reaches_l3_in_the_first_workflow_task(
    runtime: Runtime, journey_worker: WorkflowEnvironment, api: httpx.AsyncClient
) -> None:
    patient_id = patient(runtime)
    integrator = patient_app(runtime)
    created = await api.post(
        "/tickets",
        json={"patient_id": patient_id, "text": "胸口压着疼,一直出冷汗,喘不上气"},
        headers=auth(integrator),
    )
    ticket = created.json()
    assert (ticket["tier"], ticket["priority"]) == ("L3", "emergency")
    handle = journey_worker.client.get_workflow_handle(
        ticket_row(runtime, ticket["id"]).workflow_id
    )
    await settle(lambda: _messages(runtime, ticket["id"]))
    scheduled = []
    async for event in handle.fetch_history_events():
        if event.HasField("activity_task_scheduled_event_attributes"):
            scheduled.append(event.activity_task_scheduled_event_attributes.activity_type.name)
        if event.HasField("workflow_task_completed_event_attributes") and scheduled:
            break
    # The very first thing the ticket does is tell the patient to call 120.
    assert scheduled[0] == "notify_patient"
    first = _messages(runtime, ticket["id"])[0]
    assert first.kind == "ticket_emergency"
    assert "120" in first.body


async def _start_with_policy(
    runtime: Runtime, env: WorkflowEnvironment, calendar: BusinessCalendar, opened: dt.datetime
) -> tuple[int, WorkflowHandle]:
    policy = sla_policy()
    policy = policy.model_copy(update={"calendars": {**policy.calendars, "business": calendar}})
    with Session(runtime.engine) as session:
        start = build_ticket(
            session,
            patient_id=patient(runtime, "张伟"),
            source=TicketSource.PATIENT_MESSAGE,
            # Not a health matter, so it runs on the business calendar (clinical clocks are 24/7).
            summary="复诊想改到下个月,怎么改预约?",
            triage=TriageResult(
                category="appointment",
                urgency=Priority.ROUTINE,
                confidence=0.9,
                suggested_tier=Tier.L2,
                clinical=False,
            ),
            opened_at=opened,
            department="cardiology",
        )
    setup = start.setup.model_copy(update={"policy": policy})
    handle = await env.client.start_workflow(
        FeedbackTicketWorkflow.run,
        TicketInput(setup=setup),
        id=start.workflow_id,
        task_queue=runtime.settings.task_queue,
    )
    return start.ticket_id, handle


async def test_sla_warning_and_breach_fire_exactly_across_a_weekend_and_a_holiday(
    runtime: Runtime, journey_worker: WorkflowEnvironment
) -> None:
    env = journey_worker
    now = (await env.get_current_time()).astimezone(SHANGHAI)
    # Move to the next Friday 16:00 local; the Monday after is a (hospital) holiday.
    friday = (now + dt.timedelta(days=(4 - now.weekday()) % 7 or 7)).replace(
        hour=16, minute=0, second=0, microsecond=0
    )
    await env.sleep(friday - now)
    monday = (friday + dt.timedelta(days=3)).date()
    business = sla_policy().calendar("business")
    calendar = business.model_copy(update={"holidays": frozenset({*business.holidays, monday})})
    opened = await env.get_current_time()
    ticket_id, handle = await _start_with_policy(runtime, env, calendar, opened)
    target = sla_policy().target_for(Tier.L2, Priority.ROUTINE, "cardiology")
    assert target.first_response is not None
    snapshot = await settle_query(handle)
    started = next(c.started_at for c in snapshot.state.clocks if c.name == "first_response")
    due = calendar.add_working_time(started, target.first_response)
    warn = calendar.add_working_time(started, target.first_response * (target.warn_at or 0.8))
    # Tuesday: the weekend and the holiday do not count.
    assert due.astimezone(SHANGHAI).weekday() == 1
    await env.sleep(due - opened + dt.timedelta(minutes=5))
    notices = await settle(lambda: _notifications(runtime, ticket_id, "first_response"))
    assert [(n.kind, n.due_at) for n in notices] == [("warning", due), ("breach", due)]
    # Each notice was done by its first attempt: one that wrote its row and then failed would
    # still leave the rows above, only late, after Temporal's retry.
    events = (await handle.fetch_history()).events
    activity_of = {
        e.event_id: e.activity_task_scheduled_event_attributes.activity_type.name
        for e in events
        if e.HasField("activity_task_scheduled_event_attributes")
    }
    notice_attempts = [
        started.attempt
        for e in events
        if e.HasField("activity_task_started_event_attributes")
        and activity_of[(started := e.activity_task_started_event_attributes).scheduled_event_id]
        == "notify_staff"
    ]
    assert notice_attempts == [1, 1]
    # Each timer is set for the exact instant; it fires then (never early, within a tick).
    fired = {e.action: e.at for e in _ticket_events(runtime, ticket_id)}
    for action, expected in (("sla_warning", warn), ("sla_breach", due)):
        assert dt.timedelta(0) <= fired[action] - expected < dt.timedelta(seconds=1), action
    snapshot = await handle.query(FeedbackTicketWorkflow.snapshot)
    assert snapshot.first_response_breached_at == fired["sla_breach"]


async def settle_query(handle: WorkflowHandle) -> Any:
    for _ in range(200):
        snapshot = await handle.query(FeedbackTicketWorkflow.snapshot)
        if snapshot.state.clocks:
            return snapshot
        await asyncio.sleep(0.05)
    raise AssertionError("the ticket never started its clocks")


def _notifications(runtime: Runtime, ticket_id: int, clock: str) -> list[StaffNotification]:
    with Session(runtime.engine) as session:
        rows = session.exec(
            select(StaffNotification)
            .where(StaffNotification.ticket_id == ticket_id, StaffNotification.clock == clock)
            .order_by(col(StaffNotification.id))
        ).all()
        return list(rows) if len(rows) >= 2 else []


def _ticket_events(runtime: Runtime, ticket_id: int) -> list[Any]:
    from suifang.core.models import TicketEvent

    with Session(runtime.engine) as session:
        return list(
            session.exec(select(TicketEvent).where(TicketEvent.ticket_id == ticket_id)).all()
        )


async def test_waiting_on_the_patient_pauses_and_transfer_restarts_the_clock(
    runtime: Runtime, journey_worker: WorkflowEnvironment, api: httpx.AsyncClient
) -> None:
    env = journey_worker
    calendar = sla_policy().calendar("business")
    opened = await env.get_current_time()
    ticket_id, _ = await _start_with_policy(runtime, env, calendar, opened)
    nurse = token(runtime, "nurse.chen", "nurse", ["cardiology", "patient_services"])
    await settle(lambda: ticket_row(runtime, ticket_id).resolution_due)
    due_before = ticket_row(runtime, ticket_id).resolution_due
    waiting = await api.post(
        f"/tickets/{ticket_id}/actions",
        json={"action": "wait_on_patient", "text": "请问您想改到哪一天?"},
        headers=auth(nurse),
    )
    assert waiting.json()["sla_paused"] is True
    assert waiting.json()["resolution_due"] is None
    # Wait past at least an hour of working time, whatever day the test runs on.
    paused_at = await env.get_current_time()
    await env.sleep(calendar.add_working_time(paused_at, dt.timedelta(hours=1)) - paused_at)
    await api.post(
        f"/tickets/{ticket_id}/patient-events",
        json={"kind": "reply", "text": "下个月10号上午"},
        headers=auth(patient_app(runtime)),
    )
    resumed = await settle(
        lambda: (
            ticket_row(runtime, ticket_id).status == "in_progress"
            and ticket_row(runtime, ticket_id)
        )
    )
    assert resumed.resolution_due is not None
    assert due_before is not None
    assert resumed.resolution_due > due_before  # the paused time does not count
    transferred = await api.post(
        f"/tickets/{ticket_id}/actions",
        json={"action": "transfer", "department": "patient_services", "text": "改约"},
        headers=auth(nurse),
    )
    body = transferred.json()
    assert (body["department"], body["status"], body["assignee"]) == (
        "patient_services",
        "assigned",
        None,
    )
    transfer = next(e for e in body["events"] if e["action"] == "transfer")
    assert transfer["detail"] == {
        "from_department": "cardiology",
        "to_department": "patient_services",
    }
    now = await env.get_current_time()
    expected = calendar.add_working_time(
        now, sla_policy().target_for(Tier.L2, Priority.ROUTINE, "patient_services").resolution
    )
    assert abs(dt.datetime.fromisoformat(body["resolution_due"]) - expected) < dt.timedelta(
        minutes=1
    )
