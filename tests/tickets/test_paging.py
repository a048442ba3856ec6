"""An emergency reaches a person within minutes: a patient's words through a real channel
webhook, a real journey and ticket workflow, pages in the outbox, exact escalation timers on
the time-skipping server, and acknowledgement by API, CLI and a reply to the page."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlmodel import Session, col, select
from temporalio.testing import WorkflowEnvironment

from suifang.core.api import create_app
from suifang.core.models import InboundRecord, Message, Ticket, TicketEvent
from suifang.core.runtime import Runtime
from suifang.tickets.oncall import RosterFile, import_roster
from tests.tickets.test_ticket_workflow import auth, patient, patient_app, token
from tests.workflows.test_inbound import (
    BASE,
    enroll_and_open_day3,
    provider_call,
    settle,
    signed_json,
)

STAFF_PHONES = {"dr.wang": "13900000001", "nurse.li": "13900000002", "dr.zhou": "13900000003"}
ROSTER = {
    "timezone": "Asia/Shanghai",
    "staff": [
        {
            "username": username,
            "display_name": username,
            "role": "nurse" if username.startswith("nurse") else "doctor",
            "departments": ["cardiology"],
            "contacts": [{"system": "phone", "value": phone}],
        }
        for username, phone in STAFF_PHONES.items()
    ]
    + [
        {
            "username": "duty.chen",
            "display_name": "陈总值班",
            "departments": ["duty_office"],
            "contacts": [{"system": "phone", "value": "13900000009"}],
        }
    ],
    "departments": {
        "cardiology": {
            "paging": {"channels": ["outbox"], "escalate_after": ["5m", "10m"]},
            "primary": "dr.wang",
            "backup": "nurse.li",
            "supervisor": "dr.zhou",
        },
        "duty_office": {"primary": "duty.chen"},
    },
}


@pytest.fixture
def roster(runtime: Runtime) -> None:
    with Session(runtime.engine) as session:
        import_roster(session, RosterFile.model_validate(ROSTER))


@pytest.fixture
async def api(
    runtime: Runtime,
    journey_worker: WorkflowEnvironment,
    channel_settings: None,
    roster: None,
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(runtime)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as client:
        yield client


@pytest.fixture
def channel_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.workflows.test_inbound import SECRET

    monkeypatch.setenv("SUIFANG_CHANNEL_SMS_URL", "https://gw.example/send")
    monkeypatch.setenv("SUIFANG_CHANNEL_SMS_API_KEY", "k" * 24)
    monkeypatch.setenv("SUIFANG_CHANNEL_SMS_CALLBACK_SECRETS", SECRET)


def token_of(runtime: Runtime, username: str) -> str:
    from suifang.core.models import StaffUser
    from suifang.core.security.auth import issue_token

    with Session(runtime.engine) as session:
        user = session.exec(select(StaffUser).where(StaffUser.username == username)).one()
        value, _ = issue_token(session, user, name="test")
        return value


def pages(runtime: Runtime, ticket_id: int) -> list[Message]:
    with Session(runtime.engine) as session:
        return list(
            session.exec(
                select(Message)
                .where(Message.ticket_id == ticket_id, Message.kind == "page")
                .order_by(col(Message.id))
            ).all()
        )


def delivered(messages: list[Message]) -> list[Message]:
    return messages if messages and all(m.status == "delivered" for m in messages) else []


def patient_messages(runtime: Runtime, ticket_id: int) -> list[Message]:
    with Session(runtime.engine) as session:
        return list(
            session.exec(
                select(Message)
                .where(Message.ticket_id == ticket_id, Message.kind != "page")
                .order_by(col(Message.id))
            ).all()
        )


def events(runtime: Runtime, ticket_id: int, action: str) -> list[TicketEvent]:
    with Session(runtime.engine) as session:
        return list(
            session.exec(
                select(TicketEvent)
                .where(TicketEvent.ticket_id == ticket_id, TicketEvent.action == action)
                .order_by(col(TicketEvent.id))
            ).all()
        )


def ticket_of(runtime: Runtime, **where: Any) -> Ticket | None:
    with Session(runtime.engine) as session:
        query = select(Ticket)
        for name, value in where.items():
            query = query.where(getattr(Ticket, name) == value)
        found = session.exec(query.order_by(col(Ticket.id).desc())).first()
        return found if found is not None and found.department_code else None


async def test_an_emergency_reply_by_sms_pages_escalates_on_time_and_a_reply_acknowledges(
    runtime: Runtime, journey_worker: WorkflowEnvironment, api: httpx.AsyncClient
) -> None:
    env = journey_worker
    enrollment = await enroll_and_open_day3(runtime, env)
    response = await api.post(**provider_call("sms", "我爸胸口特别闷，一直冒冷汗，快半小时了"))
    assert response.status_code == 200, response.text
    ticket = await settle(lambda: ticket_of(runtime, enrollment_id=enrollment.enrollment_id))
    assert (ticket.tier, ticket.priority, ticket.department_code) == (
        "L3",
        "emergency",
        "cardiology",
    )
    # The patient is told what to do now; nobody is said to know yet.
    first = await settle(lambda: patient_messages(runtime, ticket.id))
    assert first[0].kind == "ticket_emergency"
    assert "120" in first[0].body
    assert "已通知" not in first[0].body
    # The on-call doctor is paged through the channel plugins (here the outbox).
    paged = await settle(lambda: delivered(pages(runtime, ticket.id)))
    assert [(m.recipient, m.channel, m.status) for m in paged] == [
        ("dr.wang", "outbox", "delivered")
    ]
    assert f"#{ticket.id}" in paged[0].body or str(ticket.id) in paged[0].body
    # The free text answered no question: the questions go out again, once.
    with Session(runtime.engine) as session:
        reasked = session.exec(
            select(Message).where(
                Message.enrollment_id == enrollment.enrollment_id, Message.kind == "reask"
            )
        ).all()
    assert len(reasked) == 1
    # No acknowledgement: the backup after exactly 5 minutes, the supervisor 10 minutes later.
    await env.sleep(dt.timedelta(minutes=5, seconds=30))
    await settle(lambda: len(pages(runtime, ticket.id)) == 2)
    await env.sleep(dt.timedelta(minutes=10))
    escalated = await settle(
        lambda: len(pages(runtime, ticket.id)) == 3 and pages(runtime, ticket.id)
    )
    assert [m.recipient for m in escalated] == ["dr.wang", "nurse.li", "dr.zhou"]
    paged_at = [e.at for e in events(runtime, ticket.id, "page")]
    assert len(paged_at) == 3
    for gap, expected in zip(
        (paged_at[1] - paged_at[0], paged_at[2] - paged_at[1]),
        (dt.timedelta(minutes=5), dt.timedelta(minutes=10)),
        strict=True,
    ):
        assert dt.timedelta(0) <= gap - expected < dt.timedelta(seconds=2), gap
    # The supervisor answers the page by SMS from their phone: acknowledged, and only now is
    # the patient told a doctor knows.
    body, headers = signed_json(
        {"type": "inbound", "from": f"+86{STAFF_PHONES['dr.zhou']}", "text": "收到，马上打电话"}
    )
    reply = await api.post("/channels/sms/inbound", content=body, headers=headers)
    assert reply.status_code == 200, reply.text
    with Session(runtime.engine) as session:
        record = session.exec(select(InboundRecord).order_by(col(InboundRecord.id).desc())).first()
    assert record is not None
    assert (record.kind, record.ticket_id) == ("page_reply", ticket.id)
    acknowledged = await settle(
        lambda: (row := ticket_of(runtime, id=ticket.id)) and row.acknowledged_by and row
    )
    assert (acknowledged.acknowledged_by, acknowledged.paging) == ("dr.zhou", "acknowledged")
    told = await settle(
        lambda: [
            m for m in patient_messages(runtime, ticket.id) if m.kind == "ticket_doctor_notified"
        ]
    )
    assert len(told) == 1
    await env.sleep(dt.timedelta(minutes=30))
    assert len(pages(runtime, ticket.id)) == 3  # nothing more after the acknowledgement


async def test_the_api_acknowledges_a_page_for_the_clinician_in_scope_only(
    runtime: Runtime, journey_worker: WorkflowEnvironment, api: httpx.AsyncClient
) -> None:
    env = journey_worker
    created = await api.post(
        "/tickets",
        json={
            "patient_id": patient(runtime),
            "text": "my dad collapsed and won't wake up",
            "department": "cardiology",
        },
        headers=auth(patient_app(runtime)),
    )
    assert created.status_code in (200, 201), created.text
    ticket_id = created.json()["id"]
    await settle(lambda: pages(runtime, ticket_id))
    outsider = token(runtime, "dr.bone", "doctor", ["orthopaedics"])
    refused = await api.post(f"/tickets/{ticket_id}/ack", json={}, headers=auth(outsider))
    assert refused.status_code == 404, refused.text
    doctor = token_of(runtime, "dr.wang")  # the roster's own dr.wang, with an API token
    acked = await api.post(
        f"/tickets/{ticket_id}/ack", json={"note": "calling now"}, headers=auth(doctor)
    )
    assert acked.status_code == 200, acked.text
    assert acked.json()["acknowledged_by"] == "dr.wang"
    again = await api.post(f"/tickets/{ticket_id}/ack", json={}, headers=auth(doctor))
    assert again.status_code in (409, 422), again.text
    assert "acknowledged" in again.json()["error"]["message"]
    await env.sleep(dt.timedelta(minutes=20))
    assert [m.recipient for m in pages(runtime, ticket_id)] == ["dr.wang"]


async def test_the_cli_acknowledges_a_page(
    runtime: Runtime,
    journey_worker: WorkflowEnvironment,
    api: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
    test_keyring: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The CLI builds its own runtime: with the test's keys, on the test's database and server.
    monkeypatch.setattr("suifang.core.runtime.keyring_from_settings", lambda _: test_keyring)
    env = journey_worker
    created = await api.post(
        "/tickets",
        json={
            "patient_id": patient(runtime),
            "text": "血糖2.1，人叫不太醒，一身冷汗",
            "department": "cardiology",
        },
        headers=auth(patient_app(runtime)),
    )
    ticket_id = created.json()["id"]
    await settle(lambda: pages(runtime, ticket_id))
    target = env.client.service_client.config.target_host
    for name, value in {
        "SUIFANG_DATABASE_URL": runtime.settings.database_url,
        "SUIFANG_DATA_DIR": str(runtime.settings.data_dir),
        "SUIFANG_TEMPORAL_ADDRESS": target,
        "SUIFANG_TASK_QUEUE": runtime.settings.task_queue,
    }.items():
        monkeypatch.setenv(name, value)
    from suifang.core.cli.context import cli_runtime
    from suifang.core.config import get_settings

    get_settings.cache_clear()
    cli_runtime.cache_clear()
    try:
        code, output = await _run_cli(["tickets", "ack", str(ticket_id), "--as", "dr.wang"], capsys)
        wrong, error = await _run_cli(["tickets", "ack", "999999", "--as", "dr.wang"], capsys)
    finally:
        get_settings.cache_clear()
        cli_runtime.cache_clear()
    assert code == 0, output
    assert f"ticket {ticket_id}: page acknowledged by dr.wang" in output
    assert wrong != 0
    assert error.strip() == "suifang: error: no ticket 999999"


async def _run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """``suifang ARGS`` as the console script runs it (errors as one line, an exit code)."""
    import asyncio

    from suifang.core.cli import main

    code = await asyncio.to_thread(main, args)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_a_roster_with_mistakes_is_refused_whole_and_changes_nothing(runtime: Runtime) -> None:
    from suifang.core.errors import ValidationFailed

    bad = json.loads(json.dumps(ROSTER))
    bad["departments"]["cardiology"]["paging"]["channels"] = ["pager-9000"]
    bad["departments"]["nowhere"] = {"primary": "dr.wang"}
    bad["staff"][0]["departments"] = ["cardiology", "mars"]
    with Session(runtime.engine) as session:
        with pytest.raises(ValidationFailed) as raised:
            import_roster(session, RosterFile.model_validate(bad), known_channels=["outbox", "sms"])
        message = str(raised.value)
        for problem in ("'pager-9000'", "departments.nowhere", "'mars'"):
            assert problem in message, message
        from suifang.core.models import OnCallShift

        assert session.exec(select(OnCallShift)).all() == []


def test_only_channels_that_reach_staff_may_carry_pages(runtime: Runtime) -> None:
    from suifang.core.errors import ValidationFailed
    from suifang.tickets.oncall import staff_channels

    installed = runtime.channels.classes
    staff = staff_channels(installed)
    # WeChat official-account messages go to a patient's openid: never a page.
    assert "wechat" in installed
    assert "wechat" not in staff
    assert {"sms", "email", "webhook", "outbox", "voice"} <= set(staff)
    roster = json.loads(json.dumps(ROSTER))
    roster["departments"]["cardiology"]["paging"]["channels"] = ["wechat", "sms"]
    with Session(runtime.engine) as session, pytest.raises(ValidationFailed) as raised:
        import_roster(session, RosterFile.model_validate(roster), known_channels=staff)
    message = str(raised.value)
    assert "departments.cardiology.paging.channels: 'wechat' is not an installed channel" in message
    assert "reaches staff" in message


@pytest.mark.parametrize(
    ("shift", "problem"),
    [
        ({"days": "mon-fri", "hours": "8am-5pm", "primary": "dr.wang"}, "not like 08:00-17:30"),
        ({"days": "someday", "hours": "08:00-17:00", "primary": "dr.wang"}, "is not a day"),
        ({"days": "daily", "hours": "08:00-08:00", "primary": "dr.wang"}, "same time"),
        ({"from": "2026-12-05T08:00+08:00", "primary": "dr.wang"}, "both from and to"),
        ({"days": "daily", "hours": "00:00-24:00"}, "at least one of primary"),
    ],
)
def test_a_bad_shift_says_what_is_wrong(shift: dict[str, Any], problem: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=problem):
        RosterFile.model_validate({"departments": {"cardiology": {"shifts": [shift]}}})


def test_escalation_delays_outside_reason_are_refused() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="between 30s and 2h"):
        RosterFile.model_validate(
            {"departments": {"cardiology": {"paging": {"escalate_after": ["5h"]}}}}
        )
