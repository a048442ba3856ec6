"""HMAC-SHA256 webhook signatures with a timestamp, for what suifang sends and what it receives.

One header carries the signature (``X-Suifang-Signature``)::

    t=1700000000,v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd

``t`` is the signing time in Unix seconds; ``v1`` is the lowercase hex HMAC-SHA256, under a
shared secret, of the UTF-8 bytes ``"<t>."`` followed by the raw request body. A header may
carry several ``v1=`` entries (a sender signing with each of its secrets during a rotation).

A receiver, in this order:

1. refuses a body larger than its limit (413) before computing anything;
2. parses the header (a missing or malformed one is 401);
3. refuses a timestamp further than the tolerance (default 300 s) from its own clock, in
   either direction (401), so a captured call cannot be replayed later;
4. accepts when any ``v1`` equals the HMAC under any of its secrets, compared in constant time.

Key rotation: configure ``[new, old]``. The first secret signs; every secret verifies. Once all
peers sign with the new secret, drop the old one.

Within the tolerance window the same call verifies again: a receiver must remember the calls
it took (:meth:`WebhookSigner.replay_fingerprint`, what suifang's replay cache keys on) and
give a repeat no second effect.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass

from pydantic import SecretStr

from suifang.core.channels import InboundRejected, InboundRequest, fingerprint

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_TOLERANCE_SECONDS",
    "MIN_SECRET_BYTES",
    "SIGNATURE_HEADER",
    "SignatureHeader",
    "WebhookSigner",
    "check_body_size",
    "compute_signature",
    "parse_signature_header",
    "sign_body",
    "verify_signature",
]

SIGNATURE_HEADER = "X-Suifang-Signature"
DEFAULT_TOLERANCE_SECONDS = 300.0
DEFAULT_MAX_BODY_BYTES = 256 * 1024
MIN_SECRET_BYTES = 16
"""Shorter shared secrets are refused: they can be brute-forced from one signed request."""

_SCHEME = "v1"
_HEX_SHA256 = re.compile(r"[0-9a-f]{64}")
_HEADER_SHAPE = "expected t=<unix seconds>,v1=<64 hex digits>"


@dataclass(frozen=True)
class SignatureHeader:
    """A parsed signature header: when it was signed and the candidate signatures."""

    timestamp: int
    signatures: tuple[str, ...]

    def render(self) -> str:
        return ",".join([f"t={self.timestamp}", *(f"{_SCHEME}={sig}" for sig in self.signatures)])


def check_body_size(body: bytes, max_bytes: int) -> None:
    """Refuse (413) a body longer than ``max_bytes``: checked before any parsing or hashing."""
    if len(body) > max_bytes:
        raise InboundRejected(
            f"request body is {len(body)} bytes; the limit is {max_bytes}", status_code=413
        )


def compute_signature(secret: bytes, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``"<timestamp>." + body`` under ``secret``."""
    return hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign_body(body: bytes, secret: bytes, *, timestamp: int | None = None) -> str:
    """The header value for ``body`` signed with ``secret`` at ``timestamp`` (default: now)."""
    signed_at = int(time.time()) if timestamp is None else timestamp
    return SignatureHeader(signed_at, (compute_signature(secret, signed_at, body),)).render()


def parse_signature_header(header: str | None) -> SignatureHeader:
    """Parse ``t=…,v1=…[,v1=…]``; unknown schemes are ignored so senders can add new ones."""
    if not header:
        raise InboundRejected(f"missing {SIGNATURE_HEADER} header", status_code=401)
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            raise InboundRejected(
                f"malformed {SIGNATURE_HEADER} header: {_HEADER_SHAPE}", status_code=401
            )
        if key == "t":
            if not value.isdigit() or timestamp is not None:
                raise InboundRejected(
                    f"malformed {SIGNATURE_HEADER} header: 't' must appear once, in Unix seconds",
                    status_code=401,
                )
            timestamp = int(value)
        elif key == _SCHEME:
            if not _HEX_SHA256.fullmatch(value):
                raise InboundRejected(
                    f"malformed {SIGNATURE_HEADER} header: {_HEADER_SHAPE}", status_code=401
                )
            signatures.append(value)
    if timestamp is None or not signatures:
        raise InboundRejected(
            f"malformed {SIGNATURE_HEADER} header: {_HEADER_SHAPE}", status_code=401
        )
    return SignatureHeader(timestamp, tuple(signatures))


