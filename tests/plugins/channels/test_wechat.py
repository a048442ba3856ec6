"""The WeChat channel against a fake of the documented Official Account API and push format."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

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
from suifang.plugins.channels import wechat as wechat_plugin
from suifang.plugins.channels.wechat import WeChatChannel

APP_ID = "wx1234567890abcdef"
APP_SECRET = "app-secret-for-tests"
PUSH_TOKEN = "push-token-for-tests"
OPENID = "oia2TjuEGTNoeX76QEjQNrcURxG8"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"  # 43 characters, as WeChat issues them

MESSAGE = OutboundMessage(
    idempotency_key="enr-17:day-7",
    patient_id=42,
    address=OPENID,
    body="张先生您好，请完成术后第7天随访问卷。",
    link="https://h5.hospital.example/q/abc",
    template_id="ngqIpbwh8bUfcSsECmogfXcV14J0tQlEpBO27izEYtY",
    template_params={"thing1": "术后随访", "time2": "2024年5月1日"},
)


class FakeWeChat:
    """api.weixin.qq.com as documented: token endpoint and template/subscribe send."""

    def __init__(self, *, send_errcodes: list[int] | None = None, expires_in: int = 7200) -> None:
        self.token_calls = 0
        self.issued: list[str] = []
        self.revoked: set[str] = set()
        self.send_errcodes = list(send_errcodes or [])
        self.expires_in = expires_in
        self.sent: list[dict[str, Any]] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/cgi-bin/token":
            return await self.token(request)
        token = request.url.params.get("access_token")
        if token not in self.issued or token in self.revoked:
            return httpx.Response(200, json={"errcode": 40001, "errmsg": "invalid credential"})
        if self.send_errcodes:
            errcode = self.send_errcodes.pop(0)
            return httpx.Response(
                200, json={"errcode": errcode, "errmsg": f"failed openid {OPENID} rid: 1"}
            )
        self.sent.append({"path": request.url.path, "json": json.loads(request.content)})
        return httpx.Response(200, json={"errcode": 0, "errmsg": "ok", "msgid": 200228332})

    async def token(self, request: httpx.Request) -> httpx.Response:
        self.token_calls += 1
        await asyncio.sleep(0.01)  # a real round trip, so concurrent callers overlap
        params = request.url.params
        if params.get("grant_type") != "client_credential" or params.get("appid") != APP_ID:
            return httpx.Response(200, json={"errcode": 40013, "errmsg": "invalid appid"})
        if params.get("secret") != APP_SECRET:
            return httpx.Response(200, json={"errcode": 40125, "errmsg": "invalid appsecret"})
        token = f"ACCESS_TOKEN_{self.token_calls}"
        self.issued.append(token)
        return httpx.Response(200, json={"access_token": token, "expires_in": self.expires_in})


def make_channel(fake: Any, **overrides: Any) -> WeChatChannel:
    """A channel; these tests read 明文模式 pushes unless they say otherwise (the safe-mode
    tests below turn it off, as it is by default)."""
    settings = {
        "app_id": APP_ID,
        "app_secret": APP_SECRET,
        "token": PUSH_TOKEN,
        "encoding_aes_key": AES_KEY,
        "plaintext_pushes": True,
        **overrides,
    }
    return WeChatChannel(
        WeChatChannel.load_config(**settings),
        http=httpx.AsyncClient(transport=httpx.MockTransport(fake)),
    )


async def test_template_message_as_documented() -> None:
    fake = FakeWeChat()
    receipt = await make_channel(fake).send(MESSAGE)

    assert receipt.provider_message_id == "200228332"
    assert receipt.status == "accepted"
    [sent] = fake.sent
    assert sent["path"] == "/cgi-bin/message/template/send"
    assert sent["json"] == {
        "touser": OPENID,
        "template_id": "ngqIpbwh8bUfcSsECmogfXcV14J0tQlEpBO27izEYtY",
        "url": "https://h5.hospital.example/q/abc",
        "client_msg_id": "enr-17:day-7",
        "data": {"thing1": {"value": "术后随访"}, "time2": {"value": "2024年5月1日"}},
    }


async def test_token_is_fetched_once_for_many_concurrent_sends() -> None:
    fake = FakeWeChat()
    channel = make_channel(fake)
    receipts = await asyncio.gather(*(channel.send(MESSAGE) for _ in range(20)))
    assert len(receipts) == 20
    assert fake.token_calls == 1
    assert len(fake.sent) == 20


async def test_token_is_refreshed_before_it_expires() -> None:
    fake = FakeWeChat(expires_in=300)  # no longer than the 300 s refresh margin
    channel = make_channel(fake)
    await channel.send(MESSAGE)
    await channel.send(MESSAGE)
    assert fake.token_calls == 2


async def test_rejected_token_is_refreshed_once_and_the_send_retried() -> None:
    fake = FakeWeChat()
    channel = make_channel(fake)
    await channel.send(MESSAGE)
    fake.revoked.add("ACCESS_TOKEN_1")  # e.g. another process fetched a new token

    results = await asyncio.gather(*(channel.send(MESSAGE) for _ in range(5)))

    assert all(receipt.provider_message_id == "200228332" for receipt in results)
    assert fake.token_calls == 2
    assert len(fake.sent) == 6


async def test_token_rejected_twice_is_transient() -> None:
    fake = FakeWeChat(send_errcodes=[42001, 42001])
    with pytest.raises(TransientChannelError, match="freshly fetched"):
        await make_channel(fake).send(MESSAGE)
    assert fake.token_calls == 2


@pytest.mark.parametrize(
    ("errcode", "error", "fragment"),
    [
        (43004, PermanentChannelError, "not subscribed"),
        (40003, PermanentChannelError, "invalid openid"),
        (40037, PermanentChannelError, "invalid template_id"),
        (45009, TransientChannelError, "daily API quota"),
        (45047, TransientChannelError, "quota"),
        (-1, TransientChannelError, "busy"),
        (99999, PermanentChannelError, "errcode 99999"),
    ],
)
async def test_send_errcodes_are_classified(
    errcode: int, error: type[Exception], fragment: str
) -> None:
    with pytest.raises(error, match=fragment) as caught:
        await make_channel(FakeWeChat(send_errcodes=[errcode])).send(MESSAGE)
    assert OPENID not in str(caught.value)


async def test_wrong_app_secret_is_permanent() -> None:
    with pytest.raises(PermanentChannelError, match="invalid AppSecret"):
        await make_channel(FakeWeChat(), app_secret="wrong").send(MESSAGE)


async def test_http_failures_are_transient() -> None:
    def down(request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, text="Bad Gateway")

    def unreachable(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectTimeout("timed out", request=request)

    def throttled(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": "12"}, text="Too Many Requests")

    with pytest.raises(TransientChannelError, match="HTTP 502"):
        await make_channel(down).send(MESSAGE)
    with pytest.raises(TransientChannelError, match="HTTP 429") as caught:
        await make_channel(throttled).send(MESSAGE)
    assert caught.value.retry_after == 12.0
    with pytest.raises(PermanentChannelError, match="API_BASE"):
        await make_channel(lambda request: httpx.Response(404, text="Not Found")).send(MESSAGE)
    with pytest.raises(TransientChannelError, match="timed out"):
        await make_channel(unreachable).send(MESSAGE)


async def test_subscribe_message_api_and_body_field() -> None:
    fake = FakeWeChat()
    channel = make_channel(
        fake, message_api="subscribe", default_template_id="tmpl-sub", body_field="thing1"
    )
    plain = MESSAGE.model_copy(update={"template_id": None, "template_params": {}})
    await channel.send(plain)
    [sent] = fake.sent
    assert sent["path"] == "/cgi-bin/message/subscribe/bizsend"
    assert sent["json"] == {
        "touser": OPENID,
        "template_id": "tmpl-sub",
        "page": "https://h5.hospital.example/q/abc",
        "data": {"thing1": {"value": "张先生您好，请完成术后第7天随访问卷。"}},
    }


async def test_missing_template_is_permanent() -> None:
    plain = MESSAGE.model_copy(update={"template_id": None})
    with pytest.raises(PermanentChannelError, match="DEFAULT_TEMPLATE_ID"):
        await make_channel(FakeWeChat()).send(plain)


# --- inbound ---------------------------------------------------------------------------------


def push(
    body: bytes = b"",
    *,
    method: str = "POST",
    token: str = PUSH_TOKEN,
    timestamp: int | None = None,
    **query: str,
) -> InboundRequest:
    """A push signed the way WeChat documents it."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    nonce = "1514711492"
    signature = hashlib.sha1("".join(sorted([token, stamp, nonce])).encode()).hexdigest()  # noqa: S324
    return InboundRequest(
        method=method,
        query={"signature": signature, "timestamp": stamp, "nonce": nonce, **query},
        body=body,
    )


