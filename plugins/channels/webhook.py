"""The ``webhook`` channel: a signed JSON POST to an app-push service or any hospital system.

Settings (``SUIFANG_CHANNEL_WEBHOOK_<FIELD>``):

- ``URL`` (required): where each message is POSTed, e.g. ``https://push.hospital.cn/suifang``.
- ``SECRETS`` (required): shared HMAC secrets, comma-separated, newest first, each at least
  16 bytes. The first signs outgoing calls; any of them verifies inbound calls (rotation).
- ``HEADERS``: extra request headers as a JSON object, e.g. ``{"X-Hospital": "H001"}``.
- ``SIGNATURE_TOLERANCE_SECONDS`` (300): how old an inbound signature may be.
- ``MAX_INBOUND_BYTES`` (262144): larger inbound bodies are refused with 413.
- ``TIMEOUT_SECONDS``, ``RATE_PER_SECOND``, ``ENABLED``: as for every channel.

Outbound — ``POST <URL>`` with ``Content-Type: application/json``, ``Idempotency-Key`` (the
message's idempotency key: the same key is the same message, so a receiver must deliver it
once) and ``X-Suifang-Signature`` (``t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">``, see
:mod:`suifang.core.security.signing`). The body::

    {"idempotency_key": "enr-17:day-7", "patient_id": 42, "address": "app-user-9",
     "locale": "zh-CN", "subject": "术后第7天随访", "body": "张先生您好……",
     "link": "https://h5.hospital.cn/q/abc", "template_id": null, "template_params": {},
     "metadata": {"department": "cardiology"}}

The receiver answers 2xx to accept, optionally with ``{"message_id": "<its id>"}`` (later
status events refer to it; without one they refer to the idempotency key). 4xx other than
408/429 means "never deliverable" (permanent); 408, 429 (honouring ``Retry-After``), 5xx,
timeouts and connection failures are retried.

Inbound — the receiver POSTs to suifang's channel webhook (``/channels/webhook/inbound``),
signed the same way with the same secrets. The body is one event object or a JSON array:

- a patient's reply: ``{"type": "reply", "sender": "<address>", "text": "…",
  "answers": {"pain_score": 3}, "in_reply_to": "<idempotency key or message_id>",
  "message_id": "<receiver's id>", "received_at": "<ISO 8601 with offset>"}``
  (``sender`` is required; at least one of ``text`` and ``answers``);
- a delivery status: ``{"type": "status", "provider_message_id": "<message_id>",
  "status": "delivered" | "read" | "failed" | "answered", "error": "…",
  "at": "<ISO 8601 with offset>"}``.

Unknown fields are ignored. A bad, missing or expired signature is answered 401; a malformed
body 400 with the field at fault; suifang answers ``{"ok": true}``.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, ClassVar, Literal

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
    model_validator,
)
from pydantic_settings import NoDecode

from suifang.core.channel_http import is_retryable_status, send_request, transient_error
from suifang.core.channels import (
    AddressKind,
    Channel,
    ChannelConfig,
    DeliveryReceipt,
    DeliveryStatusUpdate,
    InboundMessage,
    InboundRejected,
    InboundRequest,
    OutboundMessage,
    PermanentChannelError,
)
from suifang.core.hooks import hookimpl
from suifang.core.security.signing import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_TOLERANCE_SECONDS,
    SIGNATURE_HEADER,
    WebhookSigner,
)

__all__ = ["WebhookChannel", "WebhookConfig", "suifang_register_channels"]


class WebhookConfig(ChannelConfig):
    url: AnyHttpUrl
    secrets: Annotated[list[SecretStr], NoDecode]
    headers: dict[str, str] = Field(default_factory=dict)
    signature_tolerance_seconds: float = Field(DEFAULT_TOLERANCE_SECONDS, gt=0)
    max_inbound_bytes: int = Field(DEFAULT_MAX_BODY_BYTES, gt=0)

    @field_validator("secrets", mode="before")
    @classmethod
    def _split_comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("secrets")
    @classmethod
    def _secrets_are_strong(cls, value: list[SecretStr]) -> list[SecretStr]:
        WebhookSigner.from_secrets(value)
        return value

    def signer(self) -> WebhookSigner:
        return WebhookSigner.from_secrets(
            self.secrets,
            tolerance_seconds=self.signature_tolerance_seconds,
            max_body_bytes=self.max_inbound_bytes,
        )


class _ReplyEvent(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["reply"]
    sender: str = Field(min_length=1)
    text: str = ""
    answers: dict[str, Any] | None = None
    in_reply_to: str | None = None
    message_id: str | None = None
    received_at: AwareDatetime | None = None

    @model_validator(mode="after")
    def _says_something(self) -> _ReplyEvent:
        if not self.text and not self.answers:
            raise ValueError("a reply needs 'text' or 'answers'")
        return self


class _StatusEvent(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["status"]
    provider_message_id: str = Field(min_length=1)
    status: Literal["delivered", "read", "failed", "answered"]
    error: str | None = None
    at: AwareDatetime | None = None


_EVENT: TypeAdapter[_ReplyEvent | _StatusEvent] = TypeAdapter(
    Annotated[_ReplyEvent | _StatusEvent, Field(discriminator="type")]
)


def _parse_events(body: bytes) -> list[_ReplyEvent | _StatusEvent]:
    """The events of an inbound body; errors name the event and field, never the values."""
    try:
        payload = json.loads(body)
    except ValueError:
        raise InboundRejected("webhook body is not valid JSON", status_code=400) from None
    items = payload if isinstance(payload, list) else [payload]
    events = []
    for index, item in enumerate(items):
        where = f"event [{index}]" if isinstance(payload, list) else "event"
        try:
            events.append(_EVENT.validate_python(item))
        except ValidationError as exc:
            raise InboundRejected(
                f"malformed webhook {where}: {_validation_problem(exc)}", status_code=400
            ) from None
    return events


def _validation_problem(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors(include_input=False, include_url=False):
        if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
            problems.append("type: must be 'reply' or 'status'")
            continue
        if error["type"] == "model_attributes_type":
            problems.append("must be a JSON object")
            continue
        # A tagged union puts the tag first in the location; the field name is what helps.
        location = [str(part) for part in error["loc"]]
        if location and location[0] in ("reply", "status"):
            location = location[1:]
        problems.append(f"{'.'.join(location) or 'event'}: {error['msg']}")
    return "; ".join(problems[:5])


class WebhookChannel(Channel):
    name: ClassVar[str] = "webhook"
    reaches_staff: ClassVar[bool] = True
    address_kind: ClassVar[AddressKind] = AddressKind.APP_USER
    config_model: ClassVar[type[ChannelConfig]] = WebhookConfig

    def __init__(self, config: ChannelConfig, *, http: httpx.AsyncClient | None = None) -> None:
        super().__init__(config, http=http)
        if not isinstance(config, WebhookConfig):
            raise TypeError(f"{type(self).__name__} needs a WebhookConfig; use load_config()")
        self.settings = config
        self.signer = config.signer()

    async def send(self, message: OutboundMessage) -> DeliveryReceipt:
        body = json.dumps(
            message.model_dump(mode="json"), ensure_ascii=False, separators=(",", ":")
        ).encode()
        headers = {
            **self.settings.headers,
            "Content-Type": "application/json; charset=utf-8",
            "Idempotency-Key": message.idempotency_key,
            SIGNATURE_HEADER: self.signer.sign(body),
        }
        response = await send_request(
            self.http,
            "POST",
            str(self.settings.url),
            provider="webhook receiver",
            content=body,
            headers=headers,
        )
        status = response.status_code
        if 200 <= status < 300:
            return self._receipt(response, message)
        if is_retryable_status(status):
            raise transient_error(response, f"webhook receiver answered HTTP {status}")
        if 300 <= status < 400:
            raise PermanentChannelError(
                f"webhook receiver answered HTTP {status} (a redirect); "
                "set SUIFANG_CHANNEL_WEBHOOK_URL to the final address"
            )
        raise PermanentChannelError(f"webhook receiver refused the message: HTTP {status}")

    def _receipt(self, response: httpx.Response, message: OutboundMessage) -> DeliveryReceipt:
        provider_id: str | None = None
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if isinstance(answer, dict) and answer.get("message_id") not in (None, ""):
            provider_id = str(answer["message_id"])
        status = answer.get("status") if isinstance(answer, dict) else None
        return DeliveryReceipt(
            status=status if status in ("accepted", "queued", "delivered") else "accepted",
            provider_message_id=provider_id or message.idempotency_key,
            detail={"http_status": response.status_code},
        )

    async def parse_inbound(
        self, request: InboundRequest
    ) -> list[InboundMessage | DeliveryStatusUpdate]:
        self.signer.verify_request(request)
        return [self._item(event) for event in _parse_events(request.body)]

    def replay_fingerprint(self, request: InboundRequest) -> str:
        return self.signer.replay_fingerprint(request)

    def _item(self, event: _ReplyEvent | _StatusEvent) -> InboundMessage | DeliveryStatusUpdate:
        if isinstance(event, _ReplyEvent):
            return InboundMessage(
                channel=self.name,
                sender=event.sender,
                text=event.text,
                answers=event.answers,
                provider_message_id=event.message_id,
                in_reply_to=event.in_reply_to,
                received_at=event.received_at,
            )
        return DeliveryStatusUpdate(
            channel=self.name,
            provider_message_id=event.provider_message_id,
            status=event.status,
            error=event.error,
            at=event.at,
        )


@hookimpl
def suifang_register_channels(register):  # type: ignore[no-untyped-def]
    register(WebhookChannel)
