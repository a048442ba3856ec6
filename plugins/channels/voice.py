"""The ``voice`` channel: outbound follow-up calls (随访电话), reference provider Twilio Voice.

Settings (``SUIFANG_CHANNEL_VOICE_<FIELD>``):

- ``ACCOUNT_SID``, ``AUTH_TOKEN`` (required): the Twilio account; the Auth Token also checks
  the ``X-Twilio-Signature`` of every callback.
- ``API_KEY_SID``, ``API_KEY_SECRET``: an API key to authenticate REST calls with instead of
  the Auth Token (Twilio's recommendation); callbacks are still checked with the Auth Token.
- ``FROM_NUMBER`` (required): the caller number, E.164 (``+8610…`` or a Twilio number).
- ``COUNTRY_CODE`` (86): added to national numbers (``13800138000`` → ``+8613800138000``).
- ``CALLBACK_URL`` (required): the public URL of suifang's voice webhook exactly as Twilio
  will call it, e.g. ``https://followup.hospital.cn/channels/voice/inbound``.
- ``SAY_LANGUAGE`` (``zh-CN``), ``SAY_VOICE`` (e.g. ``Polly.Zhiyu``; unset: Twilio's default),
  ``GATHER_LANGUAGE`` (``cmn-Hans-CN``: Mandarin speech recognition),
  ``GATHER_TIMEOUT_SECONDS`` (5), ``RING_TIMEOUT_SECONDS`` (40), ``RECORD`` (true),
  ``CLOSING_TEXT`` (said after the answer, or when none comes).
- ``API_BASE`` (``https://api.twilio.com``), ``MAX_INBOUND_BYTES`` (262144),
  ``TIMEOUT_SECONDS``, ``RATE_PER_SECOND``, ``ENABLED``.

A send places a call: ``POST /2010-04-01/Accounts/{AccountSid}/Calls.json`` (HTTP basic auth,
form-encoded) with ``To``, ``From``, ``Twiml`` — the message body read out by ``<Say
language="zh-CN">`` inside a ``<Gather input="speech dtmf">`` that posts the patient's spoken
or keyed answer back — ``StatusCallback`` (events ``answered`` and ``completed``),
``Record=true`` with ``RecordingStatusCallback``, and ``Timeout``. Each callback URL is
``CALLBACK_URL`` plus ``?event=<status|gather|recording>&key=<idempotency key>``. Twilio's
Calls API has no idempotency key: a send retried after a timeout whose request did reach
Twilio rings the patient twice.

Errors: Twilio's error ``code`` decides — 21211/21214/21217/13223/13224 (invalid or
unreachable number), 21216 (blocked), 21610 (unsubscribed), 21215 (no geo permission),
21210/21212 (caller number), 20003 (credentials) are permanent; HTTP 429 / 20429 and 5xx,
timeouts and connection errors are retried.

Callbacks (form-encoded POSTs) are verified as Twilio documents: ``X-Twilio-Signature`` is
the Base64 HMAC-SHA1, under the Auth Token, of the full callback URL followed by every POST
parameter name and value, sorted by name. They become:

- ``event=status``: a :class:`DeliveryStatusUpdate` — ``in-progress``/``completed`` →
  delivered, ``busy``/``no-answer``/``failed``/``canceled`` → failed — with ``call_status``,
  ``call_duration`` and, when present, ``recording_url`` in ``extra``;
- ``event=recording``: a delivered update carrying ``recording_url`` (随访电话录音),
  ``recording_sid`` and ``recording_duration``;
- ``event=gather`` with ``SpeechResult`` or ``Digits``: an :class:`InboundMessage` (sender =
  the patient's number, text = the answer, ``in_reply_to`` = the idempotency key) and an
  ``answered`` update with the answer in ``extra``.

The reply is TwiML: after an answer, the closing sentence and ``<Hangup/>``; otherwise an
empty ``<Response/>``.
"""

from __future__ import annotations

import base64
import datetime as dt
import email.utils
import hashlib
import hmac
import re
from collections.abc import Sequence
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlencode
from xml.etree.ElementTree import Element, SubElement, tostring

import httpx
from pydantic import AnyHttpUrl, Field, SecretStr

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
)
from suifang.core.hooks import hookimpl
from suifang.core.security.signing import DEFAULT_MAX_BODY_BYTES, check_body_size