TEXT_XML = f"""<xml>
  <ToUserName><![CDATA[gh_7f083739789a]]></ToUserName>
  <FromUserName><![CDATA[{OPENID}]]></FromUserName>
  <CreateTime>1714527000</CreateTime>
  <MsgType><![CDATA[text]]></MsgType>
  <Content><![CDATA[伤口有点红肿 <怎么办>]]></Content>
  <MsgId>23456789012345678</MsgId>
</xml>""".encode()


def template_finish_xml(status: str) -> bytes:
    return f"""<xml>
  <ToUserName><![CDATA[gh_7f083739789a]]></ToUserName>
  <FromUserName><![CDATA[{OPENID}]]></FromUserName>
  <CreateTime>1395658920</CreateTime>
  <MsgType><![CDATA[event]]></MsgType>
  <Event><![CDATA[TEMPLATESENDJOBFINISH]]></Event>
  <MsgID>200163836</MsgID>
  <Status><![CDATA[{status}]]></Status>
</xml>""".encode()


def test_url_verification_echoes_echostr() -> None:
    channel = make_channel(FakeWeChat())
    assert channel.verify_endpoint(push(method="GET", echostr="5838479218127813673")) == (
        "5838479218127813673"
    )
    with pytest.raises(InboundRejected) as forged:
        channel.verify_endpoint(push(method="GET", token="guess", echostr="1"))
    assert forged.value.status_code == 401


