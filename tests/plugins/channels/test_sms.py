"""SMS channels: suifang's generic gateway protocol and Aliyun Dysmsapi, against faithful fakes."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import time
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, quote

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
from suifang.plugins.channels import sms as sms_plugin
from suifang.plugins.channels.sms import (
    AliyunSmsChannel,
    SmsGatewayChannel,
    aliyun_rpc_signature,
)

PHONE = "+8613800138000"
TEXT = "【仁心医院】张先生您好，术后第7天，请回复您的疼痛评分(0-10)。"
MESSAGE = OutboundMessage(idempotency_key="enr-17:day-7", patient_id=42, address=PHONE, body=TEXT)
CALLBACK_SECRET = "gateway-callback-secret-01"
ALIYUN_TOKEN = "aliyun-callback-token-0001"


# --- generic gateway -----------------------------------------------------------------------


def gateway(handler: Any, **overrides: Any) -> SmsGatewayChannel:
    settings = {
        "url": "https://sms-gw.example/v1/messages",
        "api_key": "gw-key-123",
        "sender_id": "RENXIN",
        "callback_secrets": CALLBACK_SECRET,
        **overrides,
    }
    config = SmsGatewayChannel.load_config(**settings)
    return SmsGatewayChannel(config, http=httpx.AsyncClient(transport=httpx.MockTransport(handler)))


async def test_gateway_send_posts_the_documented_request() -> None:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.headers.get("Authorization") != "Bearer gw-key-123":
            return httpx.Response(401, json={"error": {"code": "unauthorized"}})
        return httpx.Response(
            201,
            json={
                "message_id": "gw-123",
                "status": "queued",
                "segments": 2,
                "cost": "0.10",
                "currency": "CNY",
            },
        )

    receipt = await gateway(handle).send(MESSAGE)

    assert receipt.provider_message_id == "gw-123"
    assert receipt.status == "queued"
    assert receipt.cost == Decimal("0.10")
    assert receipt.currency == "CNY"
    assert receipt.detail == {"segments": 2}
    [request] = seen
    assert request.method == "POST"
    assert str(request.url) == "https://sms-gw.example/v1/messages"
    assert request.headers["Idempotency-Key"] == "enr-17:day-7"
    assert json.loads(request.content) == {
        "to": PHONE,
        "body": TEXT,
        "client_reference": "enr-17:day-7",
        "sender_id": "RENXIN",
    }


@pytest.mark.parametrize(
    ("status", "body", "headers", "error", "fragment"),
    [
        (400, {"error": {"code": "invalid_number"}}, {}, PermanentChannelError, "invalid_number"),
        (422, {"error": {"code": "unsubscribed"}}, {}, PermanentChannelError, "unsubscribed"),
        (401, {"error": {"code": "unauthorized"}}, {}, PermanentChannelError, "API_KEY"),
        (
            429,
            {"error": {"code": "rate_limited"}},
            {"Retry-After": "30"},
            TransientChannelError,
            "429",
        ),
        (503, None, {}, TransientChannelError, "503"),
        (400, {"error": {"code": "bad number +8613800138000"}}, {}, PermanentChannelError, "400"),
    ],
)
async def test_gateway_errors_are_classified(
    status: int,
    body: Any,
    headers: dict[str, str],
    error: type[Exception],
    fragment: str,
) -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=body, headers=headers)

    with pytest.raises(error, match=fragment) as caught:
        await gateway(handle).send(MESSAGE)
    assert "13800138000" not in str(caught.value)
    assert "张先生" not in str(caught.value)
    if status == 429:
        assert caught.value.retry_after == 30.0  # type: ignore[attr-defined]


async def test_gateway_sends_national_numbers_in_e164() -> None:
    seen: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content)["to"])
        return httpx.Response(200, json={"message_id": "gw-1"})

    channel = gateway(handle)
    for address in ("138-0013-8000", "+8613800138000", "008613800138000"):
        await channel.send(MESSAGE.model_copy(update={"address": address}))
    assert seen == [PHONE, PHONE, PHONE]


async def test_gateway_connection_failure_is_transient() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(TransientChannelError, match="unreachable"):
        await gateway(handle).send(MESSAGE)


async def test_gateway_refuses_an_address_that_is_not_a_phone_number() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        raise AssertionError("nothing should be sent")

    bad = MESSAGE.model_copy(update={"address": "zhang@example.com"})
    with pytest.raises(PermanentChannelError, match="not a phone number") as caught:
        await gateway(handle).send(bad)
    assert "zhang" not in str(caught.value)


def signed_callback(
    body: bytes, *, secret: str = CALLBACK_SECRET, age: float = 0
) -> InboundRequest:
    timestamp = int(time.time() - age)
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return InboundRequest(headers={"X-Suifang-Signature": f"t={timestamp},v1={digest}"}, body=body)


async def test_gateway_inbound_reply_and_status() -> None:
    body = json.dumps(
        [
            {
                "type": "inbound",
                "from": PHONE,
                "text": "疼痛3分",
                "message_id": "gw-in-9",
                "in_reply_to": "gw-123",
                "received_at": "2024-05-01T09:30:00+08:00",
            },
            {
                "type": "status",
                "message_id": "gw-123",
                "client_reference": "enr-17:day-7",
                "status": "expired",
            },
        ],
        ensure_ascii=False,
    ).encode()

    reply, status = await gateway(lambda r: httpx.Response(500)).parse_inbound(
        signed_callback(body)
    )

    assert isinstance(reply, InboundMessage)
    assert (reply.channel, reply.sender, reply.text) == ("sms", PHONE, "疼痛3分")
    assert (reply.provider_message_id, reply.in_reply_to) == ("gw-in-9", "gw-123")
    assert isinstance(status, DeliveryStatusUpdate)
    assert (status.provider_message_id, status.status, status.error) == (
        "gw-123",
        "failed",
        "expired",
    )
    assert status.extra == {"client_reference": "enr-17:day-7"}


async def test_gateway_inbound_rejections() -> None:
    channel = gateway(lambda r: httpx.Response(500))
    good = b'{"type": "inbound", "from": "+8613800138000", "text": "ok"}'
    with pytest.raises(InboundRejected) as forged:
        await channel.parse_inbound(signed_callback(good, secret="not-the-callback-secret"))
    with pytest.raises(InboundRejected, match="old") as replayed:
        await channel.parse_inbound(signed_callback(good, age=3600))
    with pytest.raises(InboundRejected, match="from: Field required") as malformed:
        await channel.parse_inbound(signed_callback(b'{"type": "inbound", "text": "ok"}'))
    with pytest.raises(InboundRejected, match="not valid JSON") as not_json:
        await channel.parse_inbound(signed_callback(b"<xml/>"))
    assert (forged.value.status_code, replayed.value.status_code) == (401, 401)
    assert (malformed.value.status_code, not_json.value.status_code) == (400, 400)
    unconfigured = gateway(lambda r: httpx.Response(500), callback_secrets=[])
    with pytest.raises(InboundRejected, match="CALLBACK_SECRETS") as disabled:
        await unconfigured.parse_inbound(signed_callback(good))
    assert disabled.value.status_code == 403


# --- Aliyun --------------------------------------------------------------------------------


def test_aliyun_signature_matches_the_documented_example() -> None:
    """The worked example of Aliyun's SMS signature documentation (GET, secret testSecret)."""
    params = {
        "SignatureMethod": "HMAC-SHA1",
        "SignatureNonce": "45e25e9b-0a6f-4070-8c85-2956eda1b466",
        "AccessKeyId": "testId",
        "SignatureVersion": "1.0",
        "Timestamp": "2017-07-12T02:42:19Z",
        "Format": "XML",
        "Action": "SendSms",
        "Version": "2017-05-25",
        "RegionId": "cn-hangzhou",
        "PhoneNumbers": "15300000001",
        "SignName": "阿里云短信测试专用",
        "TemplateParam": '{"customer":"test"}',
        "TemplateCode": "SMS_71390007",
        "OutId": "123",
    }
    assert (
        aliyun_rpc_signature(params, "testSecret", method="GET") == "zJDF+Lrzhj/ThnlvIToysFRq6t4="
    )


