"""What the inbound webhooks remember besides the calls they act on.

- :class:`WebhookReplay`: the replay cache. One row per signed request (the fingerprint of
  what its signature covers, kept for the replay retention) and per provider message id
  (kept for good), unique per channel, so a replayed or re-delivered call has no second
  effect — in every API process, and after a restart.
- :class:`WebhookRejection`: a refused call as metadata only (size, SHA-256 of the body, a
  few headers, the reason), never its body, and capped in number, so nobody can fill the
  disk by posting to the public webhook endpoint.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, UniqueConstraint
from sqlmodel import Field, SQLModel

from suifang.core.db import UTCDateTime
from suifang.core.models.base import TimestampField

__all__ = ["WebhookRejection", "WebhookReplay"]


class WebhookReplay(SQLModel, table=True):
    """A request or provider message a webhook has taken, or is taking, into account."""

    __tablename__ = "webhook_replay"
    __table_args__ = (UniqueConstraint("channel", "scope", "fingerprint"),)

    id: int | None = Field(default=None, primary_key=True)
    channel: str = Field(max_length=32)
    scope: str = Field(max_length=16, description="request (a signed call) or message (an id)")
    fingerprint: str = Field(
        max_length=64, description="SHA-256 (hex) of the signed request or of the message id"
    )
    state: str = Field(max_length=16, description="processing, done or failed")
    effect_key: str = Field(
        max_length=64, description="Random; makes the writes of a retried call idempotent."
    )
    claimed_at: dt.datetime = TimestampField()
    expires_at: dt.datetime | None = Field(
        default=None, sa_type=UTCDateTime, index=True, description="None: kept for good."
    )


class WebhookRejection(SQLModel, table=True):
    """A webhook call that was refused, described without its body."""

    __tablename__ = "webhook_rejection"

    id: int | None = Field(default=None, primary_key=True)
    channel: str = Field(max_length=32, index=True)
    source: str = Field(max_length=64, description="The caller's IP address.")
    reason: str = Field(max_length=256)
    status_code: int
    size: int = Field(description="Body length in bytes.")
    body_sha256: str = Field(max_length=64)
    headers: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    received_at: dt.datetime = TimestampField(index=True)