__all__ = [
    "TwilioVoiceChannel",
    "TwilioVoiceConfig",
    "suifang_register_channels",
    "twilio_signature",
]

MAX_INLINE_TWIML = 4000
"""Twilio's limit on the ``Twiml`` parameter, in characters."""

_PERMANENT_CODES = {
    20003: "Twilio refused our credentials; check ACCOUNT_SID and AUTH_TOKEN/API_KEY",
    20404: "Twilio account or resource not found; check ACCOUNT_SID",
    21210: "the caller number is not verified for this account",
    21211: "invalid phone number",
    21212: "invalid caller number; check FROM_NUMBER",
    21214: "the phone number cannot be reached",
    21215: "calls to this country are not enabled (geo permissions)",
    21216: "the phone number is blocked",
    21217: "invalid phone number",
    21610: "the recipient has unsubscribed",
    13223: "invalid phone number format",
    13224: "invalid phone number",
}
_TRANSIENT_CODES = {20429: "Twilio rate limit"}
_E164 = re.compile(r"\+[1-9][0-9]{5,14}")
_FAILED_CALL = frozenset({"busy", "no-answer", "failed", "canceled"})
_REACHED_CALL = frozenset({"in-progress", "completed"})


def twilio_signature(url: str, params: Sequence[tuple[str, str]], auth_token: str) -> str:
    """Twilio's ``X-Twilio-Signature``: Base64 HMAC-SHA1 of the URL plus sorted name+value pairs."""
    data = url + "".join(name + value for name, value in sorted(params))
    digest = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


class TwilioVoiceConfig(ChannelConfig):
    account_sid: str = Field(min_length=1)
    auth_token: SecretStr
    api_key_sid: str | None = None
    api_key_secret: SecretStr | None = None
    from_number: str = Field(pattern=r"^\+[1-9][0-9]{5,14}$")
    country_code: str = Field("86", pattern=r"^[1-9][0-9]{0,2}$")
    callback_url: AnyHttpUrl
    say_language: str = "zh-CN"
    say_voice: str | None = None
    gather_language: str = "cmn-Hans-CN"
    gather_timeout_seconds: int = Field(5, ge=1, le=60)
    ring_timeout_seconds: int = Field(40, ge=5, le=600)
    record: bool = True
    closing_text: str = "谢谢您的配合，祝您早日康复，再见。"
    api_base: AnyHttpUrl = AnyHttpUrl("https://api.twilio.com")
    max_inbound_bytes: int = Field(DEFAULT_MAX_BODY_BYTES, gt=0)