class FakeDysmsapi:
    """Aliyun's SendSms endpoint as documented: checks the signature, answers Code/BizId."""

    def __init__(self, *, answers: dict[str, tuple[int, dict[str, Any]]] | None = None) -> None:
        self.answers = answers or {}
        self.accepted: list[dict[str, str]] = []
        self.nonces: set[str] = set()

    @staticmethod
    def percent_encode(value: str) -> str:
        # The documentation's recipe: form-encode, then + → %20, * → %2A, %7E → ~.
        return quote(value, safe="~").replace("+", "%20").replace("*", "%2A").replace("%7E", "~")

    def expected_signature(self, params: dict[str, str], secret: str) -> str:
        canonical = "&".join(
            f"{self.percent_encode(k)}={self.percent_encode(v)}" for k, v in sorted(params.items())
        )
        string_to_sign = "POST&%2F&" + self.percent_encode(canonical)
        digest = hmac.new(f"{secret}&".encode(), string_to_sign.encode(), hashlib.sha1).digest()
        return base64.b64encode(digest).decode()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        params = dict(parse_qsl(request.content.decode(), keep_blank_values=True))
        signature = params.pop("Signature", "")
        if params.get("AccessKeyId") != "LTAI-test-id":
            return httpx.Response(404, json={"Code": "InvalidAccessKeyId.NotFound"})
        if not hmac.compare_digest(signature, self.expected_signature(params, "test-secret")):
            return httpx.Response(
                400, json={"Code": "SignatureDoesNotMatch", "Message": "Specified signature..."}
            )
        stamp = dt.datetime.strptime(params["Timestamp"], "%Y-%m-%dT%H:%M:%SZ")
        if abs(stamp.replace(tzinfo=dt.UTC).timestamp() - time.time()) > 900:
            return httpx.Response(400, json={"Code": "InvalidTimeStamp.Expired"})
        if params["SignatureNonce"] in self.nonces:
            return httpx.Response(400, json={"Code": "SignatureNonceUsed"})
        self.nonces.add(params["SignatureNonce"])
        assert (params["Action"], params["Version"]) == ("SendSms", "2017-05-25")
        assert (params["SignatureMethod"], params["SignatureVersion"]) == ("HMAC-SHA1", "1.0")
        if params["PhoneNumbers"] in self.answers:
            status, body = self.answers[params["PhoneNumbers"]]
            return httpx.Response(status, json={"RequestId": "req-x", **body})
        self.accepted.append(params)
        return httpx.Response(
            200,
            json={
                "Code": "OK",
                "Message": "OK",
                "BizId": "900619746936498440^0",
                "RequestId": "r1",
            },
        )


