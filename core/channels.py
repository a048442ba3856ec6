"""The channel contract: what a channel plugin implements and what it exchanges with suifang.

A channel delivers one rendered message to one patient address and, if its provider can
call back, turns the provider's webhook into an :class:`InboundMessage` (a patient's reply)
or a :class:`DeliveryStatusUpdate`. Errors are classified so the send activity knows what
to do: :class:`PermanentChannelError` moves on to the next channel of the patient's cascade
without retrying; :class:`TransientChannelError` (and any unexpected exception) is retried
by Temporal with backoff.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, ClassVar, Literal

import httpx
from dotenv import dotenv_values
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from suifang.core.errors import ConfigurationError

__all__ = [
    "AddressKind",
    "Channel",
    "ChannelConfig",
    "ChannelError",
    "ChannelRegistry",
    "DeliveryReceipt",
    "DeliveryStatusUpdate",
    "InboundMessage",
    "InboundRejected",
    "InboundRequest",
    "OutboundMessage",
    "PermanentChannelError",
    "PermanentRecipientError",
    "TransientChannelError",
    "fingerprint",
]


class AddressKind(enum.StrEnum):
    PHONE = "phone"
    EMAIL = "email"
    WECHAT_OPENID = "wechat_openid"
    APP_USER = "app_user"
    NONE = "none"
    """The channel needs no patient address (the outbox, a human call task queue)."""


class ChannelConfig(BaseSettings):
    """Per-channel settings, read from ``SUIFANG_CHANNEL_<NAME>_<FIELD>``.

    Subclass it for a channel's own fields; suifang builds it with the right prefix.
    """

    model_config = SettingsConfigDict(extra="ignore", env_file=".env", env_file_encoding="utf-8")

    enabled: bool = True
    rate_per_second: float = Field(20.0, gt=0, description="Sends per second per worker process.")
    timeout_seconds: float = Field(10.0, gt=0, le=300, description="Provider call timeout.")


class OutboundMessage(BaseModel):
    """One rendered message for one patient over one channel."""

    model_config = ConfigDict(frozen=True)

    idempotency_key: str = Field(description="Same key → same message; providers may dedupe on it.")
    patient_id: int
    address: str = Field(
        "", description="Phone, email, openid…; empty for channels that need none."
    )
    locale: str = "zh-CN"
    subject: str = ""
    body: str
    link: str | None = None
    template_id: str | None = Field(None, description="Provider-side template id (WeChat, SMS).")
    template_params: dict[str, str] = Field(default_factory=dict)
    metadata: dict[str, str] = Field(default_factory=dict)


class DeliveryReceipt(BaseModel):
    status: Literal["accepted", "delivered", "queued"] = "accepted"
    provider_message_id: str | None = None
    cost: Decimal | None = None
    currency: str | None = None
    detail: dict[str, Any] = Field(default_factory=dict)


class InboundMessage(BaseModel):
    """Something a patient sent: a reply to a touchpoint, an answer, or free text."""

    channel: str
    sender: str = Field(description="The patient's address on that channel.")
    text: str = ""
    answers: dict[str, Any] | None = Field(None, description="Structured questionnaire answers.")
    provider_message_id: str | None = None
    in_reply_to: str | None = Field(
        None, description="Our idempotency key or the provider id of the message replied to."
    )
    received_at: dt.datetime | None = None
    extra: dict[str, Any] = Field(default_factory=dict)


class DeliveryStatusUpdate(BaseModel):
    """The provider's later word on a message: delivered, read, failed."""

    channel: str
    provider_message_id: str
    status: Literal["delivered", "read", "failed", "answered"]
    error: str | None = None
    at: dt.datetime | None = None
    extra: dict[str, Any] = Field(default_factory=dict)


class InboundRequest(BaseModel):
    """A provider's webhook call, independent of the web framework."""

    method: str = "POST"
    path: str = ""
    headers: Mapping[str, str] = Field(default_factory=dict)
    query: Mapping[str, str] = Field(default_factory=dict)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        for key, value in self.headers.items():
            if key.lower() == lowered:
                return value
        return None


def fingerprint(*parts: str | bytes) -> str:
    """SHA-256 (hex) of the parts, each length-prefixed so that no two tuples collide."""
    digest = hashlib.sha256()
    for part in parts:
        data = part.encode("utf-8", "surrogatepass") if isinstance(part, str) else part
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.hexdigest()


class ChannelError(Exception):
    """Base of classified channel errors; the message must not contain patient data."""


class PermanentChannelError(ChannelError):
    """Retrying will not help (bad number, blocked account, unsubscribed): try the next channel."""


class PermanentRecipientError(PermanentChannelError):
    """The address itself is wrong or gone (not a number, unknown mailbox, unsubscribed,
    blocked): the platform marks that contact point failed and does not use it again until
    staff confirm it or the patient's feed gives a new one. Raise plain
    :class:`PermanentChannelError` for anything else (a template, our credentials)."""