async def test_text_message_becomes_an_inbound_message() -> None:
    channel = make_channel(FakeWeChat())
    [reply] = await channel.parse_inbound(push(TEXT_XML))
    assert isinstance(reply, InboundMessage)
    assert reply.channel == "wechat"
    assert reply.sender == OPENID
    assert reply.text == "伤口有点红肿 <怎么办>"
    assert reply.provider_message_id == "23456789012345678"
    assert reply.received_at is not None
    assert reply.received_at.timestamp() == 1714527000
    assert channel.inbound_response([reply]) == ("success", "text/plain")


@pytest.mark.parametrize(
    ("status", "expected", "error"),
    [
        ("success", "delivered", None),
        ("failed:user block", "failed", "user block"),
        ("failed: system failed", "failed", "system failed"),
    ],
)
async def test_template_send_job_finish_becomes_a_status(
    status: str, expected: str, error: str | None
) -> None:
    [update] = await make_channel(FakeWeChat()).parse_inbound(push(template_finish_xml(status)))
    assert isinstance(update, DeliveryStatusUpdate)
    assert update.provider_message_id == "200163836"
    assert (update.status, update.error) == (expected, error)


async def test_other_events_are_acknowledged_without_items() -> None:
    subscribe = f"""<xml><ToUserName>gh_1</ToUserName><FromUserName>{OPENID}</FromUserName>
    <CreateTime>1</CreateTime><MsgType>event</MsgType><Event>subscribe</Event></xml>""".encode()
    assert await make_channel(FakeWeChat()).parse_inbound(push(subscribe)) == []


@pytest.mark.parametrize(
    ("make_request", "status_code", "problem"),
    [
        # Built when the test runs: a push signed at collection is stale in a long suite.
        (lambda: push(TEXT_XML, token="not-our-token"), 401, "does not match"),
        (lambda: push(TEXT_XML, timestamp=int(time.time()) - 3600), 401, "window"),
        (lambda: InboundRequest(body=TEXT_XML), 401, "lacks the signature"),
    ],
    ids=["wrong-token", "stale", "unsigned"],
)
async def test_bad_push_signatures_are_rejected(
    make_request: Callable[[], InboundRequest], status_code: int, problem: str
) -> None:
    with pytest.raises(InboundRejected, match=problem) as caught:
        await make_channel(FakeWeChat()).parse_inbound(make_request())
    assert caught.value.status_code == status_code


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"<xml><MsgType>text</MsgType><Content>hi", "not well-formed XML"),
        (b"not xml at all", "not well-formed XML"),
        (
            b'<!DOCTYPE xml [<!ENTITY boom "boom">]><xml><MsgType>&boom;</MsgType></xml>',
            "DTD or entities",
        ),
        (b"<xml><FromUserName>o1</FromUserName></xml>", "lacks <MsgType>"),
        (b"<xml><MsgType>text</MsgType><Content>hi</Content></xml>", "lacks <FromUserName>"),
        (b"<xml><MsgType>event</MsgType><Event>TEMPLATESENDJOBFINISH</Event></xml>", "<Status>"),
        (b"<xml><Encrypt>abc</Encrypt></xml>", "no msg_signature"),
        (b"<message/>", "root element"),
    ],
)
async def test_malformed_pushes_are_rejected_400(body: bytes, problem: str) -> None:
    with pytest.raises(InboundRejected, match=problem) as caught:
        await make_channel(FakeWeChat()).parse_inbound(push(body))
    assert caught.value.status_code == 400