def verify_signature(
    body: bytes,
    header: str | None,
    secrets: Iterable[bytes],
    *,
    tolerance_seconds: float = DEFAULT_TOLERANCE_SECONDS,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    now: float | None = None,
) -> SignatureHeader:
    """Check ``header`` against ``body``; return it parsed, or raise :class:`InboundRejected`."""
    check_body_size(body, max_body_bytes)
    parsed = parse_signature_header(header)
    current = time.time() if now is None else now
    skew = current - parsed.timestamp
    if abs(skew) > tolerance_seconds:
        direction = "old" if skew > 0 else "in the future"
        raise InboundRejected(
            f"{SIGNATURE_HEADER} timestamp is {abs(skew):.0f} s {direction}; "
            f"the window is {tolerance_seconds:.0f} s",
            status_code=401,
        )
    # Compare against every (secret, signature) pair without stopping early, so the time
    # taken does not reveal which secret or which position came close.
    matched = False
    for secret in secrets:
        expected = compute_signature(secret, parsed.timestamp, body)
        for candidate in parsed.signatures:
            matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise InboundRejected(f"{SIGNATURE_HEADER} does not match the body", status_code=401)
    return parsed


def _secret_bytes(secret: str | bytes | SecretStr) -> bytes:
    if isinstance(secret, SecretStr):
        secret = secret.get_secret_value()
    return secret.encode() if isinstance(secret, str) else secret


@dataclass(frozen=True)
class WebhookSigner:
    """The shared secrets of one webhook peer (newest first) and how strictly to check calls.

    ``sign`` uses the first secret; ``verify`` accepts any of them.
    """

    secrets: tuple[bytes, ...]
    """The shared secrets, newest first, each at least 16 bytes."""
    tolerance_seconds: float = DEFAULT_TOLERANCE_SECONDS
    """How far a signature's timestamp may be from now (replays older than this fail)."""
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    """Larger bodies are refused before any hashing."""

    def __post_init__(self) -> None:
        if not self.secrets:
            raise ValueError("at least one webhook secret is required")
        for position, secret in enumerate(self.secrets, start=1):
            if len(secret) < MIN_SECRET_BYTES:
                raise ValueError(
                    f"webhook secret #{position} is {len(secret)} bytes; "
                    f"use at least {MIN_SECRET_BYTES} (e.g. `openssl rand -hex 32`)"
                )
        if self.tolerance_seconds <= 0:
            raise ValueError("the signature tolerance must be positive")
        if self.max_body_bytes <= 0:
            raise ValueError("the maximum body size must be positive")

    @classmethod
    def from_secrets(
        cls,
        secrets: Iterable[str | bytes | SecretStr],
        *,
        tolerance_seconds: float = DEFAULT_TOLERANCE_SECONDS,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> WebhookSigner:
        """A signer from secrets as settings hold them (text, bytes or ``SecretStr``)."""
        return cls(
            tuple(_secret_bytes(secret) for secret in secrets),
            tolerance_seconds=tolerance_seconds,
            max_body_bytes=max_body_bytes,
        )

    def sign(self, body: bytes, *, timestamp: int | None = None) -> str:
        """The ``X-Suifang-Signature`` value for ``body``, signed with the newest secret."""
        return sign_body(body, self.secrets[0], timestamp=timestamp)

    def verify(
        self, body: bytes, header: str | None, *, now: float | None = None
    ) -> SignatureHeader:
        """Check ``header`` (an ``X-Suifang-Signature`` value) against ``body``: raises
        :class:`InboundRejected` (401) when no secret matches or the time is out of tolerance,
        (413) when the body is too large; returns the parsed header."""
        return verify_signature(
            body,
            header,
            self.secrets,
            tolerance_seconds=self.tolerance_seconds,
            max_body_bytes=self.max_body_bytes,
            now=now,
        )

    def verify_request(self, request: InboundRequest, *, now: float | None = None) -> None:
        """Verify a webhook call's body against its ``X-Suifang-Signature`` header."""
        self.verify(request.body, request.header(SIGNATURE_HEADER), now=now)

    def replay_fingerprint(self, request: InboundRequest) -> str:
        """What the signature covers — the signing time and the body — for the replay cache.

        Another header with the same timestamp and body (extra ``v1=`` entries, say) is the
        same call; a query string is not signed and so is left out.
        """
        signed = parse_signature_header(request.header(SIGNATURE_HEADER))
        return fingerprint(str(signed.timestamp), request.body)
