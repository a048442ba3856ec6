"""The voice channel against Twilio's documented Calls API and signed status callbacks."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any
from urllib.parse import parse_qs, urlencode

import defusedxml.ElementTree as ElementTree
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
from suifang.core.plugins import Plugins
from suifang.plugins.channels import voice as voice_plugin
from suifang.plugins.channels.voice import TwilioVoiceChannel, twilio_signature

ACCOUNT_SID = "AC00000000000000000000000000000001"
AUTH_TOKEN = "twilio-auth-token-for-tests"
CALLBACK = "https://followup.hospital.example/channels/voice/inbound"
PATIENT = "+8613800138000"
CLINIC = "+861088886666"

MESSAGE = OutboundMessage(
    idempotency_key="enr-17:day-7",
    patient_id=42,
    address=PATIENT,
    body="张先生您好，我是仁心医院心内科。请问您今天有没有胸痛？没有请按1，有请按2。",
)


def test_signature_matches_twilios_published_examples() -> None:
    """The vectors of Twilio's own request-validator tests (auth token 12345)."""
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    params = {
        "CallSid": "CA1234567890ABCDE",
        "Digits": "1234",
        "From": "+14158675309",
        "To": "+18005551212",
        "Caller": "+14158675309",
    }
    assert twilio_signature(url, list(params.items()), "12345") == "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    repeated = [("Sid", "CA123"), ("SidAccount", "AC123"), ("Digits", "5678"), ("Digits", "1234")]
    assert twilio_signature(url, repeated, "12345") == "IK+Dwps556ElfBT0I3Rgjkr1wJU="


