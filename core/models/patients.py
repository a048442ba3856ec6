"""Patients and their contact points. Sensitive values are encrypted at rest.

Contact points are looked up by a keyed hash (``value_hash``) so an inbound SMS can be
matched to its patient without storing the number in the clear; the MRN likewise
(``external_id_hash``), so intake finds a returning patient without it. A patient may have
several contacts per system; the one in use is the most recently preferred that is not
retired (:mod:`suifang.core.contacts`).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, UniqueConstraint
from sqlalchemy.engine.default import DefaultExecutionContext
from sqlmodel import Field, SQLModel

from suifang.core.db import UTCDateTime
from suifang.core.models.base import TimestampField
from suifang.core.security.crypto import EncryptedDate, EncryptedText, identifier_index

__all__ = ["ContactPoint", "Patient"]

"""phone serves SMS and voice; wechat holds an official-account openid; app a push user id."""


def _mrn_index(context: DefaultExecutionContext) -> str:
    """Every insert, ORM or statement, gets the MRN's keyed hash without naming it."""
    return identifier_index("mrn", context.get_current_parameters()["external_id"])


class Patient(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    external_id: str = Field(sa_type=EncryptedText, description="MRN / 病历号 in the HIS.")
    external_id_hash: str | None = Field(
        default=None,
        max_length=64,
        unique=True,
        nullable=False,
        sa_column_kwargs={"default": _mrn_index},
        description="Keyed hash of the MRN: how intake finds a returning patient.",
    )
    name: str = Field(sa_type=EncryptedText)
    sex: str | None = Field(default=None, max_length=16)
    birth_date: dt.date | None = Field(default=None, sa_type=EncryptedDate)
    locale: str = Field(default="zh-CN", max_length=8)
    timezone: str = Field(default="Asia/Shanghai", max_length=64)
    preferred_channels: list[str] = Field(default_factory=list, sa_type=JSON)
    id_number: str | None = Field(default=None, sa_type=EncryptedText, description="身份证号")
    id_number_hash: str | None = Field(default=None, max_length=64, index=True)
    address: str | None = Field(default=None, sa_type=EncryptedText)
    contact_consent: bool = True
    consent_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    consent_source: str | None = Field(default=None, max_length=64)
    do_not_contact: bool = False
    do_not_contact_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    do_not_contact_source: str | None = Field(default=None, max_length=64)
    deceased_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: dt.datetime = TimestampField()
    updated_at: dt.datetime = TimestampField()

    @property
    def contactable(self) -> bool:
        return self.contact_consent and not self.do_not_contact and self.deceased_at is None


class ContactPoint(SQLModel, table=True):
    __tablename__ = "contact_point"
    __table_args__ = (UniqueConstraint("patient_id", "system", "value_hash"),)

    id: int | None = Field(default=None, primary_key=True)
    patient_id: int = Field(foreign_key="patient.id", index=True, ondelete="CASCADE")
    system: str = Field(max_length=64)
    value: str = Field(sa_type=EncryptedText)
    value_hash: str = Field(max_length=64, index=True)
    created_at: dt.datetime = TimestampField()
    preferred_at: dt.datetime = TimestampField()
    """When this became the contact in use for its system: the newest wins (a discharge that
    gives it again, or staff preferring it)."""
    retired_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    """Set when staff retire it (a wrong or given-up number): kept as history, never used."""
    retired_by: str | None = Field(default=None, max_length=64)
    failed_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    """When a channel said the address itself is wrong or gone (a permanent recipient error):
    not used again until staff prefer it (confirmed) or a new one arrives."""
    failed_reason: str | None = Field(default=None, max_length=256)
