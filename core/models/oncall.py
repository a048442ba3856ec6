"""Who answers an emergency: staff contact points, on-call shifts and each department's paging.

A page goes to the department's on-call clinician now (a dated shift, else a weekly one),
then the backup, the supervisor and the hospital duty office (总值班), each after the
department's escalation delay; the rosters are imported from YAML (``suifang oncall import``)
and resolved by :mod:`suifang.tickets.oncall`. Staff contact values are encrypted at rest and
found by a keyed hash, as patients' are, so a reply to a page can be matched to its sender.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, UniqueConstraint
from sqlmodel import Field, SQLModel

from suifang.core.db import UTCDateTime
from suifang.core.models.base import TimestampField
from suifang.core.security.crypto import EncryptedText

__all__ = ["DUTY_OFFICE", "ON_CALL_ROLES", "OnCallShift", "PagingPolicy", "StaffContact"]

DUTY_OFFICE = "duty_office"
"""The department code of the hospital duty office (总值班室), the last step of every chain."""
ON_CALL_ROLES = ("primary", "backup", "supervisor")


class StaffContact(SQLModel, table=True):
    """How a member of staff is reached: ``system`` (phone, email, wechat_work, …) and value."""

    __tablename__ = "staff_contact"
    __table_args__ = (UniqueConstraint("user_id", "system", "value_hash"),)

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="staff_user.id", index=True, ondelete="CASCADE")
    system: str = Field(max_length=32)
    value: str = Field(sa_type=EncryptedText)
    value_hash: str = Field(max_length=64, index=True)
    rank: int = 1


class OnCallShift(SQLModel, table=True):
    """One line of a department's roster: who holds a role, and when.

    Dated (``starts_at``/``ends_at``), weekly (``weekdays`` with local ``start_time``–
    ``end_time``, overnight when the end is earlier), or standing (neither): a dated line
    beats a weekly one, a weekly one a standing one.
    """

    __tablename__ = "on_call_shift"

    id: int | None = Field(default=None, primary_key=True)
    department_code: str = Field(foreign_key="department.code", index=True, max_length=64)
    role: str = Field(max_length=16, description="primary, backup or supervisor")
    username: str = Field(max_length=64)
    starts_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    ends_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    weekdays: list[int] | None = Field(default=None, sa_type=JSON, description="0 = Monday")
    start_time: str | None = Field(default=None, max_length=5, description="HH:MM local")
    end_time: str | None = Field(default=None, max_length=5)
    timezone: str = Field(default="Asia/Shanghai", max_length=64)
    created_at: dt.datetime = TimestampField()


class PagingPolicy(SQLModel, table=True):
    """How a department is paged: channels in order and the escalation delays."""

    __tablename__ = "paging_policy"

    department_code: str = Field(foreign_key="department.code", primary_key=True, max_length=64)
    channels: list[str] = Field(default_factory=list, sa_type=JSON)
    escalate_after_seconds: list[int] = Field(default_factory=list, sa_type=JSON)
    """After the i-th page without acknowledgement, wait this long before the next; the last
    value repeats."""
    repeat_final: int = Field(default=3, ge=0, le=20)
    """How many more times the last person of the chain is paged before it is given up."""
    updated_at: dt.datetime = TimestampField()
