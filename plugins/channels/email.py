"""The ``email`` channel: SMTP submission with STARTTLS (or implicit TLS) and AUTH, via aiosmtplib.

Settings (``SUIFANG_CHANNEL_EMAIL_<FIELD>``):

- ``FROM_ADDRESS`` (required): the sender, e.g. ``followup@hospital.cn``.
- ``FROM_NAME``: the sender's display name, e.g. ``仁心医院随访中心``.
- ``REPLY_TO``: where patients' replies should go, if not the sender.
- ``HOST`` (``localhost``), ``PORT`` (587; 465 with ``USE_TLS``).
- ``USE_STARTTLS`` (true): upgrade the connection with STARTTLS and refuse to send without it.
- ``USE_TLS`` (false): implicit TLS from the first byte (port 465) instead of STARTTLS.
- ``USERNAME``, ``PASSWORD``: SMTP AUTH credentials (only sent over TLS).
- ``TLS_CA_FILE``: a PEM bundle to trust besides the system CAs (a hospital's own CA).
- ``VALIDATE_CERTS`` (true): check the server's certificate and name.
- ``MESSAGE_ID_DOMAIN``: the right-hand side of Message-IDs (default: the sender's domain).
- ``TIMEOUT_SECONDS``, ``RATE_PER_SECOND``, ``ENABLED``: as for every channel.

Each message is a UTF-8 MIME message: ``text/plain`` (the body, then the link) with a
``text/html`` alternative, the subject RFC 2047-encoded, ``Content-Language`` from the
message's locale and ``Auto-Submitted: auto-generated`` (so vacation responders stay quiet).
Its ``Message-ID`` is derived from the idempotency key — ``<sha256(key)[:32].suifang@domain>``
— so a resent duplicate carries the same id and mail systems and people can recognise it; the
receipt's ``provider_message_id`` is that Message-ID.

Errors: a 5xx SMTP reply (e.g. 550 unknown recipient, 535 bad credentials) is permanent, a 4xx
(greylisting, mailbox busy) and timeouts, refused or dropped connections are retried; a server
that does not offer STARTTLS or AUTH when configured to is a permanent configuration error.

Inbound email (patients replying by mail) is not handled by this channel: point ``REPLY_TO`` at
a mailbox a person reads, or at the hospital system that forwards replies to the ``webhook``
channel.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import html
import ssl
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from typing import ClassVar

import aiosmtplib
import httpx
from email_validator import EmailNotValidError, validate_email
from pydantic import EmailStr, Field, FilePath, SecretStr, model_validator

from suifang.core.channels import (
    AddressKind,
    Channel,
    ChannelConfig,
    ChannelError,
    DeliveryReceipt,
    OutboundMessage,
    PermanentChannelError,
    PermanentRecipientError,
    TransientChannelError,
)
from suifang.core.hooks import hookimpl

__all__ = ["EmailChannel", "EmailConfig", "message_id_for", "suifang_register_channels"]


class EmailConfig(ChannelConfig):
    from_address: EmailStr
    from_name: str | None = None
    reply_to: EmailStr | None = None
    host: str = Field("localhost", min_length=1)
    port: int | None = Field(None, ge=1, le=65535)
    use_starttls: bool = True
    use_tls: bool = False
    username: str | None = None
    password: SecretStr | None = None
    tls_ca_file: FilePath | None = None
    validate_certs: bool = True
    message_id_domain: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> EmailConfig:
        if self.use_tls and self.use_starttls:
            if "use_starttls" in self.model_fields_set:
                raise ValueError(
                    "use_tls (implicit TLS, port 465) and use_starttls (port 587) exclude each "
                    "other; set only one"
                )
            self.use_starttls = False
        if (self.username is None) != (self.password is None):
            raise ValueError("set both username and password for SMTP AUTH, or neither")
        return self

    @property
    def effective_port(self) -> int:
        return self.port or (465 if self.use_tls else 587)

    @property
    def id_domain(self) -> str:
        return self.message_id_domain or str(self.from_address).rpartition("@")[2]


def message_id_for(idempotency_key: str, domain: str) -> str:
    """The Message-ID of the message with this key: the same key always gives the same id."""
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]
    return f"<{digest}.suifang@{domain}>"


class EmailChannel(Channel):
    name: ClassVar[str] = "email"
    reaches_staff: ClassVar[bool] = True
    address_kind: ClassVar[AddressKind] = AddressKind.EMAIL
    config_model: ClassVar[type[ChannelConfig]] = EmailConfig

    def __init__(self, config: ChannelConfig, *, http: httpx.AsyncClient | None = None) -> None:
        super().__init__(config, http=http)
        if not isinstance(config, EmailConfig):
            raise TypeError(f"{type(self).__name__} needs a EmailConfig; use load_config()")
        self.settings = config

    def build_message(self, message: OutboundMessage) -> EmailMessage:
        """The MIME message for ``message``; refuses an address that is not an email address."""
        try:
            recipient = validate_email(message.address, check_deliverability=False).normalized
        except EmailNotValidError:
            raise PermanentChannelError(
                "email: the patient's address is not a valid email address"
            ) from None
        mime = EmailMessage(policy=SMTP)
        sender = str(self.settings.from_address)
        mime["From"] = Address(display_name=self.settings.from_name or "", addr_spec=sender)
        mime["To"] = recipient
        if self.settings.reply_to:
            mime["Reply-To"] = str(self.settings.reply_to)
        mime["Subject"] = message.subject or (message.body.splitlines() or [""])[0][:60]
        mime["Date"] = format_datetime(dt.datetime.now(dt.UTC))
        mime["Message-ID"] = message_id_for(message.idempotency_key, self.settings.id_domain)
        mime["Auto-Submitted"] = "auto-generated"
        text = message.body if not message.link else f"{message.body}\n\n{message.link}\n"
        mime.set_content(text, subtype="plain", charset="utf-8", cte="base64")
        mime.add_alternative(_html(message), subtype="html", charset="utf-8", cte="base64")
        # After add_alternative: it moves Content-* headers of the root into the first part.
        mime["Content-Language"] = message.locale
        return mime

    def _tls_context(self) -> ssl.SSLContext:
        cafile = str(self.settings.tls_ca_file) if self.settings.tls_ca_file else None
        context = ssl.create_default_context(cafile=cafile)
        if not self.settings.validate_certs:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    async def send(self, message: OutboundMessage) -> DeliveryReceipt:
        mime = self.build_message(message)
        settings = self.settings
        tls = settings.use_tls or settings.use_starttls
        try:
            _, server_reply = await aiosmtplib.send(
                mime,
                hostname=settings.host,
                port=settings.effective_port,
                username=settings.username,
                password=settings.password.get_secret_value() if settings.password else None,
                use_tls=settings.use_tls,
                start_tls=settings.use_starttls,
                tls_context=self._tls_context() if tls else None,
                timeout=settings.timeout_seconds,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [refusal.code for refusal in exc.recipients]
            if codes and all(code in _MAILBOX_GONE for code in codes):
                listed = ", ".join(str(code) for code in codes)
                raise PermanentRecipientError(
                    f"SMTP server refused the address (reply {listed})"
                ) from None
            raise _classify_codes(codes) from None
        except aiosmtplib.SMTPResponseException as exc:
            raise _classify_codes([exc.code]) from None
        except (aiosmtplib.SMTPTimeoutError, TimeoutError):
            raise TransientChannelError("SMTP server timed out") from None
        except ssl.SSLCertVerificationError:
            raise PermanentChannelError(
                "SMTP server certificate not trusted; set SUIFANG_CHANNEL_EMAIL_TLS_CA_FILE"
            ) from None
        except (aiosmtplib.SMTPConnectError, aiosmtplib.SMTPServerDisconnected, OSError) as exc:
            raise TransientChannelError(f"SMTP server unreachable ({type(exc).__name__})") from None
        except aiosmtplib.SMTPException as exc:
            # Raised by aiosmtplib itself (no STARTTLS or AUTH offered, …), never with server
            # text, so its message is safe and says what to fix.
            raise PermanentChannelError(
                f"SMTP session failed: {exc}; check the SUIFANG_CHANNEL_EMAIL_* settings"
            ) from None
        return DeliveryReceipt(
            status="accepted",
            provider_message_id=mime["Message-ID"],
            detail={"smtp_reply": server_reply[:200]},
        )


#: RCPT TO replies that say the mailbox does not exist (550 no such user, 551 not local,
#: 553 not allowed): the address is wrong, not the message.
_MAILBOX_GONE = frozenset({550, 551, 553})


def _classify_codes(codes: list[int]) -> ChannelError:
    """5xx is final; anything else (4xx) may succeed later. Server text may name the address."""
    listed = ", ".join(str(code) for code in codes)
    if codes and all(500 <= code < 600 for code in codes):
        return PermanentChannelError(f"SMTP server refused the message (reply {listed})")
    return TransientChannelError(f"SMTP server deferred the message (reply {listed})")


def _html(message: OutboundMessage) -> str:
    paragraphs = "".join(
        f"<p>{html.escape(paragraph).replace(chr(10), '<br>')}</p>"
        for paragraph in message.body.split("\n\n")
    )
    link = (
        f'<p><a href="{html.escape(message.link, quote=True)}">{html.escape(message.link)}</a></p>'
        if message.link
        else ""
    )
    language = html.escape(message.locale, quote=True)
    return (
        f'<!DOCTYPE html><html lang="{language}"><head><meta charset="utf-8"></head>'
        f"<body>{paragraphs}{link}</body></html>"
    )


@hookimpl
def suifang_register_channels(register):  # type: ignore[no-untyped-def]
    register(EmailChannel)
