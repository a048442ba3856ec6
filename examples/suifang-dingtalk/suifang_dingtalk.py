"""DingTalk (钉钉) work notifications as a suifang channel, written against ``suifang.sdk`` only.

Sends a text work notification to a DingTalk user id (contact system ``dingtalk_userid``) and
takes replies from a DingTalk robot's HTTP callback. See README.md for the protocol.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from typing import Any, ClassVar

from pydantic import Field, SecretStr

from suifang.sdk import (
    AddressKind,
    Channel,
    ChannelConfig,
    ChannelRegistry,
    DeliveryReceipt,
    DeliveryStatusUpdate,
    InboundMessage,
    InboundRejected,
    InboundRequest,
    OutboundMessage,
    PermanentChannelError,
    PermanentRecipientError,
    TransientChannelError,
    error_for_status,
    fingerprint,
    hookimpl,
    send_request,
)

PROVIDER = "DingTalk"
TOKEN_INVALID = {40014, 42001}  # invalid / expired access_token: fetch a new one, once
RECIPIENT_GONE = {60121}  # 找不到该用户
TEMPORARY = {-1, 90018}  # 系统繁忙, 请求被限流
CALLBACK_MAX_AGE_MS = 3_600_000  # DingTalk: a robot callback's timestamp is valid for an hour


class DingTalkConfig(ChannelConfig):
    """``SUIFANG_CHANNEL_DINGTALK_*``."""

    app_key: str = Field(min_length=1, description="The internal app's AppKey.")
    app_secret: SecretStr = Field(description="The app's AppSecret (also signs robot callbacks).")
    agent_id: int = Field(gt=0, description="The app's AgentId, which sends the notifications.")
    api_url: str = Field("https://api.dingtalk.com", description="DingTalk's v1.0 API (tokens).")
    oapi_url: str = Field("https://oapi.dingtalk.com", description="DingTalk's open API (sends).")


class DingTalkChannel(Channel):
    """Work notifications to a DingTalk user id; replies through a robot callback."""

    name: ClassVar[str] = "dingtalk"
    address_kind: ClassVar[AddressKind] = AddressKind.APP_USER
    contact_system: ClassVar[str | None] = "dingtalk_userid"
    reaches_staff: ClassVar[bool] = True  # staff have DingTalk accounts too: pages can use it
    config_model: ClassVar[type[ChannelConfig]] = DingTalkConfig

    def __init__(self, config: ChannelConfig, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        # One instance per worker process serves every send: the token is shared, and one
        # lock keeps concurrent sends from all fetching it at once.
        self._token: tuple[str, float] | None = None
        self._token_lock = asyncio.Lock()

    @property
    def settings(self) -> DingTalkConfig:
        assert isinstance(self.config, DingTalkConfig)
        return self.config

    async def send(self, message: OutboundMessage) -> DeliveryReceipt:
        answer = await self._send_once(message, await self._access_token())
        if answer.get("errcode") in TOKEN_INVALID:
            self._token = None
            answer = await self._send_once(message, await self._access_token())
        return self._receipt(answer)

    async def _send_once(self, message: OutboundMessage, token: str) -> dict[str, Any]:
        content = f"{message.subject}\n{message.body}" if message.subject else message.body
        if message.link:
            content = f"{content}\n{message.link}"
        response = await send_request(
            self.http,
            "POST",
            f"{self.settings.oapi_url}/topapi/message/corpconversation/asyncsend_v2",
            provider=PROVIDER,
            params={"access_token": token},
            json={
                "agent_id": self.settings.agent_id,
                "userid_list": message.address,
                "msg": {"msgtype": "text", "text": {"content": content}},
            },
        )
        if error := error_for_status(response, provider=PROVIDER):
            raise error
        return _json_object(response.content)

    def _receipt(self, answer: dict[str, Any]) -> DeliveryReceipt:
        code = answer.get("errcode")
        if code == 0 and answer.get("task_id") is not None:
            return DeliveryReceipt(provider_message_id=str(answer["task_id"]))
        described = f"{PROVIDER} errcode {code}: {answer.get('errmsg', '')}"
        if code in RECIPIENT_GONE:
            raise PermanentRecipientError(described)
        if code in TEMPORARY:
            raise TransientChannelError(described)
        raise PermanentChannelError(described)

    async def _access_token(self) -> str:
        async with self._token_lock:
            if self._token is not None and self._token[1] > time.monotonic():
                return self._token[0]
            # The v1.0 token API takes the secret in the body: a URL (and so a log line of
            # httpx's) never carries it.
            response = await send_request(
                self.http,
                "POST",
                f"{self.settings.api_url}/v1.0/oauth2/accessToken",
                provider=PROVIDER,
                json={
                    "appKey": self.settings.app_key,
                    "appSecret": self.settings.app_secret.get_secret_value(),
                },
            )
            if error := error_for_status(response, provider=PROVIDER):
                # Wrong AppKey/AppSecret is a 4xx: permanent, no retry fixes it.
                raise error
            answer = _json_object(response.content)
            token = answer.get("accessToken")
            if not isinstance(token, str) or not token:
                raise TransientChannelError(f"{PROVIDER} answered a token request without one")
            expires_in = float(answer.get("expireIn", 7200))
            self._token = (token, time.monotonic() + max(expires_in - 60, 0))
            return token

    async def parse_inbound(
        self, request: InboundRequest
    ) -> list[InboundMessage | DeliveryStatusUpdate]:
        timestamp, sign = request.header("timestamp"), request.header("sign")
        if not timestamp or not sign:
            raise InboundRejected("missing timestamp or sign header", status_code=401)
        if (
            not timestamp.isdigit()
            or abs(time.time() * 1000 - int(timestamp)) > CALLBACK_MAX_AGE_MS
        ):
            raise InboundRejected(
                "timestamp missing, malformed or over an hour old", status_code=401
            )
        if not hmac.compare_digest(sign, callback_sign(self.settings.app_secret, timestamp)):
            raise InboundRejected("sign does not match", status_code=401)
        event = _json_object(request.body, rejected=True)
        sender, text = event.get("senderStaffId"), (event.get("text") or {}).get("content")
        if not isinstance(sender, str) or not isinstance(text, str):
            raise InboundRejected("body needs senderStaffId and text.content", status_code=400)
        return [
            InboundMessage(
                channel=self.name,
                sender=sender,
                text=text.strip(),
                provider_message_id=str(event.get("msgId") or "") or None,
            )
        ]

    def replay_fingerprint(self, request: InboundRequest) -> str:
        # DingTalk signs the time, not the body: a call is its signed time and its body.
        return fingerprint(request.header("timestamp") or "", request.body)

    def inbound_response(
        self, items: list[InboundMessage | DeliveryStatusUpdate]
    ) -> tuple[str, str]:
        return json.dumps({"msgtype": "empty"}), "application/json"


def callback_sign(secret: SecretStr | str, timestamp: str) -> str:
    """DingTalk's robot callback signature: Base64(HMAC-SHA256(secret, timestamp + "\\n" +
    secret))."""
    key = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
    digest = hmac.new(key.encode(), f"{timestamp}\n{key}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def _json_object(content: bytes, *, rejected: bool = False) -> dict[str, Any]:
    try:
        value = json.loads(content)
    except ValueError:
        value = None
    if isinstance(value, dict):
        return value
    if rejected:
        raise InboundRejected("body is not a JSON object", status_code=400)
    raise TransientChannelError(f"{PROVIDER} answered something that is not a JSON object")


@hookimpl
def suifang_register_channels(register: ChannelRegistry) -> None:
    register(DingTalkChannel)
