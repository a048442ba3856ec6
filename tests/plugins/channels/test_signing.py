"""Webhook signatures: the documented header format, replay window, rotation and size limit."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from suifang.core.channels import InboundRejected, InboundRequest
from suifang.core.security.signing import (
    SIGNATURE_HEADER,
    WebhookSigner,
    parse_signature_header,
    sign_body,
    verify_signature,
)

NEW_SECRET = b"new-secret-0123456789abcdef"
OLD_SECRET = b"old-secret-0123456789abcdef"
BODY = '{"type":"reply","text":"胸口不痛了"}'.encode()
NOW = 1_700_000_000


def documented_signature(secret: bytes, timestamp: int, body: bytes) -> str:
    """What a receiver following the module docstring computes, independently of suifang."""
    return hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()


def test_header_has_documented_format() -> None:
    header = sign_body(BODY, NEW_SECRET, timestamp=NOW)
    assert header == f"t={NOW},v1={documented_signature(NEW_SECRET, NOW, BODY)}"


def test_valid_signature_verifies_and_returns_timestamp() -> None:
    header = sign_body(BODY, NEW_SECRET, timestamp=NOW)
    parsed = verify_signature(BODY, header, [NEW_SECRET], now=NOW + 10)
    assert parsed.timestamp == NOW


def test_changed_body_is_rejected_401() -> None:
    header = sign_body(BODY, NEW_SECRET, timestamp=NOW)
    with pytest.raises(InboundRejected, match="does not match") as caught:
        verify_signature(BODY + b" ", header, [NEW_SECRET], now=NOW)
    assert caught.value.status_code == 401


def test_expired_and_future_timestamps_are_rejected() -> None:
    header = sign_body(BODY, NEW_SECRET, timestamp=NOW)
    with pytest.raises(InboundRejected, match=r"301 s old; the window is 300 s") as old:
        verify_signature(BODY, header, [NEW_SECRET], now=NOW + 301)
    with pytest.raises(InboundRejected, match="in the future") as future:
        verify_signature(BODY, header, [NEW_SECRET], now=NOW - 400)
    assert old.value.status_code == future.value.status_code == 401
    assert verify_signature(BODY, header, [NEW_SECRET], now=NOW + 300).timestamp == NOW


def test_rotation_first_secret_signs_every_secret_verifies() -> None:
    signer = WebhookSigner.from_secrets([NEW_SECRET.decode(), OLD_SECRET.decode()])
    header = signer.sign(BODY, timestamp=NOW)
    assert header.endswith(documented_signature(NEW_SECRET, NOW, BODY))
    from_old_peer = sign_body(BODY, OLD_SECRET, timestamp=NOW)
    assert signer.verify(BODY, from_old_peer, now=NOW).timestamp == NOW
    retired = WebhookSigner.from_secrets([NEW_SECRET])
    with pytest.raises(InboundRejected):
        retired.verify(BODY, from_old_peer, now=NOW)


def test_header_with_several_signatures_matches_any() -> None:
    header = (
        f"t={NOW},v1={'0' * 64},v1={documented_signature(OLD_SECRET, NOW, BODY)},v2=future-scheme"
    )
    assert parse_signature_header(header).signatures[0] == "0" * 64
    assert verify_signature(BODY, header, [OLD_SECRET], now=NOW).timestamp == NOW


@pytest.mark.parametrize(
    ("header", "problem"),
    [
        (None, "missing X-Suifang-Signature"),
        ("", "missing X-Suifang-Signature"),
        ("sha256=abc", "malformed"),
        (f"t={NOW}", "malformed"),
        ("t=yesterday,v1=" + "a" * 64, "Unix seconds"),
        (f"t={NOW},v1=XYZ", "malformed"),
        (f"t={NOW},t={NOW},v1=" + "a" * 64, "once"),
        ("garbage", "malformed"),
    ],
)
def test_malformed_headers_are_rejected_401(header: str | None, problem: str) -> None:
    with pytest.raises(InboundRejected, match=problem) as caught:
        verify_signature(BODY, header, [NEW_SECRET], now=NOW)
    assert caught.value.status_code == 401


def test_oversized_body_is_rejected_413_before_checking_the_signature() -> None:
    signer = WebhookSigner.from_secrets([NEW_SECRET], max_body_bytes=100)
    with pytest.raises(InboundRejected, match="101 bytes; the limit is 100") as caught:
        signer.verify(b"x" * 101, None, now=NOW)
    assert caught.value.status_code == 413


def test_verify_request_reads_header_case_insensitively() -> None:
    signer = WebhookSigner.from_secrets([NEW_SECRET])
    request = InboundRequest(
        headers={SIGNATURE_HEADER.lower(): signer.sign(BODY, timestamp=NOW)}, body=BODY
    )
    signer.verify_request(request, now=NOW)
    unsigned = InboundRequest(body=BODY)
    with pytest.raises(InboundRejected, match="missing"):
        signer.verify_request(unsigned, now=NOW)


@pytest.mark.parametrize(
    ("secrets", "problem"),
    [([], "at least one"), (["short"], "#1 is 5 bytes; use at least 16")],
)
def test_weak_configuration_is_refused(secrets: list[str], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        WebhookSigner.from_secrets(secrets)