class FakeTwilio:
    """POST /2010-04-01/Accounts/{AccountSid}/Calls.json as Twilio documents it."""

    def __init__(self, error: tuple[int, dict[str, Any], dict[str, str]] | None = None) -> None:
        self.error = error
        self.calls: list[dict[str, list[str]]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        expected_auth = "Basic " + base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
        if request.headers.get("Authorization") != expected_auth:
            return httpx.Response(
                401, json={"code": 20003, "message": "Authenticate", "status": 401}
            )
        assert request.url.path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls.json"
        assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
        if self.error:
            status, body, headers = self.error
            return httpx.Response(status, json=body, headers=headers)
        form = parse_qs(request.content.decode())
        self.calls.append(form)
        return httpx.Response(
            201,
            json={
                "sid": "CA5f2d1e4b6c7a8d9e0f1a2b3c4d5e6f70",
                "status": "queued",
                "to": form["To"][0],
                "from": form["From"][0],
                "price": None,
                "price_unit": "USD",
            },
        )


def make_channel(fake: Any = None, **overrides: Any) -> TwilioVoiceChannel:
    settings = {
        "account_sid": ACCOUNT_SID,
        "auth_token": AUTH_TOKEN,
        "from_number": CLINIC,
        "callback_url": CALLBACK,
        "say_voice": "Polly.Zhiyu",
        **overrides,
    }
    transport = httpx.MockTransport(fake or FakeTwilio())
    return TwilioVoiceChannel(
        TwilioVoiceChannel.load_config(**settings), http=httpx.AsyncClient(transport=transport)
    )


async def test_call_is_placed_with_a_chinese_script_gather_and_recording() -> None:
    fake = FakeTwilio()
    receipt = await make_channel(fake).send(MESSAGE)

    assert receipt.provider_message_id == "CA5f2d1e4b6c7a8d9e0f1a2b3c4d5e6f70"
    assert receipt.status == "queued"
    [form] = fake.calls
    assert form["To"] == [PATIENT]
    assert form["From"] == [CLINIC]
    assert form["Record"] == ["true"]
    assert form["StatusCallbackEvent"] == ["answered", "completed"]
    assert form["StatusCallback"] == [f"{CALLBACK}?event=status&key=enr-17%3Aday-7"]
    assert form["RecordingStatusCallback"] == [f"{CALLBACK}?event=recording&key=enr-17%3Aday-7"]
    twiml = ElementTree.fromstring(form["Twiml"][0])
    gather = twiml.find("Gather")
    assert gather is not None
    assert gather.get("input") == "speech dtmf"
    assert gather.get("language") == "cmn-Hans-CN"
    assert gather.get("action") == f"{CALLBACK}?event=gather&key=enr-17%3Aday-7"
    say = gather.find("Say")
    assert say is not None
    assert (say.get("language"), say.get("voice")) == ("zh-CN", "Polly.Zhiyu")
    assert say.text == MESSAGE.body
    closing = twiml.find("Say")
    assert closing is not None
    assert closing.text == "谢谢您的配合，祝您早日康复，再见。"


async def test_script_text_is_escaped_in_twiml() -> None:
    fake = FakeTwilio()
    tricky = MESSAGE.model_copy(update={"body": "血压<140 & 心率>60 </Say><Hangup/>"})
    await make_channel(fake).send(tricky)
    twiml = ElementTree.fromstring(fake.calls[0]["Twiml"][0])
    assert twiml.find("Hangup") is None
    assert twiml.findtext("Gather/Say") == "血压<140 & 心率>60 </Say><Hangup/>"


@pytest.mark.parametrize(
    ("status", "body", "headers", "error", "fragment"),
    [
        (
            400,
            {"code": 21211, "message": f"'To' {PATIENT} invalid"},
            {},
            PermanentChannelError,
            "invalid phone",
        ),
        (
            400,
            {"code": 21610, "message": "unsubscribed"},
            {},
            PermanentChannelError,
            "unsubscribed",
        ),
        (400, {"code": 21216, "message": "blocked"}, {}, PermanentChannelError, "blocked"),
        (
            429,
            {"code": 20429, "message": "Too Many Requests"},
            {"Retry-After": "3"},
            TransientChannelError,
            "20429",
        ),
        (503, {"code": 20500, "message": "Internal"}, {}, TransientChannelError, "503"),
        (408, {"message": "Request Timeout"}, {}, TransientChannelError, "408"),
        (400, {"code": 99999, "message": "new"}, {}, PermanentChannelError, "99999"),
    ],
)
async def test_twilio_errors_are_classified(
    status: int,
    body: dict[str, Any],
    headers: dict[str, str],
    error: type[Exception],
    fragment: str,
) -> None:
    with pytest.raises(error, match=fragment) as caught:
        await make_channel(FakeTwilio(error=(status, body, headers))).send(MESSAGE)
    assert PATIENT not in str(caught.value)
    assert "13800138000" not in str(caught.value)
    if status == 429:
        assert caught.value.retry_after == 3.0  # type: ignore[attr-defined]


async def test_wrong_credentials_are_permanent() -> None:
    with pytest.raises(PermanentChannelError, match="20003"):
        await make_channel(auth_token="wrong-token-123456").send(MESSAGE)


async def test_network_failures_are_transient() -> None:
    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(TransientChannelError, match="unreachable"):
        await make_channel(refused).send(MESSAGE)


async def test_too_long_script_and_bad_number_are_permanent() -> None:
    fake = FakeTwilio()
    with pytest.raises(PermanentChannelError, match="at most 4000"):
        await make_channel(fake).send(MESSAGE.model_copy(update={"body": "请" * 4000}))
    with pytest.raises(PermanentChannelError, match="not a phone number") as caught:
        await make_channel(fake).send(MESSAGE.model_copy(update={"address": "zhang@example.cn"}))
    assert "zhang" not in str(caught.value)
    assert fake.calls == []


async def test_national_numbers_get_the_country_code() -> None:
    fake = FakeTwilio()
    await make_channel(fake).send(MESSAGE.model_copy(update={"address": "138 0013 8000"}))
    await make_channel(fake).send(MESSAGE.model_copy(update={"address": "010-8888-6666"}))
    await make_channel(fake).send(MESSAGE.model_copy(update={"address": "0085291234567"}))
    assert [form["To"] for form in fake.calls] == [[PATIENT], ["+861088886666"], ["+85291234567"]]


# --- callbacks -----------------------------------------------------------------------------


def callback(event: str, params: dict[str, str], *, token: str = AUTH_TOKEN) -> InboundRequest:
    """A callback signed as Twilio signs it: URL + sorted POST params, HMAC-SHA1, Base64."""
    query = {"event": event, "key": "enr-17:day-7"}
    url = f"{CALLBACK}?{urlencode(query)}"
    data = url + "".join(k + v for k, v in sorted(params.items()))
    signature = base64.b64encode(
        hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()
    ).decode()
    return InboundRequest(
        query=query,
        headers={
            "X-Twilio-Signature": signature,
            "Content-Type": "application/x-www-form-urlencoded",
        },
        body=urlencode(params).encode(),
    )


CALL = {
    "AccountSid": ACCOUNT_SID,
    "CallSid": "CA5f2d1e4b6c7a8d9e0f1a2b3c4d5e6f70",
    "From": CLINIC,
    "To": PATIENT,
    "Direction": "outbound-api",
    "ApiVersion": "2010-04-01",
}


async def test_completed_call_is_delivered_with_duration_and_recording() -> None:
    params = {
        **CALL,
        "CallStatus": "completed",
        "CallDuration": "74",
        "RecordingUrl": "https://api.twilio.com/2010-04-01/Accounts/AC1/Recordings/RE1",
        "Timestamp": "Wed, 01 May 2024 01:31:14 +0000",
    }
    [update] = await make_channel().parse_inbound(callback("status", params))
    assert isinstance(update, DeliveryStatusUpdate)
    assert update.provider_message_id == CALL["CallSid"]
    assert update.status == "delivered"
    assert update.extra == {
        "call_status": "completed",
        "call_duration": 74,
        "recording_url": "https://api.twilio.com/2010-04-01/Accounts/AC1/Recordings/RE1",
    }
    assert update.at is not None
    assert update.at.isoformat() == "2024-05-01T01:31:14+00:00"


@pytest.mark.parametrize("call_status", ["busy", "no-answer", "failed", "canceled"])
async def test_unreached_calls_fail(call_status: str) -> None:
    [update] = await make_channel().parse_inbound(
        callback("status", {**CALL, "CallStatus": call_status})
    )
    assert isinstance(update, DeliveryStatusUpdate)
    assert (update.status, update.error) == ("failed", call_status)


async def test_ringing_is_not_reported() -> None:
    assert (
        await make_channel().parse_inbound(callback("status", {**CALL, "CallStatus": "ringing"}))
        == []
    )


async def test_recording_callback_carries_the_recording() -> None:
    params = {
        "AccountSid": ACCOUNT_SID,
        "CallSid": CALL["CallSid"],
        "RecordingSid": "RE0123",
        "RecordingUrl": "https://api.twilio.com/2010-04-01/Accounts/AC1/Recordings/RE0123",
        "RecordingStatus": "completed",
        "RecordingDuration": "70",
    }
    [update] = await make_channel().parse_inbound(callback("recording", params))
    assert isinstance(update, DeliveryStatusUpdate)
    assert update.extra == {
        "recording_url": "https://api.twilio.com/2010-04-01/Accounts/AC1/Recordings/RE0123",
        "recording_sid": "RE0123",
        "recording_duration": 70,
    }


async def test_spoken_answer_becomes_an_inbound_message_and_ends_the_call() -> None:
    channel = make_channel()
    params = {**CALL, "CallStatus": "in-progress", "SpeechResult": "没有胸痛", "Confidence": "0.92"}

    items = await channel.parse_inbound(callback("gather", params))

    reply, answered = items
    assert isinstance(reply, InboundMessage)
    assert (reply.channel, reply.sender, reply.text) == ("voice", PATIENT, "没有胸痛")
    assert (reply.provider_message_id, reply.in_reply_to) == (CALL["CallSid"], "enr-17:day-7")
    assert isinstance(answered, DeliveryStatusUpdate)
    assert answered.status == "answered"
    assert answered.extra == {"speech_result": "没有胸痛", "confidence": "0.92"}
    body, media_type = channel.inbound_response(items)
    assert media_type == "application/xml"
    twiml = ElementTree.fromstring(body)
    assert twiml.findtext("Say") == "谢谢您的配合，祝您早日康复，再见。"
    assert twiml.find("Hangup") is not None


async def test_keyed_answer_is_an_answer_too() -> None:
    [reply, _] = await make_channel().parse_inbound(callback("gather", {**CALL, "Digits": "1"}))
    assert isinstance(reply, InboundMessage)
    assert (reply.text, reply.answers) == ("1", {"digits": "1"})


async def test_status_callback_answer_is_an_empty_twiml() -> None:
    channel = make_channel()
    items = await channel.parse_inbound(callback("status", {**CALL, "CallStatus": "completed"}))
    body, _ = channel.inbound_response(items)
    assert ElementTree.fromstring(body).tag == "Response"
    assert len(ElementTree.fromstring(body)) == 0


@pytest.mark.parametrize(
    ("request_factory", "status_code", "problem"),
    [
        (
            lambda: callback("status", {**CALL, "CallStatus": "completed"}, token="x" * 20),
            401,
            "does not match",
        ),
        (
            lambda: InboundRequest(query={"event": "status", "key": "k"}, body=b"CallSid=CA1"),
            401,
            "lacks X-Twilio-Signature",
        ),
        (lambda: InboundRequest(query={}, body=b""), 400, "event"),
        (
            lambda: callback("status", {**CALL, "AccountSid": "AC999"}),
            403,
            "another Twilio account",
        ),
        (
            lambda: callback("status", {"AccountSid": ACCOUNT_SID, "CallStatus": "completed"}),
            400,
            "CallSid",
        ),
    ],
)
async def test_bad_callbacks_are_rejected(
    request_factory: Any, status_code: int, problem: str
) -> None:
    with pytest.raises(InboundRejected, match=problem) as caught:
        await make_channel().parse_inbound(request_factory())
    assert caught.value.status_code == status_code


async def test_tampered_callback_body_is_rejected() -> None:
    signed = callback("gather", {**CALL, "Digits": "1"})
    tampered = signed.model_copy(update={"body": signed.body.replace(b"Digits=1", b"Digits=2")})
    with pytest.raises(InboundRejected) as caught:
        await make_channel().parse_inbound(tampered)
    assert caught.value.status_code == 401


def test_registered_through_the_plugin_hook() -> None:
    plugins = Plugins.load(builtins=False, entrypoints=False, extra=[("voice", voice_plugin)])
    assert plugins.channel_classes() == {"voice": TwilioVoiceChannel}
    assert TwilioVoiceChannel.env_prefix() == "SUIFANG_CHANNEL_VOICE_"
