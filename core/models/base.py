"""Conventions every table shares: constraint names, UTC timestamps."""

from __future__ import annotations

from typing import Any

from sqlmodel import Field, SQLModel

from suifang.core.db import UTCDateTime, utcnow

__all__ = ["TimestampField", "metadata"]

# Deterministic constraint names keep Alembic diffs identical on SQLite and PostgreSQL.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = SQLModel.metadata


def TimestampField(*, default_now: bool = True, index: bool = False, nullable: bool = False) -> Any:
    """A timezone-aware UTC timestamp column (``created_at = TimestampField()``)."""
    if default_now:
        return Field(default_factory=utcnow, sa_type=UTCDateTime, index=index, nullable=nullable)
    return Field(default=None, sa_type=UTCDateTime, index=index, nullable=nullable)
