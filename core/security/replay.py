"""The webhook replay cache: a signed call, or a provider's message, takes effect once.

A provider's signature proves who sent a call, not that it is the first time: within the
signature window a captured call verifies again, and providers themselves re-deliver. Before
a verified call has any effect, its fingerprint (a SHA-256 of what the signature covers) and
the provider id of each message it carries are *claimed* here, in the database, so the claim
holds across API processes and restarts:

- the first claim wins and the call is processed; the claim ends ``done`` or ``failed``;
- a repeat of a ``done`` claim is a duplicate: answered as the provider expects, no effect;
- a repeat of a ``failed`` claim (the provider retrying after a 503), or of one left
  ``processing`` for longer than ``stale_after`` (a process that died), takes it over and
  reuses its ``effect_key``, so writes the first attempt made are not made twice;
- a repeat while the first is still being processed is told to retry later.

Request fingerprints expire after the replay retention (longer than any signature window,
after which the signature itself is refused); message ids are kept for good.
"""

from __future__ import annotations

import datetime as dt
import enum
import secrets
from dataclasses import dataclass

from sqlalchemy import delete, update
from sqlmodel import Session, col, select

from suifang.core.db import insert_new, utcnow
from suifang.core.models import WebhookReplay

__all__ = ["Claim", "ClaimOutcome", "ReplayScope", "claim", "settle"]


class ReplayScope(enum.StrEnum):
    REQUEST = "request"
    """A signed call, by what its signature covers."""
    MESSAGE = "message"
    """A provider's message id (``MsgId``, a gateway's ``message_id``, Twilio's ``CallSid``)."""


class ClaimOutcome(enum.StrEnum):
    OWNED = "owned"
    DUPLICATE = "duplicate"
    BUSY = "busy"


@dataclass(frozen=True)
class Claim:
    outcome: ClaimOutcome
    replay_id: int
    effect_key: str


def claim(
    session: Session,
    *,
    channel: str,
    scope: ReplayScope,
    fingerprint: str,
    retention: dt.timedelta | None,
    stale_after: dt.timedelta = dt.timedelta(seconds=30),
) -> Claim:
    """Claim ``fingerprint`` for ``channel``; commits. ``retention`` None keeps it for good."""
    now = utcnow()
    session.exec(delete(WebhookReplay).where(col(WebhookReplay.expires_at) < now))  # type: ignore[call-overload]
    mine = secrets.token_hex(16)
    session.execute(
        insert_new(
            session.get_bind().dialect.name, WebhookReplay, "channel", "scope", "fingerprint"
        ),
        {
            "channel": channel,
            "scope": scope.value,
            "fingerprint": fingerprint,
            "state": "processing",
            "effect_key": mine,
            "claimed_at": now,
            "expires_at": now + retention if retention is not None else None,
        },
    )
    session.commit()
    row = session.exec(
        select(WebhookReplay).where(
            WebhookReplay.channel == channel,
            WebhookReplay.scope == scope.value,
            WebhookReplay.fingerprint == fingerprint,
        )
    ).one()
    assert row.id is not None
    if row.effect_key == mine:
        return Claim(ClaimOutcome.OWNED, row.id, mine)
    if row.state == "done":
        return Claim(ClaimOutcome.DUPLICATE, row.id, row.effect_key)
    abandoned = row.state == "processing" and row.claimed_at < now - stale_after
    if row.state == "failed" or abandoned:
        # Only one of several retries arriving together may take it over.
        taken = session.execute(
            update(WebhookReplay)
            .where(
                col(WebhookReplay.id) == row.id,
                col(WebhookReplay.state) == row.state,
                col(WebhookReplay.claimed_at) == row.claimed_at,
            )
            .values(state="processing", claimed_at=now)
        )
        session.commit()
        if taken.rowcount == 1:  # type: ignore[attr-defined]
            return Claim(ClaimOutcome.OWNED, row.id, row.effect_key)
    return Claim(ClaimOutcome.BUSY, row.id, row.effect_key)


def settle(session: Session, claims: list[Claim], *, succeeded: bool) -> None:
    """Mark the claims this call owns ``done`` (a repeat is a duplicate) or ``failed``."""
    owned = [c.replay_id for c in claims if c.outcome is ClaimOutcome.OWNED]
    if owned:
        session.execute(
            update(WebhookReplay)
            .where(col(WebhookReplay.id).in_(owned))
            .values(state="done" if succeeded else "failed")
        )
        session.commit()
