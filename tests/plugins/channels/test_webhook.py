"""The webhook channel: signed POSTs to a real local receiver, error classes, signed inbound."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from suifang.core.channels import (
    DeliveryStatusUpdate,
    InboundMessage,
    InboundRejected,
    InboundRequest,
    OutboundMessage,
    PermanentChannelError,
    TransientChannelError,
)
from suifang.core.errors import ConfigurationError
from suifang.core.plugins import Plugins
from suifang.plugins.channels import webhook as webhook_plugin
from suifang.plugins.channels.webhook import WebhookChannel

SECRET = "hospital-shared-secret-0001"
OLD_SECRET = "hospital-shared-secret-0000"

MESSAGE = OutboundMessage(
    idempotency_key="enr-17:day-7",
    patient_id=42,
    address="app-user-9",
    subject="术后第7天随访",
    body="张先生您好，请问您今天胸口还疼吗？",
    link="https://h5.hospital.example/q/abc",
    metadata={"department": "cardiology"},
)


class Receiver(BaseHTTPRequestHandler):
    """A hospital system that checks X-Suifang-Signature exactly as documented."""

    received: list[dict[str, Any]]
    answer: tuple[int, bytes] = (200, b'{"message_id": "push-981"}')

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        parts = dict(part.split("=", 1) for part in self.headers["X-Suifang-Signature"].split(","))
        expected = hmac.new(
            SECRET.encode(), parts["t"].encode() + b"." + body, hashlib.sha256
        ).hexdigest()
        if (
            not hmac.compare_digest(expected, parts["v1"])
            or abs(time.time() - int(parts["t"])) > 300
        ):
            self.send_response(401)
            self.end_headers()
            return
        self.received.append(
            {"headers": dict(self.headers.items()), "json": json.loads(body.decode("utf-8"))}
        )
        status, payload = self.answer
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test asserts on what arrived instead."""