def aliyun(fake: Any, **overrides: Any) -> AliyunSmsChannel:
    settings = {
        "access_key_id": "LTAI-test-id",
        "access_key_secret": "test-secret",
        "sign_name": "仁心医院",
        "callback_token": ALIYUN_TOKEN,
        **overrides,
    }
    config = AliyunSmsChannel.load_config(**settings)
    return AliyunSmsChannel(config, http=httpx.AsyncClient(transport=httpx.MockTransport(fake)))


TEMPLATED = MESSAGE.model_copy(
    update={"template_id": "SMS_153055065", "template_params": {"name": "张先生", "day": "7"}}
)


async def test_aliyun_send_is_signed_and_returns_the_biz_id() -> None:
    fake = FakeDysmsapi()
    channel = aliyun(fake)
    receipt = await channel.send(TEMPLATED)
    again = await channel.send(TEMPLATED)

    assert receipt.provider_message_id == "900619746936498440^0"
    assert receipt.status == "accepted"
    assert again.provider_message_id == receipt.provider_message_id
    first, second = fake.accepted
    assert first["PhoneNumbers"] == "8613800138000"
    assert first["SignName"] == "仁心医院"
    assert first["TemplateCode"] == "SMS_153055065"
    assert json.loads(first["TemplateParam"]) == {"name": "张先生", "day": "7"}
    assert first["OutId"] == "enr-17:day-7"
    assert first["SignatureNonce"] != second["SignatureNonce"]