async def test_pushes_are_refused_without_a_configured_token() -> None:
    channel = make_channel(FakeWeChat(), token=None)
    with pytest.raises(InboundRejected, match="SUIFANG_CHANNEL_WECHAT_TOKEN") as caught:
        await channel.parse_inbound(push(TEXT_XML))
    assert caught.value.status_code == 403


async def test_oversized_push_is_rejected_413() -> None:
    channel = make_channel(FakeWeChat(), max_inbound_bytes=100)
    with pytest.raises(InboundRejected) as caught:
        await channel.parse_inbound(push(TEXT_XML))
    assert caught.value.status_code == 413


def wechat_encrypt(
    message: bytes, *, aes_key: str = AES_KEY, app_id: str = APP_ID, pad_to: int = 32
) -> str:
    """``Encrypt`` as WeChat's official sample builds it: AES-256-CBC, IV = the key's first 16
    bytes, over random(16) + msg_len (4 bytes, big-endian) + msg + AppID, PKCS#7 to 32 bytes."""
    key = base64.b64decode(aes_key + "=")
    plain = os.urandom(16) + len(message).to_bytes(4, "big") + message + app_id.encode()
    padder = padding.PKCS7(pad_to * 8).padder()
    padded = padder.update(plain) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return base64.b64encode(encryptor.update(padded) + encryptor.finalize()).decode()