@pytest.fixture
def receiver() -> Iterator[tuple[str, type[Receiver]]]:
    handler = type("RecordingReceiver", (Receiver,), {"received": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/suifang", handler
    finally:
        server.shutdown()
        server.server_close()


def make_channel(
    url: str = "https://push.hospital.example/suifang",
    *,
    transport: httpx.MockTransport | None = None,
    secrets: str = SECRET,
    **overrides: Any,
) -> WebhookChannel:
    config = WebhookChannel.load_config(url=url, secrets=secrets, **overrides)
    http = httpx.AsyncClient(transport=transport) if transport else None
    return WebhookChannel(config, http=http)


async def test_send_posts_signed_json_to_a_real_receiver(
    receiver: tuple[str, type[Receiver]],
) -> None:
    url, handler = receiver
    channel = make_channel(url, headers={"X-Hospital": "H001"})
    try:
        receipt = await channel.send(MESSAGE)
    finally:
        await channel.aclose()

    assert receipt.status == "accepted"
    assert receipt.provider_message_id == "push-981"
    [call] = handler.received
    assert call["headers"]["Idempotency-Key"] == "enr-17:day-7"
    assert call["headers"]["X-Hospital"] == "H001"
    assert call["json"] == {
        "idempotency_key": "enr-17:day-7",
        "patient_id": 42,
        "address": "app-user-9",
        "locale": "zh-CN",
        "subject": "术后第7天随访",
        "body": "张先生您好，请问您今天胸口还疼吗？",
        "link": "https://h5.hospital.example/q/abc",
        "template_id": None,
        "template_params": {},
        "metadata": {"department": "cardiology"},
    }


async def test_rotation_signs_with_the_first_secret(receiver: tuple[str, type[Receiver]]) -> None:
    url, handler = receiver
    channel = make_channel(url, secrets=f"{SECRET},{OLD_SECRET}")
    try:
        await channel.send(MESSAGE)
    finally:
        await channel.aclose()
    assert len(handler.received) == 1
    wrong_first = make_channel(url, secrets=f"{OLD_SECRET},{SECRET}")
    try:
        with pytest.raises(PermanentChannelError, match="HTTP 401"):
            await wrong_first.send(MESSAGE)
    finally:
        await wrong_first.aclose()


async def test_receiver_without_message_id_is_tracked_by_idempotency_key(
    receiver: tuple[str, type[Receiver]],
) -> None:
    url, handler = receiver
    handler.answer = (202, b"")
    channel = make_channel(url)
    try:
        receipt = await channel.send(MESSAGE)
    finally:
        await channel.aclose()
    assert receipt.provider_message_id == "enr-17:day-7"
    assert receipt.detail == {"http_status": 202}


async def test_connection_refused_is_transient() -> None:
    channel = make_channel("http://127.0.0.1:9/nothing-listens-here")
    try:
        with pytest.raises(TransientChannelError, match="unreachable"):
            await channel.send(MESSAGE)
    finally:
        await channel.aclose()


@pytest.mark.parametrize(
    ("status", "headers", "error", "retry_after"),
    [
        (400, {}, PermanentChannelError, None),
        (404, {}, PermanentChannelError, None),
        (410, {}, PermanentChannelError, None),
        (408, {}, TransientChannelError, None),
        (429, {"Retry-After": "17"}, TransientChannelError, 17.0),
        (500, {}, TransientChannelError, None),
        (503, {"Retry-After": "120"}, TransientChannelError, 120.0),
        (302, {"Location": "https://elsewhere.example"}, PermanentChannelError, None),
    ],
)
async def test_http_status_classification(
    status: int, headers: dict[str, str], error: type[Exception], retry_after: float | None
) -> None:
    channel = make_channel(
        transport=httpx.MockTransport(lambda request: httpx.Response(status, headers=headers))
    )
    with pytest.raises(error) as caught:
        await channel.send(MESSAGE)
    assert f"HTTP {status}" in str(caught.value)
    assert "app-user-9" not in str(caught.value)
    assert "张先生" not in str(caught.value)
    if isinstance(caught.value, TransientChannelError):
        assert caught.value.retry_after == retry_after


async def test_timeout_is_transient() -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    channel = make_channel(transport=httpx.MockTransport(slow))
    with pytest.raises(TransientChannelError, match="timed out"):
        await channel.send(MESSAGE)


def test_missing_settings_name_the_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SUIFANG_CHANNEL_WEBHOOK_URL", raising=False)
    monkeypatch.delenv("SUIFANG_CHANNEL_WEBHOOK_SECRETS", raising=False)
    with pytest.raises(ConfigurationError) as caught:
        WebhookChannel.load_config()
    assert "SUIFANG_CHANNEL_WEBHOOK_URL" in str(caught.value)
    assert "SUIFANG_CHANNEL_WEBHOOK_SECRETS" in str(caught.value)
    with pytest.raises(ConfigurationError, match="use at least 16"):
        WebhookChannel.load_config(url="https://x.example", secrets="weak")


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUIFANG_CHANNEL_WEBHOOK_URL", "https://push.hospital.example/in")
    monkeypatch.setenv("SUIFANG_CHANNEL_WEBHOOK_SECRETS", f"{SECRET}, {OLD_SECRET}")
    monkeypatch.setenv("SUIFANG_CHANNEL_WEBHOOK_HEADERS", '{"X-Hospital": "H001"}')
    channel = WebhookChannel(WebhookChannel.load_config())
    assert channel.signer.secrets == (SECRET.encode(), OLD_SECRET.encode())
    assert channel.settings.headers == {"X-Hospital": "H001"}


def signed(body: bytes, *, secret: str = SECRET, at: float | None = None) -> InboundRequest:
    timestamp = int(time.time() if at is None else at)
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return InboundRequest(
        headers={"X-Suifang-Signature": f"t={timestamp},v1={digest.hexdigest()}"}, body=body
    )


async def test_inbound_reply_and_status() -> None:
    channel = make_channel(secrets=f"{SECRET},{OLD_SECRET}")
    body = json.dumps(
        [
            {
                "type": "reply",
                "sender": "app-user-9",
                "text": "不疼了，谢谢医生",
                "answers": {"chest_pain": False, "pain_score": 1},
                "in_reply_to": "enr-17:day-7",
                "message_id": "push-reply-5",
                "received_at": "2024-05-01T09:30:00+08:00",
            },
            {"type": "status", "provider_message_id": "push-981", "status": "read"},
        ],
        ensure_ascii=False,
    ).encode()

    reply, status = await channel.parse_inbound(signed(body, secret=OLD_SECRET))

    assert isinstance(reply, InboundMessage)
    assert reply.channel == "webhook"
    assert reply.sender == "app-user-9"
    assert reply.text == "不疼了，谢谢医生"
    assert reply.answers == {"chest_pain": False, "pain_score": 1}
    assert reply.in_reply_to == "enr-17:day-7"
    assert reply.provider_message_id == "push-reply-5"
    assert reply.received_at is not None
    assert reply.received_at.utcoffset() is not None
    assert reply.received_at.hour == 9
    assert isinstance(status, DeliveryStatusUpdate)
    assert (status.provider_message_id, status.status) == ("push-981", "read")
    assert channel.inbound_response([reply, status]) == ('{"ok": true}', "application/json")


async def test_inbound_single_object_body() -> None:
    channel = make_channel()
    body = json.dumps(
        {
            "type": "status",
            "provider_message_id": "push-1",
            "status": "failed",
            "error": "uninstalled",
        }
    ).encode()
    [update] = await channel.parse_inbound(signed(body))
    assert isinstance(update, DeliveryStatusUpdate)
    assert (update.status, update.error) == ("failed", "uninstalled")


@pytest.mark.parametrize(
    ("request_factory", "status_code", "problem"),
    [
        (lambda body: signed(body, secret="someone-elses-secret-123"), 401, "does not match"),
        (lambda body: signed(body, at=time.time() - 3600), 401, "old"),
        (lambda body: InboundRequest(body=body), 401, "missing"),
    ],
)
async def test_inbound_bad_signatures_are_rejected(
    request_factory: Any, status_code: int, problem: str
) -> None:
    channel = make_channel()
    body = b'{"type": "reply", "sender": "app-user-9", "text": "hi"}'
    with pytest.raises(InboundRejected, match=problem) as caught:
        await channel.parse_inbound(request_factory(body))
    assert caught.value.status_code == status_code


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"{not json", "not valid JSON"),
        (b'{"type": "reply", "text": "\xe7\x97\x9b"}', "sender: Field required"),
        (b'{"type": "reply", "sender": "u1"}', "needs 'text' or 'answers'"),
        (b'{"type": "greeting"}', "type: must be 'reply' or 'status'"),
        (
            b'[{"type": "status", "provider_message_id": "p", "status": "lost"}]',
            r"event \[0\]: status",
        ),
        (b'"just a string"', "must be a JSON object"),
    ],
)
async def test_inbound_malformed_bodies_are_rejected_400(body: bytes, problem: str) -> None:
    channel = make_channel()
    with pytest.raises(InboundRejected, match=problem) as caught:
        await channel.parse_inbound(signed(body))
    assert caught.value.status_code == 400
    assert "痛" not in str(caught.value)


async def test_inbound_oversized_body_is_rejected_413() -> None:
    channel = make_channel(max_inbound_bytes=1024)
    body = json.dumps({"type": "reply", "sender": "u", "text": "x" * 2000}).encode()
    with pytest.raises(InboundRejected) as caught:
        await channel.parse_inbound(signed(body))
    assert caught.value.status_code == 413


def test_registered_through_the_plugin_hook() -> None:
    plugins = Plugins.load(builtins=False, entrypoints=False, extra=[("webhook", webhook_plugin)])
    assert plugins.channel_classes() == {"webhook": WebhookChannel}
    assert WebhookChannel.env_prefix() == "SUIFANG_CHANNEL_WEBHOOK_"
