"""The pathway catalogue administrators manage: each version of a pathway's YAML, by status.

A version is imported as a *draft* (``suifang pathways add``, ``POST /pathways``), which may be
replaced until it is *published*; a published version is immutable and open for enrollment
until it is *retired* (running journeys keep their plan whatever happens here).
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from suifang.core.db import UTCDateTime
from suifang.core.models.base import TimestampField

__all__ = ["PATHWAY_STATUSES", "PathwayVersion"]

PATHWAY_STATUSES = ("draft", "published", "retired")


class PathwayVersion(SQLModel, table=True):
    __tablename__ = "pathway_version"
    __table_args__ = (sa.UniqueConstraint("pathway_id", "version"),)

    id: int | None = Field(default=None, primary_key=True)
    pathway_id: str = Field(max_length=64, index=True)
    version: int
    status: str = Field(max_length=16, description="draft, published or retired")
    source: str = Field(sa_type=sa.Text, description="The YAML as the administrator wrote it.")
    created_by: str = Field(max_length=128)
    created_at: dt.datetime = TimestampField()
    changed_at: dt.datetime = TimestampField(index=True)
    published_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    retired_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
