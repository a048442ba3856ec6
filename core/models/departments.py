"""Hospital departments: owners of journeys (discharge department) and ticket queues."""

from __future__ import annotations

import datetime as dt

from sqlmodel import Field, SQLModel

from suifang.core.models.base import TimestampField

__all__ = ["Department", "DepartmentBase", "DepartmentCreate", "DepartmentPublic"]


class DepartmentBase(SQLModel):
    code: str = Field(
        primary_key=True,
        max_length=64,
        regex=r"^[a-z0-9][a-z0-9_-]*$",
        description="Short stable id, e.g. cardiology, logistics.",
    )
    name_zh: str = Field(
        max_length=128, description="Name shown to Chinese-speaking patients, e.g. 心内科."
    )
    name_en: str = Field(max_length=128, description="Name shown to English-speaking patients.")
    clinical: bool = Field(
        True, description="Clinical departments own journeys and clinical tickets."
    )
    supervisor_email: str | None = Field(None, max_length=254)


class Department(DepartmentBase, table=True):
    created_at: dt.datetime = TimestampField()


class DepartmentCreate(DepartmentBase):
    pass


class DepartmentPublic(DepartmentBase):
    created_at: dt.datetime
