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
    """The kind of patient address a channel sends to, each with its contact system. A channel
    whose addresses are of another system sets :attr:`Channel.contact_system` instead."""

    PHONE = "phone"
    """A mobile number: SMS, voice (contact system ``phone``)."""
    EMAIL = "email"
    """An e-mail address (contact system ``email``)."""
    WECHAT_OPENID = "wechat_openid"
    """The patient's openid under the hospital's WeChat official account (``wechat``)."""
    APP_USER = "app_user"
    """The patient's user id in the hospital's app or portal (``app``)."""
    NONE = "none"
    """The channel needs no patient address (the outbox, a human call task queue)."""


class ChannelConfig(BaseSettings):
    """Per-channel settings, read from ``SUIFANG_CHANNEL_<NAME>_<FIELD>``.

    Subclass it for a channel's own fields; suifang builds it with the right prefix.
    """

    model_config = SettingsConfigDict(extra="ignore", env_file=".env", env_file_encoding="utf-8")

    enabled: bool = True
    """``SUIFANG_CHANNEL_<NAME>_ENABLED=false`` switches the channel off: it shows as disabled
    and the cascade skips it."""
    rate_per_second: float = Field(20.0, gt=0, description="Sends per second per worker process.")
    timeout_seconds: float = Field(10.0, gt=0, le=300, description="Provider call timeout.")


class OutboundMessage(BaseModel):
    """One rendered message for one patient over one channel."""

    model_config = ConfigDict(frozen=True)

    idempotency_key: str = Field(description="Same key → same message; providers may dedupe on it.")
    patient_id: int
    """suifang's id of the patient (never a hospital record number): for logs and metadata."""
    address: str = Field(
        "", description="Phone, email, openid…; empty for channels that need none."
    )
    locale: str = "zh-CN"
    """The language ``body`` is in: ``zh-CN`` or ``en``."""
    subject: str = ""
    """A subject line, for channels that have one (e-mail); may be empty."""
    body: str
    """The rendered text, to send as it is."""
    link: str | None = None
    """The questionnaire or reply page, when the message has one."""
    template_id: str | None = Field(None, description="Provider-side template id (WeChat, SMS).")
    template_params: dict[str, str] = Field(default_factory=dict)
    """The provider template's parameters, for channels that send by template."""
    metadata: dict[str, str] = Field(default_factory=dict)
    """What the message is (``kind``: touchpoint, reminder, notice, page…) and suifang's ids
    for it; never patient data. Pass it on to providers that keep metadata."""


class DeliveryReceipt(BaseModel):
    """What :meth:`Channel.send` returns when the provider took the message."""

    status: Literal["accepted", "delivered", "queued"] = "accepted"
    """``accepted`` by the provider (the usual answer); ``delivered`` when sending is
    delivering (e-mail handed to the recipient's server); ``queued`` for later (the outbox)."""
    provider_message_id: str | None = None
    """The provider's id of the message: receipts and replies are matched to it."""
    cost: Decimal | None = None
    """What the provider charged, if it says (shown in the delivery record and KPIs)."""
    currency: str | None = None
    """ISO 4217 code of ``cost``, e.g. CNY."""
    detail: dict[str, Any] = Field(default_factory=dict)
    """Anything else worth keeping from the provider's answer (no secrets, no patient data)."""


class InboundMessage(BaseModel):
    """Something a patient sent: a reply to a touchpoint, an answer, or free text."""

    channel: str
    """The channel's name (``Channel.name``)."""
    sender: str = Field(description="The patient's address on that channel.")
    text: str = ""
    """What the patient wrote (a voice channel: the transcript); may be empty with answers."""
    answers: dict[str, Any] | None = Field(None, description="Structured questionnaire answers.")
    provider_message_id: str | None = None
    """The provider's id of this inbound message: a resend with the same id has no second
    effect."""
    in_reply_to: str | None = Field(
        None, description="Our idempotency key or the provider id of the message replied to."
    )
    received_at: dt.datetime | None = None
    """When the provider received it (timezone-aware); suifang's clock when None."""
    extra: dict[str, Any] = Field(default_factory=dict)
    """Other provider fields worth keeping with the reply (no secrets)."""


class DeliveryStatusUpdate(BaseModel):
    """The provider's later word on a message: delivered, read, failed."""

    channel: str
    """The channel's name (``Channel.name``)."""
    provider_message_id: str
    """The id :class:`DeliveryReceipt` returned for the message this is about."""
    status: Literal["delivered", "read", "failed", "answered"]
    """Where the message got to; ``failed`` after acceptance does not resend it."""
    error: str | None = None
    """The provider's error code or text, with ``failed``."""
    at: dt.datetime | None = None
    """When it happened, per the provider (timezone-aware); suifang's clock when None."""
    extra: dict[str, Any] = Field(default_factory=dict)
    """Other provider fields worth keeping (no secrets)."""


class InboundRequest(BaseModel):
    """A provider's webhook call, independent of the web framework."""

    method: str = "POST"
    """The HTTP method: POST for callbacks, GET for endpoint checks."""
    path: str = ""
    """The URL path and query string as called, e.g. ``/channels/sms/inbound?sig=…``."""
    headers: Mapping[str, str] = Field(default_factory=dict)
    """The request's headers (look them up with :meth:`header`: names are case-insensitive)."""
    query: Mapping[str, str] = Field(default_factory=dict)
    """The query string's parameters."""
    body: bytes = b""
    """The raw body, exactly as received: verify signatures over these bytes."""

    def header(self, name: str) -> str | None:
        """The value of header ``name`` (any case), or None."""
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
        """Seconds the provider asked us to wait (``Retry-After``), if it said."""


class InboundRejected(Exception):
    """A webhook call that is not acceptable: bad signature, malformed body (→ 4xx)."""

    def __init__(self, message: str, *, status_code: int = 400) -> None:
        super().__init__(message)
        self.status_code = status_code
        """The HTTP status the provider gets: 400 malformed, 401 bad signature, 404 unknown."""


class Channel(ABC):
    """Base class of every channel plugin.

    Subclasses set ``name``, ``address_kind`` and, if they have settings,
    ``config_model``; they implement :meth:`send` and, if the provider calls back,
    :meth:`parse_inbound`. One instance serves many sends concurrently, so keep per-message
    state out of ``self``.
    """

    name: ClassVar[str]
    """The channel's name: lower case, ``-`` allowed. Pathways and patients' preferences name
    it, its settings are ``SUIFANG_CHANNEL_<NAME>_*`` and its webhook is
    ``/channels/<name>/inbound``."""
    address_kind: ClassVar[AddressKind] = AddressKind.PHONE
    """The kind of address :attr:`OutboundMessage.address` holds (``AddressKind.NONE``: none)."""
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
    """The channel's settings model (a :class:`ChannelConfig` subclass)."""

    def __init__(self, config: ChannelConfig, *, http: httpx.AsyncClient | None = None) -> None:
        self.config = config
        """The validated settings (an instance of :attr:`config_model`)."""
        self._http = http

    @property
    def http(self) -> httpx.AsyncClient:
        """A shared HTTP client with the configured timeout (injected in tests)."""
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=self.config.timeout_seconds)
        return self._http

    @classmethod
    def env_prefix(cls) -> str:
        """``SUIFANG_CHANNEL_<NAME>_``: the prefix of this channel's settings."""
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
        """Release what the instance holds (its HTTP client); called when the process stops."""
        if self._http is not None:
            await self._http.aclose()


ChannelRegistry = Callable[[type[Channel]], None]
"""The ``register`` that ``suifang_register_channels(register)`` receives: call it with each
:class:`Channel` subclass the plugin provides."""