def encrypted_push(
    message: bytes,
    *,
    token: str = PUSH_TOKEN,
    aes_key: str = AES_KEY,
    app_id: str = APP_ID,
    timestamp: int | None = None,
    nonce: str = "1320562132",
) -> tuple[dict[str, str], bytes]:
    """(query, body) of a 安全模式 push as WeChat sends it to an Official Account server."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    encrypted = wechat_encrypt(message, aes_key=aes_key, app_id=app_id)
    body = (
        "<xml><ToUserName><![CDATA[gh_7f083739789a]]></ToUserName>"
        f"<Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"
    ).encode()

    def sha1(*parts: str) -> str:
        return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()  # noqa: S324

    query = {
        "signature": sha1(token, stamp, nonce),
        "timestamp": stamp,
        "nonce": nonce,
        "openid": OPENID,
        "encrypt_type": "aes",
        "msg_signature": sha1(token, stamp, nonce, encrypted),
    }
    return query, body


def safe_channel(**overrides: Any) -> WeChatChannel:
    return make_channel(FakeWeChat(), plaintext_pushes=False, **overrides)


async def test_a_safe_mode_push_is_decrypted_and_verified() -> None:
    query, body = encrypted_push(TEXT_XML)
    [reply] = await safe_channel().parse_inbound(InboundRequest(query=query, body=body))
    assert isinstance(reply, InboundMessage)
    assert (reply.sender, reply.text) == (OPENID, "伤口有点红肿 <怎么办>")
    assert reply.provider_message_id == "23456789012345678"


# The test vector of WeChat's own sample code (WXBizMsgCrypt), so our decryption and
# msg_signature are checked against what WeChat produced, not only against our test helper.
SAMPLE_ENCRYPT = (
    "hyzAe4OzmOMbd6TvGdIOO6uBmdJoD0Fk53REIHvxYtJlE2B655HuD0m8KUePWB3+LrPXo87wzQ1QLvbeUgmBM4x6F8P"
    "GHQHFVAFmOD2LdJF9FrXpbUAh0B5GIItb52sn896wVsMSHGuPE328HnRGBcrS7C41IzDWyWNlZkyyXwon8T332jisa+"
    "h6tEDYsVticbSnyU8dKOIbgU6ux5VTjg3yt+WGzjlpKn6NPhRjpA912xMezR4kw6KWwMrCVKSVCZciVGCgavjIQ6X8tC"
    "Op3yZbGpy0VxpAe+77TszTfRd5RJSVO/HTnifJpXgCSUdUue1v6h0EIBYYI1BD1DlD+C0CR8e6OewpusjZ4uBl9FyJvn"
    "hvQl+q5rv1ixrcpCumEPo5MJSgM9ehVsNPfUM669WuMyVWQLCzpu9GhglF2PE="
)


async def test_wechats_own_sample_push_is_verified_and_decrypted() -> None:
    channel = make_channel(
        FakeWeChat(),
        app_id="wx2c2769f8efd9abc2",
        token="spamtest",
        encoding_aes_key=AES_KEY,
        plaintext_pushes=False,
        signature_tolerance_seconds=10**10,  # the sample is from 2014
    )
    request = InboundRequest(
        query={
            "timestamp": "1409735669",
            "nonce": "1320562132",
            "encrypt_type": "aes",
            "msg_signature": "5d197aaffba7e9b25a30732f161a50dee96bd5fa",
        },
        body=(
            "<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName>"
            f"<Encrypt><![CDATA[{SAMPLE_ENCRYPT}]]></Encrypt></xml>"
        ).encode(),
    )
    [reply] = await channel.parse_inbound(request)
    assert isinstance(reply, InboundMessage)
    assert (reply.sender, reply.text, reply.provider_message_id) == (
        "oyORnuP8q7ou2gfYjqLzSIWZf0rs",
        "abcdteT",
        "6054768590064713728",
    )


async def test_a_captured_query_string_cannot_carry_a_forged_body() -> None:
    """Finding 3: the signature must bind the body, so a captured push's query string with a
    made-up sender and text is refused, in safe mode and in the default plaintext refusal."""
    query, _ = encrypted_push(TEXT_XML)
    forged_message = TEXT_XML.replace(OPENID.encode(), b"oSomeOtherPatient000000000000")
    _, forged_body = encrypted_push(forged_message)  # a well-formed Encrypt, not the signed one
    with pytest.raises(InboundRejected, match="msg_signature does not match") as caught:
        await safe_channel().parse_inbound(InboundRequest(query=query, body=forged_body))
    assert caught.value.status_code == 401
    plaintext_query = {k: query[k] for k in ("signature", "timestamp", "nonce")}
    with pytest.raises(InboundRejected, match="plaintext") as refused:
        await safe_channel().parse_inbound(
            InboundRequest(query=plaintext_query, body=forged_message)
        )
    assert refused.value.status_code == 401


async def test_a_safe_mode_push_for_another_account_or_key_is_refused() -> None:
    query, body = encrypted_push(TEXT_XML, app_id="wx-someone-else")
    with pytest.raises(InboundRejected, match="another AppID") as other_app:
        await safe_channel().parse_inbound(InboundRequest(query=query, body=body))
    assert other_app.value.status_code == 401
    other_key = "ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zyxwvut"
    query, body = encrypted_push(TEXT_XML, aes_key=other_key)
    with pytest.raises(InboundRejected) as wrong_key:
        await safe_channel().parse_inbound(InboundRequest(query=query, body=body))
    assert wrong_key.value.status_code == 401
    stale_query, stale_body = encrypted_push(TEXT_XML, timestamp=int(time.time()) - 3600)
    with pytest.raises(InboundRejected, match="window"):
        await safe_channel().parse_inbound(InboundRequest(query=stale_query, body=stale_body))


async def test_safe_mode_needs_an_aes_key_and_a_bad_key_is_a_configuration_error() -> None:
    query, body = encrypted_push(TEXT_XML)
    with pytest.raises(InboundRejected, match="ENCODING_AES_KEY") as caught:
        await safe_channel(encoding_aes_key=None).parse_inbound(
            InboundRequest(query=query, body=body)
        )
    assert caught.value.status_code == 403
    with pytest.raises(ConfigurationError, match="ENCODING_AES_KEY"):
        WeChatChannel.load_config(app_id=APP_ID, app_secret=APP_SECRET, encoding_aes_key="short")


def test_replays_of_one_push_share_a_fingerprint_and_other_pushes_do_not() -> None:
    channel = safe_channel()
    query, body = encrypted_push(TEXT_XML)
    again = InboundRequest(query={**query, "extra": "1"}, body=body)
    assert channel.replay_fingerprint(InboundRequest(query=query, body=body)) == (
        channel.replay_fingerprint(again)
    )
    other_query, other_body = encrypted_push(TEXT_XML)  # fresh random prefix: another push
    assert channel.replay_fingerprint(InboundRequest(query=query, body=body)) != (
        channel.replay_fingerprint(InboundRequest(query=other_query, body=other_body))
    )


def test_registered_through_the_plugin_hook() -> None:
    plugins = Plugins.load(builtins=False, entrypoints=False, extra=[("wechat", wechat_plugin)])
    assert plugins.channel_classes() == {"wechat": WeChatChannel}
    assert WeChatChannel.env_prefix() == "SUIFANG_CHANNEL_WECHAT_"
