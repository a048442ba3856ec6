"""The ``wechat`` channel: WeChat Official Account (公众号) template messages and server pushes.

Settings (``SUIFANG_CHANNEL_WECHAT_<FIELD>``):

- ``APP_ID``, ``APP_SECRET`` (required): the account's AppID and AppSecret (开发 → 基本配置).
  The worker's egress IP must be on the account's IP whitelist.
- ``TOKEN``: the 服务器配置 Token WeChat signs its pushes with. Unset, pushes are refused (403).
- ``ENCODING_AES_KEY``: the 服务器配置 EncodingAESKey (43 characters) for 安全模式 (safe mode),
  the only mode accepted by default. Unset, pushes are refused (403).
- ``PLAINTEXT_PUSHES`` (false): also accept 明文模式 (plaintext) pushes. Their signature covers
  only the token, timestamp and nonce, not the body, so anyone who sees one push's query
  string can send any body with it within the signature window (the replay cache lets one
  call use it, but a forger who is first wins). Turn it on only behind a network path you
  trust, and know that it is the weaker mode.
- ``MESSAGE_API`` (``template``): ``template`` sends 模板消息 (``/cgi-bin/message/template/send``);
  ``subscribe`` sends 订阅通知 (``/cgi-bin/message/subscribe/bizsend``).
- ``DEFAULT_TEMPLATE_ID``: used when a message names no ``template_id``.
- ``BODY_FIELD``: a template field (e.g. ``thing1``) that receives the rendered body when the
  message carries no ``template_params``.
- ``API_BASE`` (``https://api.weixin.qq.com``).
- ``TOKEN_REFRESH_MARGIN_SECONDS`` (300): refresh the access token this long before it expires.
- ``SIGNATURE_TOLERANCE_SECONDS`` (300): how old a push's ``timestamp`` may be.
- ``MAX_INBOUND_BYTES`` (262144), ``TIMEOUT_SECONDS``, ``RATE_PER_SECOND``, ``ENABLED``.

Sending: the access token comes from ``GET /cgi-bin/token?grant_type=client_credential``; it is
cached per worker process until ``expires_in`` minus the margin, fetched by one coroutine at a
time, and refreshed once when WeChat answers 40001/40014/42001 (then the send is retried once).
A message is ``{"touser": <openid>, "template_id", "url": <link>, "client_msg_id":
<idempotency key>, "data": {<field>: {"value": …}}}``; ``client_msg_id`` makes WeChat drop a
repeat of the same message to the same user within 10 minutes. ``template_params`` become
``data``. errcodes: 43004 (not subscribed), 43101 (refused subscribe messages), 40003
(invalid openid), 40037 (invalid template) and configuration errors are permanent; 45009 /
45011 / 45047 (quotas) and -1 (system busy) are retried.

Inbound: configure ``https://<host>/channels/wechat/inbound`` as the server URL in 安全模式
(safe mode; 兼容模式 works too, and only its encrypted part is read). WeChat first verifies the
URL with a GET; answer it with :meth:`WeChatChannel.verify_endpoint` (returns ``echostr`` as
``text/plain``; ``signature = sha1(''.join(sorted([token, timestamp, nonce])))``). A safe-mode
push carries ``msg_signature = sha1(''.join(sorted([token, timestamp, nonce, Encrypt])))`` in
its query string, which binds the body; ``Encrypt`` is Base64 of AES-256-CBC (key =
Base64-decoded ``EncodingAESKey + "="``, IV = its first 16 bytes, PKCS#7 padding to 32 bytes)
over ``random(16) + msg_len (4 bytes, big-endian) + msg + AppID``. A push whose
``msg_signature`` does not match, whose timestamp is outside the window, or whose AppID is
not ours is refused (401). The decrypted XML becomes:

- ``MsgType=text`` → an :class:`InboundMessage` (sender = ``FromUserName``, the openid);
  ``MsgType=voice`` with speech recognition → its ``Recognition`` text;
- ``Event=TEMPLATESENDJOBFINISH`` → a :class:`DeliveryStatusUpdate` for ``MsgID``
  (``success`` → delivered; ``failed:user block`` / ``failed: system failed`` → failed);
- ``Event=subscribe_msg_sent_event`` → one status per ``List`` entry.

Other messages and events are acknowledged and ignored. WeChat expects the body ``success``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import hashlib
import hmac
import time
from dataclasses import dataclass
from typing import Any, ClassVar, Literal
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as SafeXml
import httpx
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from defusedxml import DefusedXmlException
from pydantic import AnyHttpUrl, Field, SecretStr, field_validator

from suifang.core.channel_http import is_retryable_status, send_request, transient_error
from suifang.core.channels import (
    AddressKind,
    Channel,
    ChannelConfig,
    ChannelError,
    DeliveryReceipt,
    DeliveryStatusUpdate,
    InboundMessage,
    InboundRejected,
    InboundRequest,
    OutboundMessage,
    PermanentChannelError,
    TransientChannelError,
    fingerprint,
)
from suifang.core.hooks import hookimpl
from suifang.core.security.signing import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_TOLERANCE_SECONDS,
    check_body_size,
)

__all__ = [
    "WeChatChannel",
    "WeChatConfig",
    "suifang_register_channels",
    "wechat_decrypt",
    "wechat_signature",
]

_TOKEN_REJECTED = frozenset({40001, 40014, 42001})
"""Invalid, malformed or expired access token: fetch a new one and try once more."""

_TRANSIENT_ERRCODES = {
    -1: "WeChat system busy",
    45009: "WeChat daily API quota reached",
    45011: "WeChat API minute quota reached",
    45047: "WeChat message quota for this user reached",
}
_PERMANENT_ERRCODES = {
    40003: "invalid openid",
    40013: "invalid AppID",
    40037: "invalid template_id",
    40125: "invalid AppSecret",
    40164: "the worker's IP is not on the account's whitelist",
    41001: "access token missing",
    43004: "the user has not subscribed to the account",
    43101: "the user refused subscribe messages",
    47003: "template data does not match the template",
    48001: "the account is not authorised for this API",
    89503: "the worker's IP needs approval by the account administrator",
}

_MAX_CLIENT_MSG_ID = 64


def wechat_signature(token: str, timestamp: str, nonce: str, *encrypted: str) -> str:
    """WeChat's push signature: SHA-1 of the sorted, concatenated token, timestamp, nonce
    (and, for ``msg_signature`` in safe mode, the ``Encrypt`` text)."""
    parts = sorted([token, timestamp, nonce, *encrypted])
    return hashlib.sha1("".join(parts).encode()).hexdigest()  # noqa: S324 - WeChat's documented scheme


def _aes_key(encoding_aes_key: str) -> bytes:
    try:
        key = base64.b64decode(encoding_aes_key + "=", validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(encoding_aes_key) != 43 or len(key) != 32:
        raise ValueError("an EncodingAESKey is 43 Base64 characters (32 bytes once decoded)")
    return key


def wechat_decrypt(encoding_aes_key: str, encrypted: str, app_id: str) -> bytes:
    """The message XML inside a safe-mode ``Encrypt``; :class:`InboundRejected` if it is not
    ciphertext under our key or names another AppID."""
    key = _aes_key(encoding_aes_key)
    try:
        data = base64.b64decode(encrypted, validate=True)
    except (binascii.Error, ValueError):
        raise InboundRejected("wechat push <Encrypt> is not Base64", status_code=400) from None
    if not data or len(data) % 16:
        raise InboundRejected("wechat push <Encrypt> is not AES ciphertext", status_code=400)
    decryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
    padded = decryptor.update(data) + decryptor.finalize()
    unpadder = padding.PKCS7(256).unpadder()  # WeChat pads to 32-byte blocks
    try:
        plain = unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        raise InboundRejected(
            "wechat push <Encrypt> does not decrypt under our EncodingAESKey", status_code=401
        ) from None
    length = int.from_bytes(plain[16:20], "big") if len(plain) >= 20 else -1
    message, sender_app = plain[20 : 20 + length], plain[20 + length :]
    if length < 0 or len(message) != length:
        raise InboundRejected("wechat push <Encrypt> has a bad length field", status_code=401)
    if not hmac.compare_digest(sender_app, app_id.encode()):
        raise InboundRejected("wechat push is encrypted for another AppID", status_code=401)
    return message


class WeChatConfig(ChannelConfig):
    app_id: str = Field(min_length=1)
    app_secret: SecretStr
    token: SecretStr | None = None
    encoding_aes_key: SecretStr | None = None
    plaintext_pushes: bool = False
    message_api: Literal["template", "subscribe"] = "template"
    default_template_id: str | None = None
    body_field: str | None = None
    api_base: AnyHttpUrl = AnyHttpUrl("https://api.weixin.qq.com")
    token_refresh_margin_seconds: float = Field(300.0, ge=0)
    signature_tolerance_seconds: float = Field(DEFAULT_TOLERANCE_SECONDS, gt=0)
    max_inbound_bytes: int = Field(DEFAULT_MAX_BODY_BYTES, gt=0)

    @field_validator("encoding_aes_key")
    @classmethod
    def _is_an_aes_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            _aes_key(value.get_secret_value())
        return value


@dataclass(frozen=True)
class _AccessToken:
    value: str
    refresh_at: float
    """``time.monotonic()`` after which the token is fetched again."""


class WeChatChannel(Channel):
    name: ClassVar[str] = "wechat"
    address_kind: ClassVar[AddressKind] = AddressKind.WECHAT_OPENID
    config_model: ClassVar[type[ChannelConfig]] = WeChatConfig

    def __init__(self, config: ChannelConfig, *, http: httpx.AsyncClient | None = None) -> None:
        super().__init__(config, http=http)
        if not isinstance(config, WeChatConfig):
            raise TypeError(f"{type(self).__name__} needs a WeChatConfig; use load_config()")
        self.settings = config
        self._token: _AccessToken | None = None
        self._token_lock = asyncio.Lock()

    def _url(self, path: str) -> str:
        return str(self.settings.api_base).rstrip("/") + path

    # --- access token ----------------------------------------------------------------------

    async def access_token(self, *, rejected: str | None = None) -> str:
        """A valid access token; ``rejected`` is one WeChat just refused, never handed out again.

        Concurrent callers wait on one lock, so an expiry or a 40001 causes a single fetch.
        """
        async with self._token_lock:
            cached = self._token
            if (
                cached is not None
                and cached.value != rejected
                and time.monotonic() < cached.refresh_at
            ):
                return cached.value
            self._token = await self._fetch_token()
            return self._token.value

    async def _fetch_token(self) -> _AccessToken:
        params = {
            "grant_type": "client_credential",
            "appid": self.settings.app_id,
            "secret": self.settings.app_secret.get_secret_value(),
        }
        answer = await self._call("GET", "/cgi-bin/token", params=params)
        errcode = answer.get("errcode", 0)
        if errcode:
            if errcode in _TOKEN_REJECTED:
                raise PermanentChannelError(
                    f"WeChat refused the AppSecret (errcode {errcode}); "
                    "check SUIFANG_CHANNEL_WECHAT_APP_SECRET"
                )
            raise self._error(errcode, "fetching the access token")
        token = answer.get("access_token")
        expires_in = answer.get("expires_in")
        if not isinstance(token, str) or not isinstance(expires_in, int | float):
            raise TransientChannelError("WeChat token answer lacks access_token/expires_in")
        lifetime = max(0.0, float(expires_in) - self.settings.token_refresh_margin_seconds)
        return _AccessToken(token, time.monotonic() + lifetime)

    # --- sending ---------------------------------------------------------------------------

    async def send(self, message: OutboundMessage) -> DeliveryReceipt:
        payload = self._payload(message)
        path = (
            "/cgi-bin/message/template/send"
            if self.settings.message_api == "template"
            else "/cgi-bin/message/subscribe/bizsend"
        )
        token = await self.access_token()
        answer = await self._call("POST", path, params={"access_token": token}, json=payload)
        if answer.get("errcode", 0) in _TOKEN_REJECTED:
            token = await self.access_token(rejected=token)
            answer = await self._call("POST", path, params={"access_token": token}, json=payload)
            if answer.get("errcode", 0) in _TOKEN_REJECTED:
                raise TransientChannelError(
                    f"WeChat refused a freshly fetched access token (errcode {answer['errcode']})"
                )
        errcode = answer.get("errcode", 0)
        if errcode:
            raise self._error(errcode, "sending")
        msgid = answer.get("msgid")
        return DeliveryReceipt(
            status="accepted",
            provider_message_id=str(msgid) if msgid is not None else None,
            detail={"api": self.settings.message_api},
        )

    def _payload(self, message: OutboundMessage) -> dict[str, Any]:
        if not message.address:
            raise PermanentChannelError("wechat: the patient has no openid")
        template_id = message.template_id or self.settings.default_template_id
        if not template_id:
            raise PermanentChannelError(
                "wechat needs a template: the message has no template_id and "
                "SUIFANG_CHANNEL_WECHAT_DEFAULT_TEMPLATE_ID is not set"
            )
        fields = dict(message.template_params)
        if not fields and self.settings.body_field:
            fields = {self.settings.body_field: message.body}
        payload: dict[str, Any] = {
            "touser": message.address,
            "template_id": template_id,
            "data": {name: {"value": value} for name, value in fields.items()},
        }
        if self.settings.message_api == "template":
            if message.link:
                payload["url"] = message.link
            payload["client_msg_id"] = _client_msg_id(message.idempotency_key)
        elif message.link:
            payload["page"] = message.link
        return payload

    async def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = await send_request(
            self.http, method, self._url(path), provider="WeChat API", **kwargs
        )
        if is_retryable_status(response.status_code):
            raise transient_error(response, f"WeChat API answered HTTP {response.status_code}")
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            if response.is_client_error:
                raise PermanentChannelError(
                    f"WeChat API answered HTTP {response.status_code}; "
                    "check SUIFANG_CHANNEL_WECHAT_API_BASE"
                )
            raise TransientChannelError(
                f"WeChat API answered HTTP {response.status_code} without a JSON object"
            )
        return answer

    def _error(self, errcode: Any, doing: str) -> ChannelError:
        # errmsg is left out: WeChat sometimes echoes the openid in it.
        if errcode in _TRANSIENT_ERRCODES:
            return TransientChannelError(
                f"{_TRANSIENT_ERRCODES[errcode]} while {doing} (errcode {errcode})",
                retry_after=1.0 if errcode == -1 else None,
            )
        reason = _PERMANENT_ERRCODES.get(errcode, "refused")
        return PermanentChannelError(f"WeChat {reason} while {doing} (errcode {errcode})")

    # --- inbound ---------------------------------------------------------------------------

    def _push_token(self) -> str:
        token = self.settings.token
        if token is None:
            raise InboundRejected(
                "wechat pushes are disabled until SUIFANG_CHANNEL_WECHAT_TOKEN is set",
                status_code=403,
            )
        return token.get_secret_value()

    def _signed_time(self, request: InboundRequest, signature_name: str) -> tuple[str, str, str]:
        """(signature, timestamp, nonce) of a push, its timestamp within the window."""
        signature = request.query.get(signature_name)
        timestamp = request.query.get("timestamp")
        nonce = request.query.get("nonce")
        if not signature or not timestamp or not nonce:
            raise InboundRejected(
                f"wechat push lacks the {signature_name}, timestamp or nonce query parameter",
                status_code=401,
            )
        if not timestamp.isdigit():
            raise InboundRejected("wechat push timestamp is not Unix seconds", status_code=401)
        skew = time.time() - int(timestamp)
        if abs(skew) > self.settings.signature_tolerance_seconds:
            raise InboundRejected(
                f"wechat push timestamp is {abs(skew):.0f} s off; the window is "
                f"{self.settings.signature_tolerance_seconds:.0f} s",
                status_code=401,
            )
        return signature, timestamp, nonce

    def _verify(self, request: InboundRequest) -> None:
        """The plaintext signature (token, timestamp, nonce): all a URL check or a 明文模式
        push carries. It does not cover the body."""
        token = self._push_token()
        signature, timestamp, nonce = self._signed_time(request, "signature")
        expected = wechat_signature(token, timestamp, nonce)
        if not hmac.compare_digest(expected.encode(), signature.lower().encode()):
            raise InboundRejected("wechat push signature does not match", status_code=401)

    def _safe_mode(self, request: InboundRequest) -> bool:
        return request.query.get("encrypt_type") == "aes" or "msg_signature" in request.query

    def _decrypt(self, request: InboundRequest) -> Element:
        """The message of a safe-mode push, once ``msg_signature`` binds its ``Encrypt``."""
        token = self._push_token()
        if self.settings.encoding_aes_key is None:
            raise InboundRejected(
                "wechat safe-mode pushes need SUIFANG_CHANNEL_WECHAT_ENCODING_AES_KEY",
                status_code=403,
            )
        signature, timestamp, nonce = self._signed_time(request, "msg_signature")
        encrypted = _text(_parse_xml(request.body), "Encrypt", required=True)
        expected = wechat_signature(token, timestamp, nonce, encrypted)
        if not hmac.compare_digest(expected.encode(), signature.lower().encode()):
            raise InboundRejected(
                "wechat push msg_signature does not match the body", status_code=401
            )
        message = wechat_decrypt(
            self.settings.encoding_aes_key.get_secret_value(), encrypted, self.settings.app_id
        )
        return _parse_xml(message)

    def verify_endpoint(self, request: InboundRequest) -> str:
        """The body for WeChat's GET URL check: ``echostr`` once the signature verifies."""
        self._verify(request)
        echo = request.query.get("echostr")
        if not echo:
            raise InboundRejected("wechat URL check lacks the echostr parameter", status_code=400)
        return echo

    async def parse_inbound(
        self, request: InboundRequest
    ) -> list[InboundMessage | DeliveryStatusUpdate]:
        check_body_size(request.body, self.settings.max_inbound_bytes)
        if request.method.upper() == "GET":
            raise InboundRejected(
                "wechat URL checks are GET requests: answer them with verify_endpoint()",
                status_code=405,
            )
        if self._safe_mode(request):
            root = self._decrypt(request)
        elif not self.settings.plaintext_pushes:
            self._push_token()
            raise InboundRejected(
                "wechat plaintext (明文模式) pushes are refused: their signature does not cover "
                "the body. Configure 安全模式 and SUIFANG_CHANNEL_WECHAT_ENCODING_AES_KEY",
                status_code=401,
            )
        else:
            self._verify(request)
            root = _parse_xml(request.body)
            if root.find("MsgType") is None and root.find("Encrypt") is not None:
                raise InboundRejected(
                    "wechat push is encrypted (安全模式) but its URL has no msg_signature",
                    status_code=400,
                )
        msg_type = _text(root, "MsgType", required=True)
        if msg_type == "event":
            return self._event(root)
        if msg_type == "text":
            return [self._reply(root, _text(root, "Content", required=True))]
        recognition = _text(root, "Recognition")
        if msg_type == "voice" and recognition:
            return [self._reply(root, recognition, extra={"kind": "voice"})]
        return []

    def replay_fingerprint(self, request: InboundRequest) -> str:
        """Safe mode: what ``msg_signature`` covers; plaintext: the signed query alone, so a
        captured query string is spent once, whatever body comes with it."""
        timestamp = request.query.get("timestamp", "")
        nonce = request.query.get("nonce", "")
        if self._safe_mode(request):
            encrypted = _text(_parse_xml(request.body), "Encrypt")
            return fingerprint("safe", timestamp, nonce, encrypted)
        return fingerprint("plaintext", timestamp, nonce)

    def _reply(
        self, root: Element, text: str, *, extra: dict[str, Any] | None = None
    ) -> InboundMessage:
        return InboundMessage(
            channel=self.name,
            sender=_text(root, "FromUserName", required=True),
            text=text,
            provider_message_id=_text(root, "MsgId") or None,
            received_at=_unix_time(_text(root, "CreateTime")),
            extra={"account": _text(root, "ToUserName"), **(extra or {})},
        )

    def _event(self, root: Element) -> list[InboundMessage | DeliveryStatusUpdate]:
        event = _text(root, "Event", required=True)
        at = _unix_time(_text(root, "CreateTime"))
        if event == "TEMPLATESENDJOBFINISH":
            status = _text(root, "Status", required=True)
            return [
                DeliveryStatusUpdate(
                    channel=self.name,
                    provider_message_id=_text(root, "MsgID", required=True),
                    status="delivered" if status == "success" else "failed",
                    error=None if status == "success" else status.removeprefix("failed:").strip(),
                    at=at,
                    extra={"wechat_status": status},
                )
            ]
        if event == "subscribe_msg_sent_event":
            updates: list[InboundMessage | DeliveryStatusUpdate] = []
            for entry in root.iter("List"):
                outcome = _text(entry, "ErrorStatus") or "unknown"
                updates.append(
                    DeliveryStatusUpdate(
                        channel=self.name,
                        provider_message_id=_text(entry, "MsgID", required=True),
                        status="delivered" if outcome == "success" else "failed",
                        error=None if outcome == "success" else outcome,
                        at=at,
                        extra={"error_code": _text(entry, "ErrorCode")},
                    )
                )
            return updates
        return []

    def inbound_response(
        self, items: list[InboundMessage | DeliveryStatusUpdate]
    ) -> tuple[str, str]:
        return "success", "text/plain"


