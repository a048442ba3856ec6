"""Idempotency keys the API has seen: per caller and route, bound to the request's body."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

from suifang.core.db import UTCDateTime
from suifang.core.models.base import TimestampField

__all__ = ["IdempotencyRecord"]


class IdempotencyRecord(SQLModel, table=True):
    """One ``Idempotency-Key`` a caller sent to one route, and what it created.

    The key and the body are kept only as keyed hashes: a client may put anything in a key,
    and a body holds patient data.
    """

    __tablename__ = "idempotency_record"
    __table_args__ = (UniqueConstraint("principal", "route", "key_hash"),)

    id: int | None = Field(default=None, primary_key=True)
    principal: str = Field(max_length=64, description="The calling account: user:<id>.")
    route: str = Field(max_length=96, description="e.g. POST /tickets")
    key_hash: str = Field(max_length=64)
    request_hash: str = Field(max_length=64)
    internal_key: str = Field(
        max_length=40, unique=True, description="What the guarded resource is stored under."
    )
    resource_id: int | None = None
    status_code: int | None = None
    created_at: dt.datetime = TimestampField()
    expires_at: dt.datetime = Field(sa_type=UTCDateTime, index=True)