async def test_aliyun_wrong_secret_is_permanent() -> None:
    channel = aliyun(FakeDysmsapi(), access_key_secret="not-the-secret")
    with pytest.raises(PermanentChannelError, match="SignatureDoesNotMatch"):
        await channel.send(TEMPLATED)


async def test_aliyun_needs_a_template() -> None:
    fake = FakeDysmsapi()
    with pytest.raises(PermanentChannelError, match="DEFAULT_TEMPLATE_CODE"):
        await aliyun(fake).send(MESSAGE)
    receipt = await aliyun(fake, default_template_code="SMS_1").send(MESSAGE)
    assert receipt.provider_message_id
    assert fake.accepted[0]["TemplateCode"] == "SMS_1"
    assert "TemplateParam" not in fake.accepted[0]


@pytest.mark.parametrize(
    ("http_status", "code", "error", "retry_after"),
    [
        (200, "isv.MOBILE_NUMBER_ILLEGAL", PermanentChannelError, None),
        (200, "isv.SMS_TEMPLATE_ILLEGAL", PermanentChannelError, None),
        (200, "isv.AMOUNT_NOT_ENOUGH", PermanentChannelError, None),
        (200, "isv.DAY_LIMIT_CONTROL", PermanentChannelError, None),
        (200, "isv.BUSINESS_LIMIT_CONTROL", TransientChannelError, 60.0),
        (400, "Throttling.User", TransientChannelError, 1.0),
        (500, "isp.SYSTEM_ERROR", TransientChannelError, None),
        (503, "ServiceUnavailable", TransientChannelError, None),
        (502, "SomethingNew", TransientChannelError, None),
        (408, "RequestTimeout", TransientChannelError, None),
        (400, "SomethingNew", PermanentChannelError, None),
    ],
)
async def test_aliyun_error_codes_are_classified(
    http_status: int, code: str, error: type[Exception], retry_after: float | None
) -> None:
    fake = FakeDysmsapi(
        answers={"8613800138000": (http_status, {"Code": code, "Message": "手机号码格式错误"})}
    )
    with pytest.raises(error, match=code) as caught:
        await aliyun(fake).send(TEMPLATED)
    assert "13800138000" not in str(caught.value)
    assert "手机号码" not in str(caught.value)
    if isinstance(caught.value, TransientChannelError):
        assert caught.value.retry_after == retry_after


async def test_aliyun_timeout_is_transient() -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    with pytest.raises(TransientChannelError, match="timed out"):
        await aliyun(slow).send(TEMPLATED)


def aliyun_callback(payload: Any, token: str = ALIYUN_TOKEN) -> InboundRequest:
    body = json.dumps(payload, ensure_ascii=False).encode()
    return InboundRequest(query={"token": token}, body=body)