class TwilioVoiceChannel(Channel):
    name: ClassVar[str] = "voice"
    reaches_staff: ClassVar[bool] = True
    address_kind: ClassVar[AddressKind] = AddressKind.PHONE
    config_model: ClassVar[type[ChannelConfig]] = TwilioVoiceConfig

    def __init__(self, config: ChannelConfig, *, http: httpx.AsyncClient | None = None) -> None:
        super().__init__(config, http=http)
        if not isinstance(config, TwilioVoiceConfig):
            raise TypeError(f"{type(self).__name__} needs a TwilioVoiceConfig; use load_config()")
        self.settings = config

    def callback_url(self, event: str, key: str) -> str:
        """The URL Twilio calls back for ``event`` of the message keyed ``key``.

        Verification rebuilds it the same way, so it is exactly the URL Twilio signed.
        """
        base = str(self.settings.callback_url)
        joiner = "&" if "?" in base else "?"
        return f"{base}{joiner}{urlencode({'event': event, 'key': key})}"

    def _say(self, parent: Element, text: str) -> None:
        attributes = {"language": self.settings.say_language}
        if self.settings.say_voice:
            attributes["voice"] = self.settings.say_voice
        SubElement(parent, "Say", attributes).text = text

    def twiml(self, message: OutboundMessage) -> str:
        """The call script: the body read out while listening for speech or keys."""
        response = Element("Response")
        gather = SubElement(
            response,
            "Gather",
            {
                "input": "speech dtmf",
                "language": self.settings.gather_language,
                "action": self.callback_url("gather", message.idempotency_key),
                "method": "POST",
                "timeout": str(self.settings.gather_timeout_seconds),
                "speechTimeout": "auto",
            },
        )
        self._say(gather, message.body)
        self._say(response, self.settings.closing_text)
        return tostring(response, encoding="unicode")

    async def send(self, message: OutboundMessage) -> DeliveryReceipt:
        to = _e164(message.address, self.settings.country_code)
        script = self.twiml(message)
        if len(script) > MAX_INLINE_TWIML:
            raise PermanentChannelError(
                f"voice script is {len(script)} characters of TwiML; "
                f"Twilio accepts at most {MAX_INLINE_TWIML} inline"
            )
        form: list[tuple[str, str]] = [
            ("To", to),
            ("From", self.settings.from_number),
            ("Twiml", script),
            ("StatusCallback", self.callback_url("status", message.idempotency_key)),
            ("StatusCallbackMethod", "POST"),
            ("StatusCallbackEvent", "answered"),
            ("StatusCallbackEvent", "completed"),
            ("Timeout", str(self.settings.ring_timeout_seconds)),
        ]
        if self.settings.record:
            form += [
                ("Record", "true"),
                (
                    "RecordingStatusCallback",
                    self.callback_url("recording", message.idempotency_key),
                ),
                ("RecordingStatusCallbackMethod", "POST"),
            ]
        if self.settings.api_key_sid and self.settings.api_key_secret:
            auth = (self.settings.api_key_sid, self.settings.api_key_secret.get_secret_value())
        else:
            auth = (self.settings.account_sid, self.settings.auth_token.get_secret_value())
        url = (
            f"{str(self.settings.api_base).rstrip('/')}"
            f"/2010-04-01/Accounts/{self.settings.account_sid}/Calls.json"
        )
        response = await send_request(
            self.http,
            "POST",
            url,
            provider="Twilio",
            content=urlencode(form).encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            auth=auth,
        )
        try:
            answer = response.json()
        except ValueError:
            answer = {}
        if not isinstance(answer, dict):
            answer = {}
        if response.is_success and answer.get("sid"):
            call_status = answer.get("status")
            return DeliveryReceipt(
                status="queued" if call_status in (None, "queued") else "accepted",
                provider_message_id=str(answer["sid"]),
                currency=answer.get("price_unit"),
                detail={"call_status": call_status},
            )
        raise self._error(response, answer)

    def _error(self, response: httpx.Response, answer: dict[str, Any]) -> ChannelError:
        code = answer.get("code") if isinstance(answer.get("code"), int) else None
        status = response.status_code
        where = f"HTTP {status}" + (f", Twilio error {code}" if code else "")
        if code in _PERMANENT_CODES:
            return PermanentChannelError(f"{_PERMANENT_CODES[code]} ({where})")
        if code in _TRANSIENT_CODES or is_retryable_status(status):
            return transient_error(response, f"Twilio busy ({where})")
        if status == 401:
            return PermanentChannelError(f"{_PERMANENT_CODES[20003]} ({where})")
        return PermanentChannelError(f"Twilio refused the call ({where})")

    # --- callbacks -------------------------------------------------------------------------

    async def parse_inbound(
        self, request: InboundRequest
    ) -> list[InboundMessage | DeliveryStatusUpdate]:
        check_body_size(request.body, self.settings.max_inbound_bytes)
        event = request.query.get("event", "")
        key = request.query.get("key", "")
        if event not in ("status", "gather", "recording") or not key:
            raise InboundRejected(
                "voice callback URL lacks a known ?event= (status, gather, recording) and ?key=",
                status_code=400,
            )
        try:
            pairs = parse_qsl(
                request.body.decode("utf-8"), keep_blank_values=True, strict_parsing=False
            )
        except UnicodeDecodeError:
            raise InboundRejected("voice callback body is not UTF-8", status_code=400) from None
        self._verify(request, self.callback_url(event, key), pairs)
        form = dict(pairs)
        if form.get("AccountSid") not in (None, self.settings.account_sid):
            raise InboundRejected("voice callback is for another Twilio account", status_code=403)
        call_sid = form.get("CallSid")
        if not call_sid:
            raise InboundRejected("voice callback lacks CallSid", status_code=400)
        if event == "status":
            return self._status(call_sid, form)
        if event == "recording":
            return self._recording(call_sid, form)
        return self._gather(call_sid, key, form)

    def _verify(self, request: InboundRequest, url: str, pairs: list[tuple[str, str]]) -> None:
        given = request.header("X-Twilio-Signature")
        if not given:
            raise InboundRejected("voice callback lacks X-Twilio-Signature", status_code=401)
        expected = twilio_signature(url, pairs, self.settings.auth_token.get_secret_value())
        if not hmac.compare_digest(expected.encode(), given.encode()):
            raise InboundRejected(
                "voice callback X-Twilio-Signature does not match "
                "(is SUIFANG_CHANNEL_VOICE_CALLBACK_URL the exact public URL?)",
                status_code=401,
            )

    def _status(
        self, call_sid: str, form: dict[str, str]
    ) -> list[InboundMessage | DeliveryStatusUpdate]:
        call_status = form.get("CallStatus", "")
        if call_status not in _REACHED_CALL | _FAILED_CALL:
            return []
        extra: dict[str, Any] = {"call_status": call_status}
        if form.get("CallDuration", "").isdigit():
            extra["call_duration"] = int(form["CallDuration"])
        for field, name in (
            ("RecordingUrl", "recording_url"),
            ("AnsweredBy", "answered_by"),
            ("SpeechResult", "speech_result"),
            ("Digits", "digits"),
        ):
            if form.get(field):
                extra[name] = form[field]
        failed = call_status in _FAILED_CALL
        return [
            DeliveryStatusUpdate(
                channel=self.name,
                provider_message_id=call_sid,
                status="failed" if failed else "delivered",
                error=call_status if failed else None,
                at=_rfc2822(form.get("Timestamp")),
                extra=extra,
            )
        ]

    def _recording(
        self, call_sid: str, form: dict[str, str]
    ) -> list[InboundMessage | DeliveryStatusUpdate]:
        if not form.get("RecordingUrl") or form.get("RecordingStatus", "completed") != "completed":
            return []
        extra: dict[str, Any] = {
            "recording_url": form["RecordingUrl"],
            "recording_sid": form.get("RecordingSid"),
        }
        if form.get("RecordingDuration", "").isdigit():
            extra["recording_duration"] = int(form["RecordingDuration"])
        return [
            DeliveryStatusUpdate(
                channel=self.name, provider_message_id=call_sid, status="delivered", extra=extra
            )
        ]

    def _gather(
        self, call_sid: str, key: str, form: dict[str, str]
    ) -> list[InboundMessage | DeliveryStatusUpdate]:
        speech = form.get("SpeechResult", "").strip()
        digits = form.get("Digits", "").strip()
        if not speech and not digits:
            return []
        # On an outbound call Twilio's "To" is the patient; on an inbound one, "From".
        outbound = form.get("Direction", "outbound-api").startswith("outbound")
        patient = form.get("To" if outbound else "From", "")
        extra: dict[str, Any] = {}
        if speech:
            extra["speech_result"] = speech
            if form.get("Confidence"):
                extra["confidence"] = form["Confidence"]
        if digits:
            extra["digits"] = digits
        return [
            InboundMessage(
                channel=self.name,
                sender=patient,
                text=speech or digits,
                answers={"digits": digits} if digits else None,
                provider_message_id=call_sid,
                in_reply_to=key,
                extra=extra,
            ),
            DeliveryStatusUpdate(
                channel=self.name, provider_message_id=call_sid, status="answered", extra=extra
            ),
        ]

    def inbound_response(
        self, items: list[InboundMessage | DeliveryStatusUpdate]
    ) -> tuple[str, str]:
        response = Element("Response")
        if any(isinstance(item, InboundMessage) for item in items):
            self._say(response, self.settings.closing_text)
            SubElement(response, "Hangup")
        return tostring(response, encoding="unicode"), "application/xml"


def _e164(address: str, country_code: str) -> str:
    """``+<country><number>``: ``00`` becomes ``+``; a national number gets the default country
    code, without its trunk ``0`` (``010…`` → ``+8610…``)."""
    number = re.sub(r"[\s\-()]", "", address)
    if number.startswith("00"):
        number = "+" + number[2:]
    elif not number.startswith("+"):
        number = f"+{country_code}{number.lstrip('0')}"
    if not _E164.fullmatch(number):
        raise PermanentChannelError("voice: the patient's address is not a phone number")
    return number


def _rfc2822(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        return email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None


@hookimpl
def suifang_register_channels(register):  # type: ignore[no-untyped-def]
    register(TwilioVoiceChannel)
