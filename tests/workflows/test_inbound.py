"""Replies over every channel reach the right journey through ``POST /channels/{name}/inbound``;
strangers are stored as unmatched and acknowledged (or 404, by a setting); bad signatures and
malformed bodies are answered with a clear 4xx and recorded as metadata only."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from sqlmodel import Session, col, select
from temporalio.testing import WorkflowEnvironment

from suifang.core.api import create_app
from suifang.core.models import (
    Answer,
    AuditLog,
    InboundRecord,
    Message,
    Ticket,
    WebhookRejection,
)
from suifang.core.runtime import Runtime
from suifang.core.security.signing import sign_body
from suifang.plugins.channels.voice import twilio_signature
from suifang.plugins.channels.wechat import wechat_signature
from suifang.tickets.core import ActorAction
from suifang.tickets.service import TicketIn, act_on_ticket, open_ticket
from suifang.workflows.intake import DischargeIn, EnrollmentOut, register_discharge
from suifang.workflows.journey import PatientJourneyWorkflow
from tests.plugins.channels.test_wechat import AES_KEY, encrypted_push

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


async def test_a_stranger_is_stored_and_acknowledged_so_the_provider_stops_resending(
    runtime: Runtime, journey_worker: WorkflowEnvironment, api: httpx.AsyncClient
) -> None:
    body, headers = signed_json({"type": "inbound", "from": "+8613999999999", "text": "你好"})
    response = await api.post("/channels/sms/inbound", content=body, headers=headers)
    assert response.status_code == 200, response.text  # the channel's usual acknowledgement
    [stored] = records(runtime)
    assert stored.kind == "unmatched"  # for staff: GET /inbound, suifang inbound
    # A resend of the same call is the same: acknowledged, no second record.
    again = await api.post("/channels/sms/inbound", content=body, headers=headers)
    assert again.status_code == 200
    assert len(records(runtime)) == 1


async def test_a_hospital_can_have_strangers_answered_404(
    runtime: Runtime, journey_worker: WorkflowEnvironment, api: httpx.AsyncClient
) -> None:
    runtime.settings.inbound_unmatched_status = 404
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
        real_workflow_id, row.workflow_id = row.workflow_id, "journey-that-is-not-there"
        session.add(row)
        session.commit()
    call = provider_call("sms", REPLY)
    response = await api.post(**call)
    assert response.status_code == 503, response.text
    assert "retry shortly" in response.json()["error"]["message"]
    assert answers_of(runtime, enrollment.enrollment_id) == []
    # The provider's retry of the very same call is not mistaken for a replay: it is taken.
    with Session(runtime.engine) as session:
        row = session.get(Enrollment, enrollment.enrollment_id)
        assert row is not None
        row.workflow_id = real_workflow_id
        session.add(row)
        session.commit()
    retried = await api.post(**call)
    assert retried.status_code == 200, retried.text
    assert await settle(lambda: answers_of(runtime, enrollment.enrollment_id))


# --- issue 19: replays, forgeries, floods and deep bodies ----------------------------------


def tickets_of(runtime: Runtime, patient_id: int) -> list[Ticket]:
    with Session(runtime.engine) as session:
        return list(session.exec(select(Ticket).where(Ticket.patient_id == patient_id)))


@pytest.mark.parametrize("channel", ["sms", "webhook", "voice"])
async def test_a_replayed_signed_callback_has_no_second_effect(
    channel: str, runtime: Runtime, journey_worker: WorkflowEnvironment, api: httpx.AsyncClient
) -> None:
    """Finding 4: a captured signed callback replayed within the signature window used to open
    a second ticket (free text without a message id). Now the provider gets its usual answer
    and nothing happens."""
    enrollment = await enroll_and_open_day3(runtime, journey_worker)
    call = provider_call(channel, "停车场太难找了，收费还特别贵，希望改进")
    first = await api.post(**call)
    assert first.status_code == 200, first.text
    ticket = await settle(lambda: _journey_ticket(runtime, enrollment.enrollment_id), 60)
    stored = records(runtime)
    answers = answers_of(runtime, enrollment.enrollment_id)
    for _ in range(3):
        replay = await api.post(**call)
        assert (replay.status_code, replay.text) == (200, first.text)
    assert records(runtime) == stored
    assert answers_of(runtime, enrollment.enrollment_id) == answers
    await journey_worker.sleep(dt.timedelta(minutes=5))
    assert [t.id for t in tickets_of(runtime, enrollment.patient_id)] == [ticket.id]
    assert [(r.channel, r.status_code, r.reason) for r in rejections(runtime)] == [
        (channel, 200, "replay of a call already taken: no effect")
    ] * 3


async def test_a_message_id_is_taken_once_even_in_a_newly_signed_call(
    runtime: Runtime, journey_worker: WorkflowEnvironment, api: httpx.AsyncClient
) -> None:
    """Inbound calls are deduplicated by the platform on (channel, provider message id): a
    provider re-delivering a message (signed again, later) has no second effect."""
    enrollment = await enroll_and_open_day3(runtime, journey_worker)
    reply = {"type": "inbound", "from": f"+86{PHONE}", "text": "伤口有点渗液", "message_id": "gw-9"}
    body, headers = signed_json(reply)
    assert (await api.post("/channels/sms/inbound", content=body, headers=headers)).is_success
    answers = await settle(lambda: answers_of(runtime, enrollment.enrollment_id))
    body, _ = signed_json(reply)
    later = sign_body(body, SECRET.encode(), timestamp=int(time.time()) + 1)
    again = await api.post(
        "/channels/sms/inbound", content=body, headers={**headers, "X-Suifang-Signature": later}
    )
    assert again.status_code == 200, again.text
    assert answers_of(runtime, enrollment.enrollment_id) == answers
    assert len(records(runtime)) == 1
    # The ticket key space holds no guessable inbound keys any more.
    ticket = await settle(lambda: _journey_ticket(runtime, enrollment.enrollment_id))
    assert not (ticket.idempotency_key or "").startswith("inbound:")


async def test_a_replayed_wechat_query_string_with_a_forged_body_is_refused(
    runtime: Runtime, journey_worker: WorkflowEnvironment, api: httpx.AsyncClient
) -> None:
    """Finding 3: a captured push's query string with a made-up sender used to open a
    complaint for another patient. In safe mode the signature binds the body."""
    await enroll_and_open_day3(runtime, journey_worker)
    genuine = provider_call("wechat", "谢谢")
    forged_xml = (
        f"<xml><ToUserName>gh_hospital</ToUserName><FromUserName>{OPENID}</FromUserName>"
        f"<CreateTime>{int(time.time())}</CreateTime><MsgType>text</MsgType>"
        "<Content>投诉：护士态度恶劣</Content><MsgId>999</MsgId></xml>"
    )
    _, forged_encrypted = encrypted_push(forged_xml.encode(), token=TOKEN, app_id="wx-app")
    for body, status, problem in (
        (forged_encrypted, 401, "msg_signature does not match the body"),
        (forged_xml.encode(), 400, "lacks <Encrypt>"),
    ):
        response = await api.post(genuine["url"], content=body, headers=genuine["headers"])
        assert response.status_code == status, response.text
        assert problem in response.json()["error"]["message"]
    plaintext_url = genuine["url"].split("&encrypt_type")[0]  # signature, timestamp, nonce…
    response = await api.post(plaintext_url, content=forged_xml.encode(), headers={})
    assert response.status_code == 401
    assert "plaintext" in response.json()["error"]["message"]
    assert records(runtime) == []
    assert [r.status_code for r in rejections(runtime)] == [401, 400, 401]


async def test_unsigned_floods_are_rate_limited_and_do_not_grow_the_database(
    runtime: Runtime, journey_worker: WorkflowEnvironment, channel_settings: None
) -> None:
    """Finding 5: 40 unsigned posts of 256 KiB grew the database by 13 MB. Now refused calls
    are metadata only, and a source past its budget is answered 429 without being recorded."""
    database = Path(runtime.engine.url.database or "")

    def on_disk() -> int:
        if runtime.engine.dialect.name != "sqlite":
            return 0
        files = (database, database.with_name(database.name + "-wal"))
        return sum(f.stat().st_size for f in files if f.exists())

    app = create_app(runtime)
    body = b"x" * (256 * 1024)
    before = on_disk()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as flood:
        statuses = [
            (await flood.post("/channels/sms/inbound", content=body)).status_code for _ in range(40)
        ]
    limit = runtime.settings.webhook_failures_per_source
    assert statuses == [401] * limit + [429] * (40 - limit)
    assert records(runtime) == []
    recorded = rejections(runtime)
    assert len(recorded) == limit
    assert {(r.size, r.body_sha256) for r in recorded} == {
        (len(body), hashlib.sha256(body).hexdigest())
    }
    assert on_disk() - before < len(body)  # all of it: less than one body
    # Another source is not held back by this one's flood, and its signed call is served.
    elsewhere = httpx.ASGITransport(app=app, client=("10.1.2.3", 4000))
    async with httpx.AsyncClient(transport=elsewhere, base_url=BASE) as provider:
        content, headers = signed_json(
            {"type": "inbound", "from": "+8613999999999", "text": "你好"}
        )
        answer = await provider.post("/channels/sms/inbound", content=content, headers=headers)
    assert answer.status_code == 200  # verified, stored as unmatched and acknowledged
    assert [r.kind for r in records(runtime)] == ["unmatched"]


async def test_refused_calls_past_a_channels_budget_are_answered_429_and_not_recorded(
    runtime: Runtime, journey_worker: WorkflowEnvironment, channel_settings: None
) -> None:
    runtime.settings.webhook_failures_per_channel = 5
    app = create_app(runtime)
    statuses = []
    for source in range(8):  # each from its own address, so only the channel budget applies
        transport = httpx.ASGITransport(app=app, client=(f"10.0.0.{source}", 1234))
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
            statuses.append((await client.post("/channels/sms/inbound", content=b"{}")).status_code)
    assert statuses == [401] * 5 + [429] * 3
    assert len(rejections(runtime)) == 5


@pytest.mark.parametrize("shape", ["json", "xml"])
async def test_a_signed_body_nested_5000_deep_is_a_4xx_and_recorded(
    shape: str, runtime: Runtime, journey_worker: WorkflowEnvironment, api: httpx.AsyncClient
) -> None:
    """Finding 8: a signed body nested 5,000 levels deep ended in a RecursionError (500) and
    was not stored."""
    if shape == "json":
        deep = b'{"type": "inbound", "from": "+8613800138000", "text": ' + b"[" * 5000
        deep += b"]" * 5000 + b"}"
        call = {
            "url": "/channels/sms/inbound",
            "content": deep,
            "headers": {"X-Suifang-Signature": sign_body(deep, SECRET.encode())},
        }
    else:
        call = provider_call("wechat", "好")
        call["content"] = b"<xml>" + b"<a>" * 5000 + b"</a>" * 5000 + b"</xml>"
    response = await api.post(**call)
    assert response.status_code == 400, response.text
    message = response.json()["error"]["message"]
    assert f"nests deeper than {runtime.settings.webhook_max_nesting} levels" in message
    [rejected] = rejections(runtime)
    assert (rejected.id, rejected.size) == (
        response.json()["error"]["rejection_id"],
        len(call["content"]),
    )


async def test_every_webhook_write_is_audited(
    runtime: Runtime, journey_worker: WorkflowEnvironment, api: httpx.AsyncClient
) -> None:
    """Finding 9: webhook writes were not in the audit log."""
    enrollment = await enroll_and_open_day3(runtime, journey_worker)
    call = provider_call("sms", REPLY)
    call["headers"]["X-Request-ID"] = "wh-1"
    response = await api.post(**call)
    assert response.status_code == 200
    [record] = records(runtime)
    with Session(runtime.engine) as session:
        audited = session.exec(select(AuditLog).where(AuditLog.request_id == "wh-1")).all()
    assert [(a.actor, a.role, a.resource, a.resource_id, a.patient_id) for a in audited] == [
        ("channel:sms", "webhook", "inbound", str(record.id), enrollment.patient_id)
    ]
    assert audited[0].detail["kind"] == "answer"


async def test_the_same_call_twice_at_once_takes_effect_once(
    runtime: Runtime, journey_worker: WorkflowEnvironment, api: httpx.AsyncClient
) -> None:
    """Two deliveries of one call racing each other (a provider's impatient retry, or an
    attacker's copy): one is processed; the other is told to retry, and its retry is a
    duplicate."""
    import asyncio

    enrollment = await enroll_and_open_day3(runtime, journey_worker)
    call = provider_call("sms", REPLY)
    racing = await asyncio.gather(api.post(**call), api.post(**call))
    statuses = sorted(r.status_code for r in racing)
    # Usually the second arrives while the first is processed (503); if the first has already
    # finished, the second is a plain duplicate (200). Never two effects.
    assert statuses in ([200, 503], [200, 200])
    for busy in (r for r in racing if r.status_code == 503):
        assert "being processed" in busy.json()["error"]["message"]
    answers = await settle(lambda: answers_of(runtime, enrollment.enrollment_id))
    retry = await api.post(**call)
    assert retry.status_code == 200
    assert answers_of(runtime, enrollment.enrollment_id) == answers
    assert len(records(runtime)) == 1


async def test_refused_calls_are_listed_for_auditors_without_their_bodies(
    runtime: Runtime, journey_worker: WorkflowEnvironment, api: httpx.AsyncClient
) -> None:
    from suifang.core.security.auth import Role, create_user, issue_token

    tokens = {}
    with Session(runtime.engine) as session:
        for role, departments in ((Role.AUDITOR, None), (Role.AGENT, ["cardiology"])):
            user = create_user(
                session,
                username=role.value,
                display_name=role.value,
                role=role,
                departments=departments,
            )
            tokens[role], _ = issue_token(session, user, name="test")
    body = json.dumps({"type": "inbound", "from": f"+86{PHONE}", "text": "张伟的秘密"}).encode()
    refused = await api.post("/channels/sms/inbound", content=body)
    assert refused.status_code == 401
    listed = await api.get(
        "/inbound/rejections", headers={"Authorization": f"Bearer {tokens[Role.AUDITOR]}"}
    )
    assert listed.status_code == 200
    [shown] = listed.json()
    assert (shown["channel"], shown["status_code"], shown["size"]) == ("sms", 401, len(body))
    assert shown["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert PHONE not in listed.text
    agent = await api.get(
        "/inbound/rejections", headers={"Authorization": f"Bearer {tokens[Role.AGENT]}"}
    )
    assert agent.status_code == 403


async def test_a_providers_re_deliveries_do_not_get_its_address_blocked(
    runtime: Runtime, journey_worker: WorkflowEnvironment, api: httpx.AsyncClient
) -> None:
    """Replays are verified calls: they have no effect but do not count against the source
    (providers re-deliver from a few shared addresses), only against the channel's budget."""
    runtime.settings.webhook_failures_per_source = 2
    await enroll_and_open_day3(runtime, journey_worker)
    call = provider_call("sms", REPLY)
    statuses = [(await api.post(**call)).status_code for _ in range(5)]
    assert statuses == [200] * 5
    forged = {**call, "headers": {**call["headers"], "X-Suifang-Signature": "t=1,v1=" + "0" * 64}}
    assert [(await api.post(**forged)).status_code for _ in range(3)] == [401, 401, 429]
