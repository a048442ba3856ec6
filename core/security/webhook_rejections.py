"""Refused webhook calls, kept as metadata: enough to investigate, too little to fill a disk.

The webhook endpoint is public, so a refused call (a bad signature, a malformed or too deep
body, an unknown channel, a replay) is recorded without its body: its size, the SHA-256 of
the body (to match it against a provider's logs), a few headers, where it came from and why
it was refused. Only the newest ``keep`` rows are kept; older ones are pruned as new ones
arrive. Accepted calls are stored whole, as before (``InboundRecord``, encrypted).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from sqlalchemy import delete, func
from sqlmodel import Session, col, select

from suifang.core.models import WebhookRejection

__all__ = ["KEPT_HEADERS", "record_rejection"]

KEPT_HEADERS = (
    "content-type",
    "content-length",
    "user-agent",
    "x-forwarded-for",
    "x-suifang-signature",
    "x-twilio-signature",
)
"""Headers kept with a rejection (each cut to 200 characters); signatures are not secrets."""

_QUERY_KEPT = ("signature", "msg_signature", "timestamp", "nonce", "encrypt_type", "event")
"""Query parameters kept: what a signature check looked at, never a token or an address."""


def record_rejection(
    session: Session,
    *,
    channel: str,
    source: str,
    reason: str,
    status_code: int,
    body: bytes,
    headers: Mapping[str, str],
    query: Mapping[str, str],
    keep: int,
) -> int:
    """Store one refused call's metadata, prune beyond the newest ``keep``; returns its id."""
    lowered = {name.lower(): value for name, value in headers.items()}
    kept: dict[str, object] = {
        name: lowered[name][:200] for name in KEPT_HEADERS if name in lowered
    }
    shown_query = {name: query[name][:100] for name in _QUERY_KEPT if name in query}
    if shown_query:
        kept["query"] = shown_query
    rejection = WebhookRejection(
        channel=channel[:32],
        source=source[:64],
        reason=reason[:256],
        status_code=status_code,
        size=len(body),
        body_sha256=hashlib.sha256(body).hexdigest(),
        headers=kept,
    )
    session.add(rejection)
    session.commit()
    assert rejection.id is not None
    newest = session.exec(select(func.max(WebhookRejection.id))).one() or 0
    if newest > keep:
        session.exec(delete(WebhookRejection).where(col(WebhookRejection.id) <= newest - keep))  # type: ignore[call-overload]
        session.commit()
    return rejection.id
