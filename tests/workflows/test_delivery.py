"""The channel cascade: permanent errors fall through, transient ones retry, sends are idempotent,
and a misbehaving plugin cannot stall delivery. Real channel classes, real DB, faked providers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any, ClassVar

import httpx
import pytest
from sqlmodel import Session, col, select

from suifang.core.api import create_app
from suifang.core.channel_directory import ChannelDirectory
from suifang.core.channels import Channel, DeliveryReceipt, OutboundMessage
from suifang.core.delivery import (
    TRANSIENT_ATTEMPTS_PER_CHANNEL,
    DeliveryRequest,
    RetryableDelivery,
    deliver,
)
from suifang.core.models import ContactPoint, DeliveryAttempt, Message, Patient
from suifang.core.runtime import Runtime
from suifang.core.security.auth import Role, create_user, issue_token
from suifang.core.security.crypto import blind_index
from suifang.plugins.channels.sms import SmsGatewayChannel
from suifang.plugins.channels.webhook import WebhookChannel

SECRET = "a-webhook-secret-of-32-bytes-len"


class Provider:
    """A fake provider endpoint: answers from a script and records what it received."""

    def __init__(self, *responses: tuple[int, dict[str, Any]]) -> None:
        self.responses = list(responses)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        status, body = self.responses.pop(0) if len(self.responses) > 1 else self.responses[0]
        return httpx.Response(status, json=body)

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self))


def sms(provider: Provider) -> SmsGatewayChannel:
    config = SmsGatewayChannel.load_config(url="https://gw.example/send", api_key="k" * 20)
    return SmsGatewayChannel(config, http=provider.client())


def webhook(provider: Provider) -> WebhookChannel:
    config = WebhookChannel.load_config(url="https://push.example/in", secrets=SECRET)
    return WebhookChannel(config, http=provider.client())


def patient(runtime: Runtime, *, preferred: list[str] | None = None) -> int:
    with Session(runtime.engine) as session:
        row = Patient(external_id="P1", name="张伟", preferred_channels=preferred or [])
        session.add(row)
        session.commit()
        for system, value in (("phone", "13800138000"), ("app", "app-user-9")):
            session.add(
                ContactPoint(
                    patient_id=row.id,
                    system=system,
                    value=value,
                    value_hash=blind_index(system, value),
                )
            )
        session.commit()
        return row.id  # type: ignore[return-value]


def request(
    patient_id: int, key: str = "journey-1-x:day3", channels: list[str] | None = None
) -> DeliveryRequest:
    return DeliveryRequest(
        idempotency_key=key,
        patient_id=patient_id,
        kind="touchpoint",
        subject="随访",
        body="张先生您好,出院三天了,感觉怎么样?",
        locale="zh-CN",
        channels=channels or ["sms", "webhook", "outbox"],
    )


def attempts(runtime: Runtime) -> list[tuple[str, str]]:
    with Session(runtime.engine) as session:
        rows = session.exec(select(DeliveryAttempt).order_by(col(DeliveryAttempt.id))).all()
        return [(a.channel, a.outcome) for a in rows]


def directory(runtime: Runtime, **instances: Channel) -> ChannelDirectory:
    return ChannelDirectory(runtime.plugins, instances=instances)


async def test_first_channel_that_accepts_delivers(runtime: Runtime) -> None:
    gateway = Provider(
        (200, {"message_id": "gw-1", "status": "accepted", "cost": "0.05", "currency": "CNY"})
    )
    outcome = await deliver(
        runtime.engine, directory(runtime, sms=sms(gateway)), request(patient(runtime))
    )
    assert (outcome.delivered, outcome.channel) == (True, "sms")
    sent = json.loads(gateway.requests[0].content)
    assert sent["to"] == "+8613800138000"
    assert sent["client_reference"] == "journey-1-x:day3"
    assert gateway.requests[0].headers["Idempotency-Key"] == "journey-1-x:day3"
    with Session(runtime.engine) as session:
        message = session.exec(select(Message)).one()
        attempt = session.exec(select(DeliveryAttempt)).one()
    assert (message.status, message.channel, message.provider_message_id) == (
        "accepted",
        "sms",
        "gw-1",
    )
    assert str(attempt.cost) == "0.0500"


async def test_permanent_error_falls_through_to_the_next_channel_without_retry(
    runtime: Runtime,
) -> None:
    gateway = Provider((400, {"error": {"code": "invalid_number", "message": "bad number"}}))
    push = Provider((202, {"message_id": "push-7"}))
    channels = directory(runtime, sms=sms(gateway), webhook=webhook(push))
    outcome = await deliver(runtime.engine, channels, request(patient(runtime)))
    assert (outcome.delivered, outcome.channel) == (True, "webhook")
    assert len(gateway.requests) == 1
    assert attempts(runtime) == [("sms", "permanent_error"), ("webhook", "accepted")]
    assert push.requests[0].headers["X-Suifang-Signature"].startswith("t=")


async def test_every_attempt_is_visible_to_staff_in_the_api_and_the_cli(
    runtime: Runtime, cli: Callable[..., tuple[int, str, str]]
) -> None:
    gateway = Provider((400, {"error": {"code": "invalid_number", "message": "bad number"}}))
    push = Provider((202, {"message_id": "push-7"}))
    channels = directory(runtime, sms=sms(gateway), webhook=webhook(push))
    await deliver(runtime.engine, channels, request(patient(runtime)))
    with Session(runtime.engine) as session:
        message_id = session.exec(select(Message)).one().id
        admin = create_user(session, username="root", display_name="root", role=Role.ADMIN)
        token, _ = issue_token(session, admin, name="t")
    app = create_app(runtime)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://suifang.test"
    ) as api:
        response = await api.get(
            f"/messages/{message_id}", headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 200, response.text
        detail = response.json()
        missing = await api.get("/messages/999999", headers={"Authorization": f"Bearer {token}"})
        assert missing.status_code == 404
    assert (detail["status"], detail["channel"]) == ("accepted", "webhook")
    assert [(a["attempt"], a["channel"], a["outcome"]) for a in detail["attempts"]] == [
        (1, "sms", "permanent_error"),
        (2, "webhook", "accepted"),
    ]
    assert "invalid_number" in (detail["attempts"][0]["error"] or "")
    assert detail["attempts"][1]["provider_message_id"] == "push-7"

    code, out, err = cli("messages", "show", str(message_id))
    assert code == 0, err
    for shown in ("sms", "permanent_error", "webhook", "accepted", "push-7"):
        assert shown in out, shown
    code, out, err = cli("outbox", "--all-channels", "--attempts")
    assert code == 0, err
    assert "permanent_error" in out
    code, _, err = cli("messages", "show", "999999")
    assert code != 0
    assert "no message 999999" in err


async def test_a_number_the_gateway_says_is_invalid_is_not_tried_again_until_staff_confirm_it(
    runtime: Runtime, cli: Callable[..., tuple[int, str, str]]
) -> None:
    gateway = Provider((400, {"error": {"code": "invalid_number", "message": "no such number"}}))
    push = Provider((202, {"message_id": "push-1"}))
    channels = directory(runtime, sms=sms(gateway), webhook=webhook(push))
    patient_id = patient(runtime)
    first = await deliver(runtime.engine, channels, request(patient_id, "journey-1-x:day3"))
    assert (first.delivered, first.channel) == (True, "webhook")
    # The reminder and the next touchpoint skip the dead number: no second SMS to it.
    for key in ("journey-1-x:day3:reminder", "journey-1-x:day7"):
        later = await deliver(runtime.engine, channels, request(patient_id, key))
        assert (later.delivered, later.channel) == (True, "webhook")
    assert len(gateway.requests) == 1
    assert attempts(runtime).count(("sms", "no_address")) == 2
    with Session(runtime.engine) as session:
        phone = session.exec(select(ContactPoint).where(ContactPoint.system == "phone")).one()
    assert phone.failed_at is not None
    assert "invalid_number" in (phone.failed_reason or "")
    code, out, err = cli("contacts", "list", str(patient_id))
    assert code == 0, err
    assert "FAILED" in out
    assert "invalid_number" in out
    # Staff call the patient, confirm the number and prefer it: it is used again.
    code, _, err = cli("contacts", "prefer", str(patient_id), str(phone.id))
    assert code == 0, err
    gateway.responses = [(200, {"message_id": "gw-9", "status": "accepted"})]
    again = await deliver(runtime.engine, channels, request(patient_id, "journey-1-x:day14"))
    assert (again.delivered, again.channel) == (True, "sms")


async def test_a_refusal_that_is_not_about_the_number_does_not_fail_the_contact(
    runtime: Runtime,
) -> None:
    gateway = Provider((400, {"error": {"code": "template_not_approved"}}))
    push = Provider((202, {"message_id": "push-1"}))
    channels = directory(runtime, sms=sms(gateway), webhook=webhook(push))
    patient_id = patient(runtime)
    await deliver(runtime.engine, channels, request(patient_id, "journey-1-x:day3"))
    await deliver(runtime.engine, channels, request(patient_id, "journey-1-x:day7"))
    assert len(gateway.requests) == 2  # still tried: the number may be fine
    with Session(runtime.engine) as session:
        phone = session.exec(select(ContactPoint).where(ContactPoint.system == "phone")).one()
    assert phone.failed_at is None


async def test_transient_errors_are_retried_then_the_cascade_moves_on(runtime: Runtime) -> None:
    gateway = Provider((503, {"error": {"code": "busy", "message": "try later"}}))
    push = Provider((200, {}))
    channels = directory(runtime, sms=sms(gateway), webhook=webhook(push))
    patient_id = patient(runtime)
    for _ in range(TRANSIENT_ATTEMPTS_PER_CHANNEL - 1):
        with pytest.raises(RetryableDelivery, match="channel 'sms'"):
            await deliver(runtime.engine, channels, request(patient_id))
    outcome = await deliver(runtime.engine, channels, request(patient_id))
    assert outcome.channel == "webhook"
    assert attempts(runtime) == [("sms", "transient_error")] * TRANSIENT_ATTEMPTS_PER_CHANNEL + [
        ("webhook", "accepted")
    ]


async def test_a_retried_send_never_sends_an_accepted_message_again(runtime: Runtime) -> None:
    gateway = Provider((200, {"message_id": "gw-1"}))
    channels = directory(runtime, sms=sms(gateway))
    patient_id = patient(runtime)
    first = await deliver(runtime.engine, channels, request(patient_id))
    again = await deliver(runtime.engine, channels, request(patient_id))
    assert again == first
    assert len(gateway.requests) == 1
    with Session(runtime.engine) as session:
        assert len(session.exec(select(Message)).all()) == 1


async def test_patient_preferences_come_first_and_unconfigured_channels_are_skipped(
    runtime: Runtime,
) -> None:
    push = Provider((200, {}))
    channels = directory(runtime, webhook=webhook(push))
    patient_id = patient(runtime, preferred=["wechat", "webhook"])
    outcome = await deliver(runtime.engine, channels, request(patient_id))
    assert outcome.channel == "webhook"
    # wechat has no credentials in this environment: recorded as unavailable, never called.
    assert attempts(runtime) == [("wechat", "unavailable"), ("webhook", "accepted")]


async def test_nothing_accepts_the_message_is_undeliverable(runtime: Runtime) -> None:
    gateway = Provider((400, {"error": {"code": "blocked", "message": "blocked"}}))
    outcome = await deliver(
        runtime.engine,
        directory(runtime, sms=sms(gateway)),
        request(patient(runtime), channels=["sms"]),
    )
    assert (outcome.delivered, outcome.suppressed) == (False, "undeliverable")
    with Session(runtime.engine) as session:
        assert session.exec(select(Message)).one().status == "failed"


class Raising(Channel):
    name: ClassVar[str] = "raising"

    async def send(self, message: OutboundMessage) -> DeliveryReceipt:
        raise KeyError("bug in the plugin")


class Garbage(Channel):
    name: ClassVar[str] = "garbage"

    async def send(self, message: OutboundMessage) -> DeliveryReceipt:
        return "ok!"  # type: ignore[return-value]


class Hanging(Channel):
    name: ClassVar[str] = "hanging"

    async def send(self, message: OutboundMessage) -> DeliveryReceipt:
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")


async def test_misbehaving_plugins_are_recorded_and_skipped(runtime: Runtime) -> None:
    config = Channel.config_model(timeout_seconds=0.2)
    channels = directory(
        runtime, raising=Raising(config), garbage=Garbage(config), hanging=Hanging(config)
    )
    patient_id = patient(runtime)
    order = ["raising", "garbage", "hanging", "outbox"]
    for _ in range(TRANSIENT_ATTEMPTS_PER_CHANNEL - 1):
        with pytest.raises(RetryableDelivery, match="hanging"):
            await deliver(
                runtime.engine, channels, request(patient_id, channels=order), channel_timeout=0.3
            )
    outcome = await deliver(
        runtime.engine, channels, request(patient_id, channels=order), channel_timeout=0.3
    )
    assert outcome.channel == "outbox"
    recorded = attempts(runtime)
    assert recorded[:2] == [("raising", "incident"), ("garbage", "incident")]
    assert recorded.count(("hanging", "transient_error")) == TRANSIENT_ATTEMPTS_PER_CHANNEL
    assert recorded[-1] == ("outbox", "accepted")
