"""SMS channels: ``sms`` (suifang's generic HTTP gateway protocol) and ``sms-aliyun`` (阿里云短信).

``sms`` — generic gateway
=========================

Settings (``SUIFANG_CHANNEL_SMS_<FIELD>``):

- ``URL`` (required): the gateway's send endpoint.
- ``API_KEY`` (required): sent as ``Authorization: Bearer <API_KEY>``.
- ``SENDER_ID``: the sender id or number the gateway should send from (optional).
- ``COUNTRY_CODE`` (86): added to national numbers (``13800138000`` → ``+8613800138000``).
- ``CALLBACK_SECRETS``: shared HMAC secrets for inbound calls, comma-separated, newest first,
  each at least 16 bytes. Unset, inbound calls are refused (403).
- ``SIGNATURE_TOLERANCE_SECONDS`` (300), ``MAX_INBOUND_BYTES`` (262144).
- ``TIMEOUT_SECONDS``, ``RATE_PER_SECOND``, ``ENABLED``: as for every channel.

Any SMS gateway can be put behind suifang by speaking this small protocol (or by a thin
adapter that does).

Send: ``POST <URL>`` with ``Authorization: Bearer <API_KEY>``, ``Idempotency-Key: <key>``
(a gateway must send a message once per key) and a JSON body (``to`` is always E.164)::

    {"to": "+8613800138000", "sender_id": "HOSPITAL", "body": "【某医院】张先生您好……",
     "client_reference": "<idempotency key>"}

A 2xx answer accepts it::

    {"message_id": "gw-123", "status": "accepted" | "queued" | "delivered",
     "segments": 2, "cost": "0.10", "currency": "CNY"}

(all optional; without ``message_id`` suifang tracks the message by its ``client_reference``,
which status callbacks then quote as ``message_id``). Errors are 4xx/5xx with
``{"error": {"code": "<code>", "message": "<text>"}}``; suifang reads the status: 401/403
(credentials), 400/404/422 (``invalid_number``, ``blocked``, ``unsubscribed``,
``content_rejected``) are permanent; 408, 429 (with ``Retry-After``) and 5xx are retried.
``invalid_number``, ``unknown_number``, ``blocked`` and ``unsubscribed`` are about the number
itself: the patient's phone contact is marked failed and not used again until staff confirm it.

Callbacks: the gateway POSTs to suifang's channel webhook (``/channels/sms/inbound``), signed
with ``X-Suifang-Signature`` as in :mod:`suifang.core.security.signing` (``t=<unix>,
v1=<hex HMAC-SHA256 of "<t>.<body>">`` under a callback secret). The body is one event
object or a JSON array of them:

- a patient's reply (uplink): ``{"type": "inbound", "from": "+8613800138000",
  "text": "不疼了", "message_id": "gw-in-9", "in_reply_to": "gw-123",
  "received_at": "2024-05-01T09:30:00+08:00"}``;
- a delivery report: ``{"type": "status", "message_id": "gw-123",
  "client_reference": "<idempotency key>", "status": "delivered" | "failed" | "expired" |
  "rejected" | "undeliverable", "error_code": "…", "at": "<ISO 8601>"}`` (everything but
  ``delivered`` counts as failed).

``sms-aliyun`` — 阿里云短信服务 (Dysmsapi 2017-05-25 ``SendSms``)
================================================================

Settings (``SUIFANG_CHANNEL_SMS_ALIYUN_<FIELD>``):

- ``ACCESS_KEY_ID``, ``ACCESS_KEY_SECRET`` (required): a RAM user's AccessKey with
  ``dysms:SendSms``.
- ``SIGN_NAME`` (required): the approved 短信签名, e.g. ``某某医院``.
- ``DEFAULT_TEMPLATE_CODE``: the 模板 Code used when a message names none.
- ``ENDPOINT`` (``https://dysmsapi.aliyuncs.com/``), ``REGION_ID`` (``cn-hangzhou``).
- ``CALLBACK_TOKEN``: a random string (≥16 characters) that must appear as ``?token=…`` in the
  receipt and uplink URLs configured in the console; unset, callbacks are refused (403).
- ``MAX_INBOUND_BYTES`` (262144), ``TIMEOUT_SECONDS``, ``RATE_PER_SECOND``, ``ENABLED``.

Each message must name an approved template: ``template_id`` is the TemplateCode and
``template_params`` fill its ``${…}`` variables (sent as the ``TemplateParam`` JSON). The
request is an RPC call signed as Aliyun documents (signature version 1.0): the parameters,
sorted, percent-encoded per RFC 3986, form ``POST&%2F&<encoded canonical query>``, signed with
HMAC-SHA1 under ``AccessKeySecret + "&"``, Base64. ``OutId`` carries the idempotency key so
delivery reports can be matched; Aliyun itself does not deduplicate sends (its documentation
says so), so a retried send after a timeout may reach the phone twice.

Callbacks are Aliyun's "HTTP 批量推送" of SmsReport (delivery receipts) and SmsUp (patient
replies): JSON arrays, unsigned by Aliyun — hence the ``token`` in the URL, compared in
constant time. Both answer ``{"code": 0, "msg": "接收成功"}``.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import re
import uuid
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import quote

import httpx
from pydantic import (
    AnyHttpUrl,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    TypeAdapter,
    ValidationError,
    field_validator,
)
from pydantic_settings import NoDecode

from suifang.core.channel_http import (
    is_retryable_status,
    retry_after,
    send_request,
    transient_error,
)
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
    PermanentRecipientError,
    TransientChannelError,
    fingerprint,
)
from suifang.core.hooks import hookimpl
from suifang.core.security.signing import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_TOLERANCE_SECONDS,
    WebhookSigner,
    check_body_size,
)

__all__ = [
    "AliyunSmsChannel",
    "AliyunSmsConfig",
    "SmsGatewayChannel",
    "SmsGatewayConfig",
    "aliyun_percent_encode",
    "aliyun_rpc_signature",
    "suifang_register_channels",
]

_PHONE = re.compile(r"\+?[0-9]{6,20}")
_SAFE_CODE = re.compile(r"[A-Za-z][A-Za-z0-9_.:-]{0,63}")
"""Provider error codes worth quoting; anything else (a number, free text) is left out."""
_CHINA_TZ = dt.timezone(dt.timedelta(hours=8), "Asia/Shanghai")


def _phone_number(address: str, channel: str) -> str:
    """The address without spaces or dashes; refused (permanently) if it is not a number."""
    compact = re.sub(r"[\s\-()]", "", address)
    if not _PHONE.fullmatch(compact):
        raise PermanentRecipientError(f"{channel}: the patient's address is not a phone number")
    return compact


def _e164(number: str, country_code: str) -> str:
    """``+<country><number>``: ``00`` becomes ``+``; a national number gets the default country
    code, without its trunk ``0`` (``010…`` → ``+8610…``)."""
    if number.startswith("+"):
        return number
    if number.startswith("00"):
        return "+" + number[2:]
    return f"+{country_code}{number.lstrip('0')}"


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _load_json(body: bytes, channel: str) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        raise InboundRejected(
            f"{channel} callback body is not valid JSON", status_code=400
        ) from None


def _field_problems(exc: ValidationError) -> str:
    """Which fields are wrong and why, never their values (they may be a patient's text)."""
    problems = []
    for error in exc.errors(include_input=False, include_url=False):
        location = [str(part) for part in error["loc"]]
        if location and location[0] in ("inbound", "status"):
            location = location[1:]
        if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
            problems.append("type: must be 'inbound' or 'status'")
        elif error["type"] == "model_attributes_type":
            problems.append("must be a JSON object")
        else:
            problems.append(f"{'.'.join(location) or 'event'}: {error['msg']}")
    return "; ".join(problems[:5])


# --- the generic gateway ------------------------------------------------------------------


class SmsGatewayConfig(ChannelConfig):
    url: AnyHttpUrl
    api_key: SecretStr
    sender_id: str | None = None
    country_code: str = Field("86", pattern=r"^[1-9][0-9]{0,2}$")
    callback_secrets: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    signature_tolerance_seconds: float = Field(DEFAULT_TOLERANCE_SECONDS, gt=0)
    max_inbound_bytes: int = Field(DEFAULT_MAX_BODY_BYTES, gt=0)

    @field_validator("callback_secrets", mode="before")
    @classmethod
    def _split_comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("callback_secrets")
    @classmethod
    def _secrets_are_strong(cls, value: list[SecretStr]) -> list[SecretStr]:
        if value:
            WebhookSigner.from_secrets(value)
        return value


class _GatewayInbound(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    type: Literal["inbound"]
    sender: str = Field(alias="from", min_length=1)
    text: str
    message_id: str | None = None
    in_reply_to: str | None = None
    received_at: AwareDatetime | None = None


class _GatewayStatus(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["status"]
    message_id: str = Field(min_length=1)
    client_reference: str | None = None
    status: Literal["delivered", "failed", "expired", "rejected", "undeliverable"]
    error_code: str | None = None
    at: AwareDatetime | None = None


_GATEWAY_EVENT: TypeAdapter[_GatewayInbound | _GatewayStatus] = TypeAdapter(
    Annotated[_GatewayInbound | _GatewayStatus, Field(discriminator="type")]
)


class SmsGatewayChannel(Channel):
    """Any SMS gateway speaking suifang's generic protocol (see the module docstring)."""

    name: ClassVar[str] = "sms"
    reaches_staff: ClassVar[bool] = True
    address_kind: ClassVar[AddressKind] = AddressKind.PHONE
    config_model: ClassVar[type[ChannelConfig]] = SmsGatewayConfig

    def __init__(self, config: ChannelConfig, *, http: httpx.AsyncClient | None = None) -> None:
        super().__init__(config, http=http)
        if not isinstance(config, SmsGatewayConfig):
            raise TypeError(f"{type(self).__name__} needs a SmsGatewayConfig; use load_config()")
        self.settings = config
        self.signer = (
            WebhookSigner.from_secrets(
                config.callback_secrets,
                tolerance_seconds=config.signature_tolerance_seconds,
                max_body_bytes=config.max_inbound_bytes,
            )
            if config.callback_secrets
            else None
        )

    async def send(self, message: OutboundMessage) -> DeliveryReceipt:
        payload: dict[str, Any] = {
            "to": _e164(_phone_number(message.address, self.name), self.settings.country_code),
            "body": message.body,
            "client_reference": message.idempotency_key,
        }
        if self.settings.sender_id:
            payload["sender_id"] = self.settings.sender_id
        headers = {
            "Authorization": f"Bearer {self.settings.api_key.get_secret_value()}",
            "Idempotency-Key": message.idempotency_key,
        }
        response = await send_request(
            self.http,
            "POST",
            str(self.settings.url),
            provider="SMS gateway",
            json=payload,
            headers=headers,
        )
        answer = _json_or_none(response)
        if response.is_success:
            return self._receipt(answer, message)
        raise self._error(response, answer)

    def _receipt(self, answer: Any, message: OutboundMessage) -> DeliveryReceipt:
        if not isinstance(answer, dict):
            answer = {}
        cost: Decimal | None = None
        if answer.get("cost") is not None:
            try:
                cost = Decimal(str(answer["cost"]))
            except InvalidOperation:
                cost = None
        status = answer.get("status")
        detail = {"segments": answer["segments"]} if "segments" in answer else {}
        return DeliveryReceipt(
            status=status if status in ("accepted", "queued", "delivered") else "accepted",
            provider_message_id=str(answer.get("message_id") or message.idempotency_key),
            cost=cost,
            currency=answer.get("currency") if cost is not None else None,
            detail=detail,
        )

    def _error(self, response: httpx.Response, answer: Any) -> ChannelError:
        status = response.status_code
        code = None
        if isinstance(answer, dict) and isinstance(answer.get("error"), dict):
            raw = answer["error"].get("code")
            code = raw if isinstance(raw, str) and _SAFE_CODE.fullmatch(raw) else None
        what = f"HTTP {status}" + (f" {code}" if code else "")
        if is_retryable_status(status):
            return transient_error(response, f"SMS gateway busy: {what}")
        if status in (401, 403):
            return PermanentChannelError(
                f"SMS gateway refused our credentials ({what}); check SUIFANG_CHANNEL_SMS_API_KEY"
            )
        if code in _RECIPIENT_CODES:
            return PermanentRecipientError(f"SMS gateway refused the number: {what}")
        return PermanentChannelError(f"SMS gateway refused the message: {what}")

    def replay_fingerprint(self, request: InboundRequest) -> str:
        if self.signer is None:  # never reached: unsigned callbacks are refused
            return super().replay_fingerprint(request)
        return self.signer.replay_fingerprint(request)

    async def parse_inbound(
        self, request: InboundRequest
    ) -> list[InboundMessage | DeliveryStatusUpdate]:
        if self.signer is None:
            raise InboundRejected(
                "sms callbacks are disabled until SUIFANG_CHANNEL_SMS_CALLBACK_SECRETS is set",
                status_code=403,
            )
        self.signer.verify_request(request)
        payload = _load_json(request.body, self.name)
        items = payload if isinstance(payload, list) else [payload]
        results: list[InboundMessage | DeliveryStatusUpdate] = []
        for index, item in enumerate(items):
            try:
                event = _GATEWAY_EVENT.validate_python(item)
            except ValidationError as exc:
                where = f"event [{index}]" if isinstance(payload, list) else "event"
                raise InboundRejected(
                    f"malformed sms {where}: {_field_problems(exc)}", status_code=400
                ) from None
            results.append(self._item(event))
        return results

    def _item(
        self, event: _GatewayInbound | _GatewayStatus
    ) -> InboundMessage | DeliveryStatusUpdate:
        if isinstance(event, _GatewayInbound):
            return InboundMessage(
                channel=self.name,
                sender=event.sender,
                text=event.text,
                provider_message_id=event.message_id,
                in_reply_to=event.in_reply_to,
                received_at=event.received_at,
            )
        return DeliveryStatusUpdate(
            channel=self.name,
            provider_message_id=event.message_id,
            status="delivered" if event.status == "delivered" else "failed",
            error=None if event.status == "delivered" else (event.error_code or event.status),
            at=event.at,
            extra={"client_reference": event.client_reference} if event.client_reference else {},
        )


# --- Aliyun -------------------------------------------------------------------------------


def aliyun_percent_encode(value: str) -> str:
    """RFC 3986 encoding as Aliyun's signature documentation specifies (space → ``%20``)."""
    return quote(value, safe="-_.~")


def aliyun_rpc_signature(
    params: Mapping[str, str], access_key_secret: str, *, method: str = "POST"
) -> str:
    """Aliyun's RPC signature (version 1.0, HMAC-SHA1) of ``params`` (without ``Signature``)."""
    canonical = "&".join(
        f"{aliyun_percent_encode(key)}={aliyun_percent_encode(value)}"
        for key, value in sorted(params.items())
    )
    string_to_sign = f"{method}&{aliyun_percent_encode('/')}&{aliyun_percent_encode(canonical)}"
    digest = hmac.new(
        f"{access_key_secret}&".encode(), string_to_sign.encode(), hashlib.sha1
    ).digest()
    return base64.b64encode(digest).decode()


_ALIYUN_TRANSIENT = {
    "isv.BUSINESS_LIMIT_CONTROL": ("this number hit Aliyun's per-number send rate limit", 60.0),
    "Throttling": ("Aliyun throttled the account", 1.0),
    "Throttling.User": ("Aliyun throttled the account", 1.0),
    "Throttling.Api": ("Aliyun throttled the API", 1.0),
    "isp.SYSTEM_ERROR": ("Aliyun system error", None),
    "isv.SYSTEM_ERROR": ("Aliyun system error", None),
    "isp.GATEWAY_ERROR": ("Aliyun gateway error", None),
    "ServiceUnavailable": ("Aliyun service unavailable", None),
    "InternalError": ("Aliyun internal error", None),
    "SignatureNonceUsed": ("Aliyun saw this request nonce already", None),
}
#: The generic gateway's error codes that are about the number itself (docs/plugins.md).
_RECIPIENT_CODES = frozenset({"invalid_number", "unknown_number", "blocked", "unsubscribed"})
#: Aliyun's codes that are about the number, not the template, signature or account.
_ALIYUN_RECIPIENT = frozenset({"isv.MOBILE_NUMBER_ILLEGAL"})
_ALIYUN_PERMANENT = {
    "isv.MOBILE_NUMBER_ILLEGAL": "invalid phone number",
    "isv.MOBILE_COUNT_OVER_LIMIT": "too many phone numbers",
    "isv.DOMESTIC_NUMBER_NOT_SUPPORTED": "template cannot be sent to mainland numbers",
    "isv.SMS_TEMPLATE_ILLEGAL": "template not found or not approved",
    "isv.TEMPLATE_MISSING_PARAMETERS": "template parameters missing",
    "isv.TEMPLATE_PARAMS_ILLEGAL": "template parameters invalid",
    "isv.INVALID_JSON_PARAM": "template parameters are not valid JSON",
    "isv.PARAM_LENGTH_LIMIT": "a template parameter is too long",
    "isv.PARAM_NOT_SUPPORT_URL": "template parameters may not contain links",
    "isv.INVALID_PARAMETERS": "invalid parameters",
    "isv.SMS_SIGNATURE_ILLEGAL": "sign name not found or not approved",
    "isv.SMS_SIGN_ILLEGAL": "sign name forbidden",
    "isv.SMS_SIGNATURE_SCENE_ILLEGAL": "sign name not usable with this template",
    "isv.SMS_CONTENT_ILLEGAL": "content rejected",
    "isv.BLACK_KEY_CONTROL_LIMIT": "content contains a blocked keyword",
    "isv.EXTEND_CODE_ERROR": "extension code misused",
    "isv.DAY_LIMIT_CONTROL": "the account's daily send limit is reached",
    "isv.AMOUNT_NOT_ENOUGH": "the account balance is insufficient",
    "isv.OUT_OF_SERVICE": "the account is suspended (balance)",
    "isv.PRODUCT_UN_SUBSCRIPT": "SMS is not activated for this account",
    "isv.PRODUCT_UNSUBSCRIBE": "SMS is not activated for this account",
    "isv.ACCOUNT_NOT_EXISTS": "the account does not exist",
    "isv.ACCOUNT_ABNORMAL": "the account is abnormal",
    "isv.DENY_IP_RANGE": "requests from this IP range are refused",
    "isp.RAM_PERMISSION_DENY": "the AccessKey lacks dysms:SendSms",
    "SignatureDoesNotMatch": "request signature rejected; check ACCESS_KEY_SECRET",
    "IncompleteSignature": "request signature rejected",
    "InvalidAccessKeyId.NotFound": "unknown ACCESS_KEY_ID",
    "InvalidAccessKeyId.Inactive": "the AccessKey is disabled",
    "InvalidTimeStamp.Expired": "request timestamp rejected; check the worker's clock",
    "Forbidden.RAM": "the AccessKey lacks dysms:SendSms",
}


class AliyunSmsConfig(ChannelConfig):
    access_key_id: str = Field(min_length=1)
    access_key_secret: SecretStr
    sign_name: str = Field(min_length=1)
    default_template_code: str | None = None
    endpoint: AnyHttpUrl = AnyHttpUrl("https://dysmsapi.aliyuncs.com/")
    region_id: str = "cn-hangzhou"
    callback_token: SecretStr | None = None
    max_inbound_bytes: int = Field(DEFAULT_MAX_BODY_BYTES, gt=0)

    @field_validator("callback_token")
    @classmethod
    def _token_is_long(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("use at least 16 random characters")
        return value


class _AliyunReport(BaseModel):
    model_config = ConfigDict(extra="ignore")

    phone_number: str
    success: bool
    biz_id: str = Field(min_length=1)
    out_id: str | None = None
    err_code: str | None = None
    err_msg: str | None = None
    sms_size: str | None = None
    send_time: str | None = None
    report_time: str | None = None


class _AliyunUplink(BaseModel):
    model_config = ConfigDict(extra="ignore")

    phone_number: str = Field(min_length=1)
    content: str
    send_time: str | None = None
    sign_name: str | None = None
    dest_code: str | None = None
    sequence_id: int | str | None = None


def _china_time(value: str | None) -> dt.datetime | None:
    """Aliyun's ``2017-01-01 00:00:00`` timestamps are Beijing time."""
    if not value:
        return None
    try:
        return dt.datetime.strptime(value, "%Y-%m-%d %H:%M:%S").replace(tzinfo=_CHINA_TZ)
    except ValueError:
        return None


class AliyunSmsChannel(Channel):
    """阿里云短信服务: template SMS by Dysmsapi ``SendSms``; receipts and replies by HTTP push."""

    name: ClassVar[str] = "sms-aliyun"
    reaches_staff: ClassVar[bool] = True
    address_kind: ClassVar[AddressKind] = AddressKind.PHONE
    config_model: ClassVar[type[ChannelConfig]] = AliyunSmsConfig

    API_VERSION: ClassVar[str] = "2017-05-25"

    def __init__(self, config: ChannelConfig, *, http: httpx.AsyncClient | None = None) -> None:
        super().__init__(config, http=http)
        if not isinstance(config, AliyunSmsConfig):
            raise TypeError(f"{type(self).__name__} needs a AliyunSmsConfig; use load_config()")
        self.settings = config

    def signed_params(self, action_params: Mapping[str, str]) -> dict[str, str]:
        """The action's parameters plus Aliyun's common ones and the ``Signature``."""
        params = {
            "AccessKeyId": self.settings.access_key_id,
            "Action": "SendSms",
            "Format": "JSON",
            "RegionId": self.settings.region_id,
            "SignatureMethod": "HMAC-SHA1",
            "SignatureNonce": uuid.uuid4().hex,
            "SignatureVersion": "1.0",
            "Timestamp": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "Version": self.API_VERSION,
            **action_params,
        }
        params["Signature"] = aliyun_rpc_signature(
            params, self.settings.access_key_secret.get_secret_value(), method="POST"
        )
        return params

    async def send(self, message: OutboundMessage) -> DeliveryReceipt:
        template_code = message.template_id or self.settings.default_template_code
        if not template_code:
            raise PermanentChannelError(
                "sms-aliyun needs a template: the message has no template_id and "
                "SUIFANG_CHANNEL_SMS_ALIYUN_DEFAULT_TEMPLATE_CODE is not set"
            )
        action: dict[str, str] = {
            # Aliyun accepts +86/0086/86-prefixed or bare mainland numbers and
            # country-code-prefixed international ones, all without a "+".
            "PhoneNumbers": _phone_number(message.address, self.name).lstrip("+"),
            "SignName": self.settings.sign_name,
            "TemplateCode": template_code,
        }
        if message.template_params:
            action["TemplateParam"] = json.dumps(
                message.template_params, ensure_ascii=False, separators=(",", ":")
            )
        if len(message.idempotency_key) < 256:
            action["OutId"] = message.idempotency_key
        response = await send_request(
            self.http,
            "POST",
            str(self.settings.endpoint),
            provider="Aliyun SMS",
            data=self.signed_params(action),
        )
        answer = _json_or_none(response)
        code = answer.get("Code") if isinstance(answer, dict) else None
        if response.is_success and code == "OK":
            return DeliveryReceipt(
                status="accepted",
                provider_message_id=answer.get("BizId"),
                detail={"request_id": answer.get("RequestId")},
            )
        raise self._error(response, code)

    def _error(self, response: httpx.Response, code: Any) -> ChannelError:
        safe_code = code if isinstance(code, str) and _SAFE_CODE.fullmatch(code) else None
        if safe_code in _ALIYUN_TRANSIENT:
            reason, default_wait = _ALIYUN_TRANSIENT[safe_code]
            return TransientChannelError(
                f"Aliyun SMS {safe_code}: {reason}",
                retry_after=retry_after(response) or default_wait,
            )
        if safe_code in _ALIYUN_RECIPIENT:
            return PermanentRecipientError(
                f"Aliyun SMS {safe_code}: {_ALIYUN_PERMANENT[safe_code]}"
            )
        if safe_code in _ALIYUN_PERMANENT:
            return PermanentChannelError(f"Aliyun SMS {safe_code}: {_ALIYUN_PERMANENT[safe_code]}")
        if is_retryable_status(response.status_code):
            return transient_error(
                response,
                f"Aliyun SMS answered HTTP {response.status_code} code {safe_code or 'unknown'}",
            )
        # An unknown refusal: moving on is safer than resending an SMS the patient may get twice.
        return PermanentChannelError(
            f"Aliyun SMS refused the message: HTTP {response.status_code} "
            f"code {safe_code or 'unknown'}"
        )

    async def parse_inbound(
        self, request: InboundRequest
    ) -> list[InboundMessage | DeliveryStatusUpdate]:
        expected = self.settings.callback_token
        if expected is None:
            raise InboundRejected(
                "sms-aliyun callbacks are disabled until "
                "SUIFANG_CHANNEL_SMS_ALIYUN_CALLBACK_TOKEN is set",
                status_code=403,
            )
        given = request.query.get("token", "")
        if not hmac.compare_digest(given.encode(), expected.get_secret_value().encode()):
            raise InboundRejected(
                "sms-aliyun callback URL token is missing or wrong", status_code=403
            )
        check_body_size(request.body, self.settings.max_inbound_bytes)
        payload = _load_json(request.body, self.name)
        if not isinstance(payload, list):
            raise InboundRejected(
                "sms-aliyun callback body must be a JSON array (HTTP 批量推送)", status_code=400
            )
        return [self._item(index, item) for index, item in enumerate(payload)]

    def replay_fingerprint(self, request: InboundRequest) -> str:
        # Aliyun signs nothing: the body is the call (the URL only carries the token).
        return fingerprint(request.method.upper(), request.body)

    def _item(self, index: int, item: Any) -> InboundMessage | DeliveryStatusUpdate:
        try:
            if isinstance(item, dict) and "content" in item:
                uplink = _AliyunUplink.model_validate(item)
                return InboundMessage(
                    channel=self.name,
                    sender=uplink.phone_number,
                    text=uplink.content,
                    provider_message_id=(
                        str(uplink.sequence_id) if uplink.sequence_id is not None else None
                    ),
                    received_at=_china_time(uplink.send_time),
                    extra={"dest_code": uplink.dest_code, "sign_name": uplink.sign_name},
                )
            if isinstance(item, dict) and ("biz_id" in item or "success" in item):
                report = _AliyunReport.model_validate(item)
                return DeliveryStatusUpdate(
                    channel=self.name,
                    provider_message_id=report.biz_id,
                    status="delivered" if report.success else "failed",
                    error=None if report.success else (report.err_code or "failed"),
                    at=_china_time(report.report_time),
                    extra={
                        "out_id": report.out_id,
                        "err_code": report.err_code,
                        "sms_size": report.sms_size,
                    },
                )
        except ValidationError as exc:
            raise InboundRejected(
                f"malformed sms-aliyun item [{index}]: {_field_problems(exc)}", status_code=400
            ) from None
        raise InboundRejected(
            f"sms-aliyun item [{index}] is neither a delivery report (biz_id, success) "
            "nor an uplink (content)",
            status_code=400,
        )

    def inbound_response(
        self, items: list[InboundMessage | DeliveryStatusUpdate]
    ) -> tuple[str, str]:
        return '{"code": 0, "msg": "接收成功"}', "application/json"


@hookimpl
def suifang_register_channels(register):  # type: ignore[no-untyped-def]
    register(SmsGatewayChannel)
    register(AliyunSmsChannel)