def _client_msg_id(idempotency_key: str) -> str:
    """The key itself when WeChat accepts it, else a stable digest of it."""
    if len(idempotency_key.encode()) <= _MAX_CLIENT_MSG_ID and idempotency_key.isascii():
        return idempotency_key
    return hashlib.sha256(idempotency_key.encode()).hexdigest()[:_MAX_CLIENT_MSG_ID]


def _parse_xml(body: bytes) -> Element:
    try:
        root = SafeXml.fromstring(body)
    except DefusedXmlException:
        raise InboundRejected(
            "wechat push XML declares a DTD or entities, which are not allowed", status_code=400
        ) from None
    except ParseError as exc:
        raise InboundRejected(
            f"wechat push body is not well-formed XML (line {exc.position[0]}, "
            f"column {exc.position[1]})",
            status_code=400,
        ) from None
    if root.tag != "xml":
        raise InboundRejected("wechat push XML root element must be <xml>", status_code=400)
    return root


def _text(element: Element, tag: str, *, required: bool = False) -> str:
    found = element.find(tag)
    value = (found.text or "").strip() if found is not None else ""
    if required and not value:
        raise InboundRejected(f"wechat push XML lacks <{tag}>", status_code=400)
    return value


def _unix_time(value: str) -> dt.datetime | None:
    return dt.datetime.fromtimestamp(int(value), dt.UTC) if value.isdigit() else None


@hookimpl
def suifang_register_channels(register):  # type: ignore[no-untyped-def]
    register(WeChatChannel)
