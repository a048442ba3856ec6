"""Replies over every channel reach the right journey through ``POST /channels/{name}/inbound``;
strangers are stored and answered 404; bad signatures and malformed bodies are answered with a
clear 4xx and recorded as metadata only."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from sqlmodel import Session, col, select
from temporalio.testing import WorkflowEnvironment

from suifang.core.api import create_app
from suifang.core.models import Answer, InboundRecord, Message, Ticket, WebhookRejection
from suifang.core.runtime import Runtime
from suifang.core.security.signing import sign_body
from suifang.plugins.channels.voice import twilio_signature
from suifang.plugins.channels.wechat import wechat_signature
from tests.plugins.channels.test_wechat import AES_KEY, encrypted_push
from suifang.tickets.core import ActorAction
from suifang.tickets.service import TicketIn, act_on_ticket, open_ticket
from suifang.workflows.intake import DischargeIn, EnrollmentOut, register_discharge
from suifang.workflows.journey import PatientJourneyWorkflow

SECRET = "inbound-test-secret-0123456789ab"
TOKEN = "wechat-token-123"
ALIYUN_TOKEN = "aliyun-callback-token-1234"
TWILIO_TOKEN = "twilio-auth-token-0000"
BASE = "http://suifang.test"
PHONE, OPENID, APP_USER = "13800138000", "oWx-openid-42", "app-user-42"
REPLY = "否,1,1,否,1,1"  # the PCI questionnaire's required questions, all fine


@pytest.fixture
def channel_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "SUIFANG_CHANNEL_SMS_URL": "https://gw.example/send",
        "SUIFANG_CHANNEL_SMS_API_KEY": "k" * 24,
        "SUIFANG_CHANNEL_SMS_CALLBACK_SECRETS": SECRET,
        "SUIFANG_CHANNEL_SMS_ALIYUN_ACCESS_KEY_ID": "LTAI-test",
        "SUIFANG_CHANNEL_SMS_ALIYUN_ACCESS_KEY_SECRET": "secret",
        "SUIFANG_CHANNEL_SMS_ALIYUN_SIGN_NAME": "仁心医院",
        "SUIFANG_CHANNEL_SMS_ALIYUN_CALLBACK_TOKEN": ALIYUN_TOKEN,
        "SUIFANG_CHANNEL_WECHAT_APP_ID": "wx-app",
        "SUIFANG_CHANNEL_WECHAT_APP_SECRET": "wx-secret",
        "SUIFANG_CHANNEL_WECHAT_TOKEN": TOKEN,
        "SUIFANG_CHANNEL_WECHAT_ENCODING_AES_KEY": AES_KEY,
        "SUIFANG_CHANNEL_VOICE_ACCOUNT_SID": "AC123",
        "SUIFANG_CHANNEL_VOICE_AUTH_TOKEN": TWILIO_TOKEN,
        "SUIFANG_CHANNEL_VOICE_FROM_NUMBER": "+861080000000",
        "SUIFANG_CHANNEL_VOICE_CALLBACK_URL": f"{BASE}/channels/voice/inbound",
        "SUIFANG_CHANNEL_WEBHOOK_URL": "https://push.example/in",
        "SUIFANG_CHANNEL_WEBHOOK_SECRETS": SECRET,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
async def api(
    runtime: Runtime, journey_worker: WorkflowEnvironment, channel_settings: None
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(runtime)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as client:
        yield client


async def enroll_and_open_day3(runtime: Runtime, env: WorkflowEnvironment) -> EnrollmentOut:
    now = await env.get_current_time()
    enrollment = await register_discharge(
        runtime,
        DischargeIn.model_validate(
            {
                "pathway": "pci",
                "patient": {
                    "external_id": "P-inbound",
                    "name": "张伟",
                    "phone": PHONE,
                    "wechat_openid": OPENID,
                    "app_user_id": APP_USER,
                    "preferred_channels": ["outbox"],
                },
                "encounter": {
                    "external_id": "V-inbound",
                    "department": "cardiology",
                    "discharged_at": now.isoformat(),
                },
            }
        ),
    )
    handle = env.client.get_workflow_handle_for(PatientJourneyWorkflow.run, enrollment.workflow_id)
    await env.sleep(enrollment.schedule[0].due_at - now + dt.timedelta(minutes=1))
    for _ in range(200):
        if "day3" in (await handle.query(PatientJourneyWorkflow.progress)).open_touchpoints:
            break
        await env.sleep(dt.timedelta(seconds=1))
    return enrollment


def signed_json(payload: Any) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload, ensure_ascii=False).encode()
    return body, {
        "X-Suifang-Signature": sign_body(body, SECRET.encode()),
        "Content-Type": "application/json",
    }


def provider_call(channel: str, text: str) -> dict[str, Any]:
    """The request each provider makes when the patient replies ``text``."""
    if channel in ("sms", "webhook"):
        payload = (
            {"type": "inbound", "from": f"+86{PHONE}", "text": text}
            if channel == "sms"
            else {"type": "reply", "sender": APP_USER, "text": text}
        )
        body, headers = signed_json(payload)
        return {"url": f"/channels/{channel}/inbound", "content": body, "headers": headers}
    if channel == "sms-aliyun":
        body = json.dumps(
            [
                {
                    "phone_number": PHONE,
                    "content": text,
                    "send_time": "2026-11-25 10:05:00",
                    "sign_name": "仁心医院",
                    "dest_code": "1234",
                    "sequence_id": 1,
                }
            ],
            ensure_ascii=False,
        ).encode()
        return {
            "url": f"/channels/sms-aliyun/inbound?token={ALIYUN_TOKEN}",
            "content": body,
            "headers": {"Content-Type": "application/json"},
        }
    if channel == "wechat":
        timestamp = str(int(time.time()))
        xml = (
            f"<xml><ToUserName><![CDATA[gh_hospital]]></ToUserName><FromUserName><![CDATA[{OPENID}]]></FromUserName>"
            f"<CreateTime>{timestamp}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
            f"<Content><![CDATA[{text}]]></Content><MsgId>1234567890</MsgId></xml>"
        )
        query, body = encrypted_push(xml.encode(), token=TOKEN, app_id="wx-app")
        return {
            "url": f"/channels/wechat/inbound?{urlencode(query)}",
            "content": body,
            "headers": {"Content-Type": "text/xml"},
        }
    assert channel == "voice"
    key = "call-key-1"
    url = f"{BASE}/channels/voice/inbound?{urlencode({'event': 'gather', 'key': key})}"
    form = [
        ("AccountSid", "AC123"),
        ("CallSid", "CA1"),
        ("From", "+861080000000"),
        ("To", f"+86{PHONE}"),
        ("SpeechResult", text),
        ("Confidence", "0.9"),
    ]
    return {
        "url": url,
        "content": urlencode(form).encode(),
        "headers": {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": twilio_signature(url, form, TWILIO_TOKEN),
        },
    }


def answers_of(runtime: Runtime, enrollment_id: int) -> list[Answer]:
    with Session(runtime.engine) as session:
        return list(
            session.exec(
                select(Answer).where(Answer.enrollment_id == enrollment_id).order_by(col(Answer.id))
            ).all()
        )


def records(runtime: Runtime) -> list[InboundRecord]:
    with Session(runtime.engine) as session:
        return list(session.exec(select(InboundRecord).order_by(col(InboundRecord.id))).all())


async def settle(check: Any, timeout: float = 10.0) -> Any:
    import asyncio

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not (result := check()):
        if loop.time() > deadline:
            raise AssertionError("not reached in time")
        await asyncio.sleep(0.05)
    return result


@pytest.mark.parametrize("channel", ["sms", "sms-aliyun", "wechat", "voice", "webhook"])
async def test_a_reply_over_each_channel_reaches_the_right_journey(
    channel: str, runtime: Runtime, journey_worker: WorkflowEnvironment, api: httpx.AsyncClient
) -> None:
    enrollment = await enroll_and_open_day3(runtime, journey_worker)
    response = await api.post(**provider_call(channel, REPLY))
    assert response.status_code == 200, response.text
    stored = await settle(lambda: answers_of(runtime, enrollment.enrollment_id))
    assert {a.touchpoint_key for a in stored} == {"day3"}
    assert {a.question_id: a.value for a in stored}["chest_pain"] == "no"
    assert {a.channel for a in stored} == {channel}
    # (a voice callback also carries a call-status update; the reply is the "answer" record)
    record = next(r for r in reversed(records(runtime)) if r.kind == "answer")
    assert (record.enrollment_id, record.touchpoint_key) == (enrollment.enrollment_id, "day3")
    assert REPLY in record.payload  # stored, decrypted on read


async def test_free_text_reply_is_delivered_and_kept_as_feedback(
    runtime: Runtime, journey_worker: WorkflowEnvironment, api: httpx.AsyncClient
) -> None:
    enrollment = await enroll_and_open_day3(runtime, journey_worker)
    response = await api.post(**provider_call("sms", "医生,我这两天晚上睡不好,伤口有点痒,正常吗?"))
    assert response.status_code == 200
    stored = await settle(lambda: answers_of(runtime, enrollment.enrollment_id))
    assert [(a.question_id, a.touchpoint_key) for a in stored] == [("_text", "day3")]
    assert "伤口有点痒" in (stored[0].text or "")
    record = records(runtime)[-1]
    assert record.kind == "feedback"
    # Feedback is not left in a pile: the journey triaged it into a ticket for a person.
    ticket = await settle(lambda: _journey_ticket(runtime, enrollment.enrollment_id))
    assert (ticket.source, ticket.patient_id, ticket.enrollment_id) == (
        "patient_message",
        enrollment.patient_id,
        enrollment.enrollment_id,
    )


def _journey_ticket(runtime: Runtime, enrollment_id: int) -> Ticket | None:
    with Session(runtime.engine) as session:
        ticket = session.exec(select(Ticket).where(Ticket.enrollment_id == enrollment_id)).first()
        return ticket if ticket is not None and ticket.department_code else None


def _ticket(runtime: Runtime, ticket_id: int | None) -> Ticket | None:
    if ticket_id is None:
        return None
    with Session(runtime.engine) as session:
        ticket = session.get(Ticket, ticket_id)
        return ticket if ticket is not None and ticket.department_code else None


async def test_a_satisfaction_score_by_sms_reaches_the_resolved_ticket(
    runtime: Runtime, journey_worker: WorkflowEnvironment, api: httpx.AsyncClient
) -> None:
    enrollment = await enroll_and_open_day3(runtime, journey_worker)
    opened = await open_ticket(
        runtime,
        TicketIn(patient_id=enrollment.patient_id, text="停车场太难找了", source="complaint"),
    )
    await settle(lambda: _ticket(runtime, opened.id))
    with Session(runtime.engine) as session:
        await act_on_ticket(
            runtime,
            session,
            opened.id,
            ActorAction(action="resolve", actor="zhang", text="已加指示牌"),
        )
    response = await api.post(**provider_call("sms", "2分"))
    assert response.status_code == 200
    assert records(runtime)[-1].kind == "ticket_reply"
    reopened = await settle(
        lambda: (t := _ticket(runtime, opened.id)) is not None and t.status == "reopened" and t
    )
    assert reopened.satisfaction == 2


def rejections(runtime: Runtime) -> list[WebhookRejection]:
    with Session(runtime.engine) as session:
        return list(session.exec(select(WebhookRejection).order_by(col(WebhookRejection.id))))


async def test_bad_signature_is_refused_with_401_and_recorded_without_its_body(
    runtime: Runtime, journey_worker: WorkflowEnvironment, api: httpx.AsyncClient
) -> None:
    call = provider_call("webhook", REPLY)
    call["headers"]["X-Suifang-Signature"] = "t=1,v1=" + "0" * 64
    response = await api.post(**call)
    assert response.status_code == 401
    body = response.json()["error"]
    assert "signature" in body["message"].lower()
    assert records(runtime) == []
    [rejected] = rejections(runtime)
    assert rejected.id == body["rejection_id"]
    assert (rejected.channel, rejected.status_code, rejected.size) == (
        "webhook",
        401,
        len(call["content"]),
    )
    assert rejected.body_sha256 == hashlib.sha256(call["content"]).hexdigest()
    assert "timestamp" in rejected.reason
    assert rejected.headers["x-suifang-signature"] == "t=1,v1=" + "0" * 64


async def test_a_stranger_is_stored_and_answered_404(
    runtime: Runtime, journey_worker: WorkflowEnvironment, api: httpx.AsyncClient
) -> None:
    body, headers = signed_json({"type": "inbound", "from": "+8613999999999", "text": "你好"})
    response = await api.post("/channels/sms/inbound", content=body, headers=headers)
    assert response.status_code == 404
    assert "no patient has this sender address" in response.json()["error"]["message"]
    assert records(runtime)[-1].kind == "unmatched"


async def test_malformed_body_and_unknown_channel_are_clear_4xx(
    runtime: Runtime, journey_worker: WorkflowEnvironment, api: httpx.AsyncClient
) -> None:
    body = b'{"type": "reply", "sender": '
    response = await api.post(
        "/channels/webhook/inbound",
        content=body,
        headers={"X-Suifang-Signature": sign_body(body, SECRET.encode())},
    )
    assert response.status_code == 400
    assert "JSON" in response.json()["error"]["message"]
    missing = await api.post("/channels/carrier-pigeon/inbound", content=b"{}")
    assert missing.status_code == 404
    assert "carrier-pigeon" in missing.json()["error"]["message"]
    assert records(runtime) == []
    assert [(r.channel, r.status_code) for r in rejections(runtime)] == [
        ("webhook", 400),
        ("carrier-pigeon", 404),
    ]


async def test_delivery_receipt_updates_the_message_ledger(
    runtime: Runtime, journey_worker: WorkflowEnvironment, api: httpx.AsyncClient
) -> None:
    enrollment = await enroll_and_open_day3(runtime, journey_worker)
    with Session(runtime.engine) as session:
        message = session.exec(
            select(Message).where(Message.enrollment_id == enrollment.enrollment_id)
        ).first()
        assert message is not None
        message.channel, message.provider_message_id = "webhook", "push-77"
        session.add(message)
        session.commit()
        message_id = message.id
    body, headers = signed_json(
        {"type": "status", "provider_message_id": "push-77", "status": "read"}
    )
    response = await api.post("/channels/webhook/inbound", content=body, headers=headers)
    assert response.status_code == 200
    with Session(runtime.engine) as session:
        updated = session.get(Message, message_id)
        assert updated is not None
        assert (updated.status, updated.read_at is not None) == ("read", True)


async def test_wechat_url_verification_echoes(api: httpx.AsyncClient) -> None:
    timestamp, nonce = str(int(time.time())), "n1"
    query = {
        "signature": wechat_signature(TOKEN, timestamp, nonce),
        "timestamp": timestamp,
        "nonce": nonce,
        "echostr": "hello-42",
    }
    ok = await api.get("/channels/wechat/inbound", params=query)
    assert (ok.status_code, ok.text) == (200, "hello-42")
    bad = await api.get("/channels/wechat/inbound", params={**query, "signature": "x" * 40})
    assert bad.status_code in (401, 403)


async def test_a_reply_the_journey_cannot_take_now_is_a_503_for_the_provider_to_retry(
    runtime: Runtime, journey_worker: WorkflowEnvironment, api: httpx.AsyncClient
) -> None:
    from suifang.core.models import Enrollment

    enrollment = await enroll_and_open_day3(runtime, journey_worker)
    with Session(runtime.engine) as session:
        row = session.get(Enrollment, enrollment.enrollment_id)
        assert row is not None
        row.workflow_id = "journey-that-is-not-there"  # its workflow cannot answer a query
        session.add(row)
        session.commit()
    response = await api.post(**provider_call("sms", REPLY))
    assert response.status_code == 503, response.text
    assert "retry shortly" in response.json()["error"]["message"]
    assert answers_of(runtime, enrollment.enrollment_id) == []
