"""Staff and integrator accounts, their API tokens, and the append-only audit log."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON
from sqlmodel import Field, SQLModel

from suifang.core.db import UTCDateTime
from suifang.core.models.base import TimestampField

__all__ = ["ApiToken", "AuditLog", "StaffUser"]


class StaffUser(SQLModel, table=True):
    __tablename__ = "staff_user"

    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(max_length=64, unique=True, regex=r"^[a-z0-9][a-z0-9._-]*$")
    display_name: str = Field(max_length=128)
    role: str = Field(max_length=16, description="admin, agent, nurse, doctor, integrator, auditor")
    departments: list[str] = Field(default_factory=list, sa_type=JSON)
    active: bool = True
    created_at: dt.datetime = TimestampField()


class ApiToken(SQLModel, table=True):
    """Only the SHA-256 of a token is kept; the token itself is shown once, at creation."""

    __tablename__ = "api_token"

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="staff_user.id", index=True, ondelete="CASCADE")
    name: str = Field(max_length=64)
    token_hash: str = Field(max_length=64, unique=True)
    prefix: str = Field(max_length=16, description="The first characters, to recognise a token.")
    created_at: dt.datetime = TimestampField()
    expires_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    revoked_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_used_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    # An integrator token is limited to departments and to scopes (the routes a feed needs),
    # unless it was deliberately created hospital-wide (``unscoped``). Staff tokens carry
    # neither: their account's role and departments decide.
    departments: list[str] = Field(
        default_factory=list, sa_type=JSON, description="An integrator token's departments."
    )
    scopes: list[str] = Field(
        default_factory=list, sa_type=JSON, description="An integrator token's scopes: intake…"
    )
    unscoped: bool = Field(
        default=False, description="An integrator token created hospital-wide, on purpose."
    )


class AuditLog(SQLModel, table=True):
    """One record per read or change of patient data. Append-only: nothing updates or deletes
    these rows (and on PostgreSQL and SQLite, triggers refuse to)."""

    __tablename__ = "audit_log"

    id: int | None = Field(default=None, primary_key=True)
    at: dt.datetime = TimestampField(index=True)
    actor: str = Field(max_length=64, index=True)
    role: str = Field(max_length=16)
    action: str = Field(max_length=96, description="e.g. GET /journeys/{enrollment_id}")
    resource: str = Field(max_length=64, index=True)
    resource_id: str | None = Field(default=None, max_length=64)
    patient_id: int | None = Field(default=None, index=True)
    outcome: str = Field(max_length=16, description="ok, denied, invalid, error")
    status_code: int | None = None
    request_id: str = Field(max_length=64, index=True)
    detail: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