async def test_aliyun_delivery_reports_and_uplinks() -> None:
    channel = aliyun(FakeDysmsapi())
    report_ok = {
        "phone_number": "13800138000",
        "send_time": "2024-05-01 09:00:00",
        "report_time": "2024-05-01 09:00:05",
        "success": True,
        "err_code": "DELIVERED",
        "err_msg": "用户接收成功",
        "sms_size": "1",
        "biz_id": "900619746936498440^0",
        "out_id": "enr-17:day-7",
    }
    report_failed = {**report_ok, "success": False, "err_code": "MK:0001", "biz_id": "77^0"}
    uplink = {
        "phone_number": "13800138000",
        "send_time": "2024-05-01 09:30:00",
        "content": "疼痛3分",
        "sign_name": "仁心医院",
        "dest_code": "1234",
        "sequence_id": 1234567890,
    }

    delivered, failed, reply = await channel.parse_inbound(
        aliyun_callback([report_ok, report_failed, uplink])
    )

    assert isinstance(delivered, DeliveryStatusUpdate)
    assert (delivered.provider_message_id, delivered.status) == (
        "900619746936498440^0",
        "delivered",
    )
    assert delivered.extra["out_id"] == "enr-17:day-7"
    assert delivered.at == dt.datetime(2024, 5, 1, 1, 0, 5, tzinfo=dt.UTC)
    assert isinstance(failed, DeliveryStatusUpdate)
    assert (failed.status, failed.error) == ("failed", "MK:0001")
    assert isinstance(reply, InboundMessage)
    assert (reply.channel, reply.sender, reply.text) == ("sms-aliyun", "13800138000", "疼痛3分")
    assert reply.provider_message_id == "1234567890"
    assert channel.inbound_response([reply]) == (
        '{"code": 0, "msg": "接收成功"}',
        "application/json",
    )


async def test_aliyun_callback_rejections() -> None:
    channel = aliyun(FakeDysmsapi())
    with pytest.raises(InboundRejected, match="token") as wrong_token:
        await channel.parse_inbound(aliyun_callback([], token="guess"))
    with pytest.raises(InboundRejected, match="JSON array") as not_array:
        await channel.parse_inbound(aliyun_callback({"content": "x"}))
    with pytest.raises(InboundRejected, match=r"item \[0\] is neither") as unknown:
        await channel.parse_inbound(aliyun_callback([{"hello": "world"}]))
    with pytest.raises(InboundRejected, match=r"item \[0\]: biz_id") as missing:
        await channel.parse_inbound(aliyun_callback([{"success": True, "phone_number": "1"}]))
    too_big = InboundRequest(query={"token": ALIYUN_TOKEN}, body=b"[" * 300_000)
    with pytest.raises(InboundRejected) as oversized:
        await channel.parse_inbound(too_big)
    assert wrong_token.value.status_code == 403
    assert (not_array.value.status_code, unknown.value.status_code) == (400, 400)
    assert missing.value.status_code == 400
    assert oversized.value.status_code == 413
    no_token = aliyun(FakeDysmsapi(), callback_token=None)
    with pytest.raises(InboundRejected, match="CALLBACK_TOKEN") as disabled:
        await no_token.parse_inbound(aliyun_callback([]))
    assert disabled.value.status_code == 403


def test_aliyun_missing_settings_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    for field in ("ACCESS_KEY_ID", "ACCESS_KEY_SECRET", "SIGN_NAME"):
        monkeypatch.delenv(f"SUIFANG_CHANNEL_SMS_ALIYUN_{field}", raising=False)
    with pytest.raises(ConfigurationError) as caught:
        AliyunSmsChannel.load_config()
    for field in ("ACCESS_KEY_ID", "ACCESS_KEY_SECRET", "SIGN_NAME"):
        assert f"SUIFANG_CHANNEL_SMS_ALIYUN_{field}" in str(caught.value)


def test_registered_through_the_plugin_hook() -> None:
    plugins = Plugins.load(builtins=False, entrypoints=False, extra=[("sms", sms_plugin)])
    assert plugins.channel_classes() == {"sms": SmsGatewayChannel, "sms-aliyun": AliyunSmsChannel}
    assert AliyunSmsChannel.env_prefix() == "SUIFANG_CHANNEL_SMS_ALIYUN_"
