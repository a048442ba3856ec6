"""``Idempotency-Key`` done the way payment APIs do it.

A key belongs to the caller (their account) and the route it was sent to: another caller's
key, even the same string, is another key, so a key can never fetch someone else's result.
Each key is bound to a keyed hash of the request body: the same caller sending the same key
with the same body gets the first answer again; with a different body, 422
``idempotency_key_reused``. Keys are remembered for ``idempotency_key_hours`` (24 h by
default); after that the same key starts a new request.

The work a key guards (a ticket, an enrollment) is found again through an internal key,
``api:<random>``, that only this module hands out: a retry after a crash between creating
the resource and remembering it still finds the resource instead of making a second one.
It is random, so a key used again after it expired starts afresh.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from suifang.core.db import utcnow
from suifang.core.errors import IdempotencyKeyReused
from suifang.core.models import IdempotencyRecord
from suifang.core.security.auth import Principal
from suifang.core.security.crypto import get_keyring

__all__ = ["Claim", "claim_key", "remember_result"]

_PRUNE_BATCH = 500


@dataclass(frozen=True, slots=True)
class Claim:
    record_id: int
    internal_key: str
    """The key the guarded resource is stored under (see the module docstring)."""
    status_code: int | None
    """The first answer's status, when the first request finished (a replay)."""


def _request_hash(body: BaseModel) -> str:
    # The key may come in the body or in the header: a retry that moves it is the same request.
    content: Any = body.model_dump(mode="json", exclude={"idempotency_key"})
    canonical = json.dumps(content, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return get_keyring().index("idempotency-body", canonical)


def claim_key(
    session: Session,
    principal: Principal,
    route: str,
    key: str,
    body: BaseModel,
    *,
    hours: float,
    now: dt.datetime | None = None,
) -> Claim:
    """The record for ``key`` from this caller on this route: new, or the earlier one if it
    was sent with the same body; :class:`IdempotencyKeyReused` if with another body."""
    now = now or utcnow()
    owner = f"user:{principal.user_id}"
    key_hash = get_keyring().index("idempotency-key", key)
    request_hash = _request_hash(body)
    for _ in range(2):  # a concurrent first use of the same key wins the insert; re-read it
        record = session.exec(
            select(IdempotencyRecord).where(
                IdempotencyRecord.principal == owner,
                IdempotencyRecord.route == route,
                IdempotencyRecord.key_hash == key_hash,
            )
        ).first()
        if record is not None and record.expires_at <= now:
            session.delete(record)
            session.commit()
            record = None
        if record is not None:
            if record.request_hash != request_hash:
                raise IdempotencyKeyReused(
                    f"Idempotency-Key: this key was already used for a different {route} "
                    "request; send a new key for a new request (the same key is for retrying "
                    "the same request)"
                )
            return Claim(record.id, record.internal_key, record.status_code)  # type: ignore[arg-type]
        _prune_expired(session, now)
        record = IdempotencyRecord(
            principal=owner,
            route=route,
            key_hash=key_hash,
            request_hash=request_hash,
            internal_key=f"api:{uuid.uuid4().hex}",
            created_at=now,
            expires_at=now + dt.timedelta(hours=hours),
        )
        session.add(record)
        try:
            session.commit()
        except IntegrityError:
            session.rollback()
            continue
        return Claim(record.id, record.internal_key, None)  # type: ignore[arg-type]
    raise AssertionError("unreachable: the key was neither found nor inserted")  # pragma: no cover


def remember_result(session: Session, claim: Claim, resource_id: int, status_code: int) -> int:
    """Keep what the first request answered, so a replay answers the same; the status to
    answer with (the first request's, on a replay)."""
    record = session.get(IdempotencyRecord, claim.record_id)
    if record is not None and record.status_code is None:
        record.resource_id = resource_id
        record.status_code = status_code
        session.add(record)
        session.commit()
    return claim.status_code or status_code


def _prune_expired(session: Session, now: dt.datetime) -> None:
    """Forget a batch of expired keys (keeps the table to about a day of requests)."""
    expired = select(IdempotencyRecord.id).where(col(IdempotencyRecord.expires_at) <= now)
    ids = list(session.exec(expired.limit(_PRUNE_BATCH)).all())
    if ids:
        session.execute(delete(IdempotencyRecord).where(col(IdempotencyRecord.id).in_(ids)))
