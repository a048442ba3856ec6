"""The email channel against a real SMTP server (aiosmtpd) on loopback, with STARTTLS and AUTH."""

from __future__ import annotations

import datetime as dt
import email
import ipaddress
import socket
import ssl
from collections.abc import Iterator
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from suifang.core.channels import (
    OutboundMessage,
    PermanentChannelError,
    PermanentRecipientError,
    TransientChannelError,
)
from suifang.core.errors import ConfigurationError
from suifang.core.plugins import Plugins
from suifang.plugins.channels import email as email_plugin
from suifang.plugins.channels.email import EmailChannel, message_id_for

PATIENT = "zhang.wei@example.cn"
MESSAGE = OutboundMessage(
    idempotency_key="enr-17:day-7",
    patient_id=42,
    address=PATIENT,
    subject="术后第7天随访 — 仁心医院心内科",
    body="张先生您好：\n\n请问您今天有没有胸痛、气短？请点击下方链接填写随访问卷。",
    link="https://h5.hospital.example/q/abc?x=1&y=2",
)


class Mailbox:
    """An SMTP server's message handler: records what arrives, or refuses as told."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.rcpt_reply: str | None = None
        self.data_reply: str | None = None

    async def handle_RCPT(
        self, server: Any, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.rcpt_reply:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        if self.data_reply:
            return self.data_reply
        self.received.append(
            {
                "mail_from": envelope.mail_from,
                "rcpt_tos": list(envelope.rcpt_tos),
                "message": email.message_from_bytes(envelope.content, policy=default_policy),
                "tls": session.ssl is not None,
                "authenticated": session.authenticated,
            }
        )
        return "250 2.0.0 Ok: queued as 4D5B"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A throw-away certificate for 127.0.0.1/localhost, also usable as its own CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "suifang test SMTP")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "smtp.pem", directory / "smtp.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
def plain_server() -> Iterator[tuple[int, Mailbox]]:
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield controller.port, mailbox
    finally:
        controller.stop()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def secure_server(certificate: tuple[Path, Path]) -> Iterator[tuple[int, Mailbox]]:
    cert_path, key_path = certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)

    def authenticate(
        server: Any, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and (
            auth_data.login,
            auth_data.password,
        ) == (b"followup", "s3cret-口令".encode())
        return AuthResult(success=ok, handled=False)

    mailbox = Mailbox()
    controller = Controller(
        mailbox,
        hostname="127.0.0.1",
        port=free_port(),
        tls_context=context,
        require_starttls=True,
        auth_required=True,
        authenticator=authenticate,
    )
    controller.start()
    try:
        yield controller.port, mailbox
    finally:
        controller.stop()


def make_channel(port: int, **overrides: Any) -> EmailChannel:
    settings = {
        "host": "127.0.0.1",
        "port": port,
        "use_starttls": False,
        "from_address": "followup@hospital.example",
        "from_name": "仁心医院随访中心",
        "reply_to": "nurses@hospital.example",
        "timeout_seconds": 5,
        **overrides,
    }
    return EmailChannel(EmailChannel.load_config(**settings))


async def test_message_arrives_with_headers_and_chinese_text_intact(
    plain_server: tuple[int, Mailbox],
) -> None:
    port, mailbox = plain_server
    receipt = await make_channel(port).send(MESSAGE)

    [delivery] = mailbox.received
    assert delivery["mail_from"] == "followup@hospital.example"
    assert delivery["rcpt_tos"] == [PATIENT]
    mime: EmailMessage = delivery["message"]
    assert mime["Subject"] == "术后第7天随访 — 仁心医院心内科"
    assert mime["From"].addresses[0].display_name == "仁心医院随访中心"
    assert mime["From"].addresses[0].addr_spec == "followup@hospital.example"
    assert mime["To"] == PATIENT
    assert mime["Reply-To"] == "nurses@hospital.example"
    assert mime["Content-Language"] == "zh-CN"
    assert mime["Auto-Submitted"] == "auto-generated"
    assert mime["Message-ID"] == message_id_for("enr-17:day-7", "hospital.example")
    assert receipt.provider_message_id == mime["Message-ID"]
    assert receipt.detail["smtp_reply"].endswith("queued as 4D5B")
    plain = mime.get_body(preferencelist=("plain",))
    assert plain is not None
    assert plain.get_content_charset() == "utf-8"
    # MIME's canonical text form ends lines with CRLF; mail clients show plain newlines.
    assert plain.get_content().replace("\r\n", "\n") == (
        "张先生您好：\n\n请问您今天有没有胸痛、气短？请点击下方链接填写随访问卷。\n\n"
        "https://h5.hospital.example/q/abc?x=1&y=2\n"
    )
    rich = mime.get_body(preferencelist=("html",))
    assert rich is not None
    assert "<p>请问您今天有没有胸痛、气短？请点击下方链接填写随访问卷。</p>" in rich.get_content()
    assert 'href="https://h5.hospital.example/q/abc?x=1&amp;y=2"' in rich.get_content()


async def test_same_idempotency_key_gives_the_same_message_id(
    plain_server: tuple[int, Mailbox],
) -> None:
    port, mailbox = plain_server
    channel = make_channel(port)
    first = await channel.send(MESSAGE)
    second = await channel.send(MESSAGE)
    other = await channel.send(MESSAGE.model_copy(update={"idempotency_key": "enr-17:day-14"}))
    assert first.provider_message_id == second.provider_message_id != other.provider_message_id
    assert len({m["message"]["Message-ID"] for m in mailbox.received}) == 2


async def test_starttls_and_auth(
    secure_server: tuple[int, Mailbox], certificate: tuple[Path, Path]
) -> None:
    port, mailbox = secure_server
    channel = make_channel(
        port,
        use_starttls=True,
        username="followup",
        password="s3cret-口令",
        tls_ca_file=str(certificate[0]),
    )
    receipt = await channel.send(MESSAGE)

    [delivery] = mailbox.received
    assert delivery["tls"] is True
    assert delivery["authenticated"] is True
    assert delivery["message"]["Subject"] == MESSAGE.subject
    assert receipt.provider_message_id == delivery["message"]["Message-ID"]


async def test_wrong_password_is_permanent(
    secure_server: tuple[int, Mailbox], certificate: tuple[Path, Path]
) -> None:
    port, mailbox = secure_server
    channel = make_channel(
        port,
        use_starttls=True,
        username="followup",
        password="wrong",
        tls_ca_file=str(certificate[0]),
    )
    with pytest.raises(PermanentChannelError, match="535"):
        await channel.send(MESSAGE)
    assert mailbox.received == []


async def test_untrusted_certificate_is_permanent(secure_server: tuple[int, Mailbox]) -> None:
    port, mailbox = secure_server
    channel = make_channel(port, use_starttls=True, username="followup", password="s3cret-口令")
    with pytest.raises(PermanentChannelError, match="TLS_CA_FILE"):
        await channel.send(MESSAGE)
    assert mailbox.received == []


async def test_server_without_starttls_is_refused_when_starttls_is_required(
    plain_server: tuple[int, Mailbox],
) -> None:
    port, mailbox = plain_server
    with pytest.raises(PermanentChannelError, match="STARTTLS"):
        await make_channel(port, use_starttls=True).send(MESSAGE)
    assert mailbox.received == []


async def test_unknown_recipient_550_is_the_address_failing(
    plain_server: tuple[int, Mailbox],
) -> None:
    port, mailbox = plain_server
    mailbox.rcpt_reply = f"550 5.1.1 <{PATIENT}>: Recipient address rejected: User unknown"
    # A recipient error: the platform marks the patient's e-mail contact failed.
    with pytest.raises(PermanentRecipientError, match="550") as caught:
        await make_channel(port).send(MESSAGE)
    assert PATIENT not in str(caught.value)
    assert "zhang" not in str(caught.value)


@pytest.mark.parametrize(
    ("rcpt_reply", "data_reply"),
    [
        (f"450 4.2.0 <{PATIENT}>: Recipient address rejected: Greylisted", None),
        (None, "451 4.3.0 Error: queue file write error"),
    ],
)
async def test_4xx_replies_are_transient(
    plain_server: tuple[int, Mailbox], rcpt_reply: str | None, data_reply: str | None
) -> None:
    port, mailbox = plain_server
    mailbox.rcpt_reply, mailbox.data_reply = rcpt_reply, data_reply
    with pytest.raises(TransientChannelError, match="45") as caught:
        await make_channel(port).send(MESSAGE)
    assert PATIENT not in str(caught.value)


async def test_connection_refused_is_transient() -> None:
    with pytest.raises(TransientChannelError, match="unreachable"):
        await make_channel(free_port()).send(MESSAGE)


async def test_invalid_address_is_permanent_and_not_echoed() -> None:
    with pytest.raises(PermanentChannelError, match="not a valid email") as caught:
        await make_channel(free_port()).send(MESSAGE.model_copy(update={"address": "13800138000"}))
    assert "13800138000" not in str(caught.value)


def test_inconsistent_settings_are_named() -> None:
    with pytest.raises(ConfigurationError, match="exclude each other"):
        EmailChannel.load_config(
            from_address="followup@hospital.example", use_tls=True, use_starttls=True
        )
    with pytest.raises(ConfigurationError, match="both username and password"):
        EmailChannel.load_config(from_address="followup@hospital.example", username="u")
    implicit = EmailChannel.load_config(from_address="followup@hospital.example", use_tls=True)
    assert (implicit.use_starttls, implicit.effective_port) == (False, 465)  # type: ignore[attr-defined]


def test_registered_through_the_plugin_hook() -> None:
    plugins = Plugins.load(builtins=False, entrypoints=False, extra=[("email", email_plugin)])
    assert plugins.channel_classes() == {"email": EmailChannel}
    assert EmailChannel.env_prefix() == "SUIFANG_CHANNEL_EMAIL_"