class TransientChannelError(ChannelError):
    """Try again later (timeout, 5xx, rate-limited); Temporal retries with backoff."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class InboundRejected(Exception):
    """A webhook call that is not acceptable: bad signature, malformed body (→ 4xx)."""

    def __init__(self, message: str, *, status_code: int = 400) -> None:
        super().__init__(message)
        self.status_code = status_code


class Channel(ABC):
    """Base class of every channel plugin.

    Subclasses set ``name``, ``address_kind`` and, if they have settings,
    ``config_model``; they implement :meth:`send` and, if the provider calls back,
    :meth:`parse_inbound`. One instance serves many sends concurrently, so keep per-message
    state out of ``self``.
    """

    name: ClassVar[str]
    address_kind: ClassVar[AddressKind] = AddressKind.PHONE
    contact_system: ClassVar[str | None] = None
    """The contact system whose values this channel sends to and matches replies against, when
    it is not the one of ``address_kind`` (phone, email, wechat, app): any lower-case name,
    e.g. ``dingtalk_userid``. Patients get contacts of it through intake's ``contacts`` and
    ``POST /patients/{id}/contacts``."""
    reaches_staff: ClassVar[bool] = False
    """Whether it can carry on-call pages and staff notices to a member of staff's own contact
    (SMS, e-mail, a work-messaging app, a webhook): a department's paging policy may name only
    such channels. A patient-only channel (an official-account message to a patient's openid)
    leaves it False."""
    config_model: ClassVar[type[ChannelConfig]] = ChannelConfig

    def __init__(self, config: ChannelConfig, *, http: httpx.AsyncClient | None = None) -> None:
        self.config = config
        self._http = http

    @property
    def http(self) -> httpx.AsyncClient:
        """A shared HTTP client with the configured timeout (injected in tests)."""
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=self.config.timeout_seconds)
        return self._http

    @classmethod
    def env_prefix(cls) -> str:
        return f"SUIFANG_CHANNEL_{cls.name.upper().replace('-', '_')}_"

    @classmethod
    def load_config(cls, **overrides: Any) -> ChannelConfig:
        """This channel's config from ``SUIFANG_CHANNEL_<NAME>_*`` (plus overrides)."""
        prefix = cls.env_prefix()
        try:
            return cls.config_model(_env_prefix=prefix, **overrides)  # type: ignore[call-arg]
        except ValidationError as exc:
            problems = "; ".join(
                f"{prefix}{str(err['loc'][0]).upper() if err['loc'] else ''}: {err['msg']}"
                for err in exc.errors()
            )
            raise ConfigurationError(f"channel {cls.name!r}: {problems}") from None

    @classmethod
    def settings_view(cls) -> dict[str, str]:
        """Each setting of this channel as the environment gives it, secrets masked: what an
        operator checks when the channel is unavailable (``suifang channels``)."""
        dotenv = {k: v for k, v in dotenv_values(".env").items() if v is not None}
        shown: dict[str, str] = {}
        for field, info in cls.config_model.model_fields.items():
            variable = f"{cls.env_prefix()}{field.upper()}"
            given = os.environ.get(variable, dotenv.get(variable))
            if given is None:
                default = (
                    None if info.is_required() else info.get_default(call_default_factory=True)
                )
                value = "(unset)" if info.is_required() else f"{default} (default)"
            elif "SecretStr" in str(info.annotation):
                value = "•••• (set)" if given else "(empty)"
            else:
                value = given
            shown[variable] = value
        return shown

    @abstractmethod
    async def send(self, message: OutboundMessage) -> DeliveryReceipt:
        """Deliver ``message``; raise a :class:`ChannelError` subclass on failure."""

    async def parse_inbound(
        self, request: InboundRequest
    ) -> list[InboundMessage | DeliveryStatusUpdate]:
        """Verify and parse a provider webhook; raise :class:`InboundRejected` if unacceptable."""
        raise InboundRejected(
            f"channel {self.name!r} does not accept inbound calls", status_code=404
        )

    def replay_fingerprint(self, request: InboundRequest) -> str:
        """What identifies a verified call among replays of it: a :func:`fingerprint` of what
        the provider's signature covers (called after :meth:`parse_inbound` accepted it).

        suifang remembers it for the replay retention, and a call with the same fingerprint
        has no second effect. The default covers the URL with its query string and the body,
        right for a signature over both (Twilio's) or for a secret in the URL; override it
        when the signature covers less (a header timestamp and the body, say), so a replay
        with an unsigned part changed is still recognised.
        """
        return fingerprint(request.method.upper(), request.path, request.body)

    def inbound_response(
        self, items: list[InboundMessage | DeliveryStatusUpdate]
    ) -> tuple[str, str]:
        """The body and media type the provider expects back after a webhook (default: JSON ok)."""
        return '{"ok": true}', "application/json"

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()


ChannelRegistry = Callable[[type[Channel]], None]
