"""What hospital systems send us, kept: HL7 v2 messages and the HIS's department codes.

- :class:`Hl7Message`: every HL7 v2 message received (MLLP or HTTP), its raw bytes encrypted,
  with what was done with it and the ACK it got. One row per sender and control id (MSH-10),
  so a resend is answered with the same ACK and has no second effect; a message that failed
  can be processed again after a mapping fix (``suifang hl7 reprocess``).
- :class:`HisDepartmentCode`: a HIS department code (PV1-10, PV1-3) and the suifang
  department it means, seeded from ``templates/his_departments.yaml`` and edited by staff.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from suifang.core.db import UTCDateTime
from suifang.core.models.base import TimestampField
from suifang.core.security.crypto import EncryptedText

__all__ = ["HL7_STATUSES", "HisDepartmentCode", "Hl7Message"]

HL7_STATUSES = ("received", "processing", "processed", "error", "rejected")
"""received: stored, not yet acted on (a crash here leaves it for reprocessing); processing:
being acted on (a resend meanwhile is told to resend later); processed:
acted on, AA; error: content we could not use, AE; rejected: not a message we take, AR."""


class Hl7Message(SQLModel, table=True):
    __tablename__ = "hl7_message"
    __table_args__ = (sa.UniqueConstraint("sender", "control_id"),)

    id: int | None = Field(default=None, primary_key=True)
    sender: str = Field(max_length=128, description="MSH-3^MSH-4: sending application, facility")
    control_id: str = Field(max_length=64, description="MSH-10, unique per sender")
    message_type: str = Field(max_length=16, description="MSH-9, e.g. ADT^A03")
    encoding: str = Field(max_length=32, description="The charset the bytes were decoded with")
    transport: str = Field(max_length=8, description="mllp or http")
    raw: str = Field(sa_type=EncryptedText, description="The bytes as received, base64")
    status: str = Field(max_length=16, index=True)
    ack_code: str | None = Field(default=None, max_length=2)
    ack: str | None = Field(
        default=None, sa_type=EncryptedText, description="The ACK we sent (ER7; may quote PHI)"
    )
    error: str | None = Field(default=None, sa_type=EncryptedText, description="May quote PHI")
    patient_id: int | None = Field(default=None, foreign_key="patient.id", ondelete="SET NULL")
    enrollment_id: int | None = Field(default=None)
    attempts: int = 1
    received_at: dt.datetime = TimestampField(index=True)
    processed_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)


class HisDepartmentCode(SQLModel, table=True):
    __tablename__ = "his_department_code"

    his_code: str = Field(primary_key=True, max_length=64)
    department_code: str = Field(foreign_key="department.code", max_length=64)
    changed_at: dt.datetime = TimestampField()
