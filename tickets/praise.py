"""Thanks from patients: acknowledged, counted for the department, never opened as a ticket.

"谢谢，一切都好" after a follow-up call is good news, not work: a ticket would promise a
reply by Monday and sit in a queue. The triage policy marks such a message ``praise``; the
caller records it here (idempotent on the message's event key) and thanks the patient.
"""

from __future__ import annotations

import datetime as dt

from sqlmodel import Session, col, func, select

from suifang.core.models import PraiseRecord

__all__ = ["praise_by_department", "record_praise"]


def record_praise(
    session: Session,
    *,
    event_key: str,
    patient_id: int,
    text: str,
    received_at: dt.datetime,
    department: str | None,
    enrollment_id: int | None = None,
) -> tuple[PraiseRecord, bool]:
    """The praise row for ``event_key`` and whether it was created now (a retry finds it)."""
    existing = session.exec(select(PraiseRecord).where(PraiseRecord.event_key == event_key)).first()
    if existing is not None:
        return existing, False
    record = PraiseRecord(
        event_key=event_key,
        patient_id=patient_id,
        enrollment_id=enrollment_id,
        department_code=department,
        text=text[:4000],
        received_at=received_at,
    )
    session.add(record)
    session.commit()
    session.refresh(record)
    return record, True


def praise_by_department(
    session: Session, *, since: dt.datetime | None = None, until: dt.datetime | None = None
) -> dict[str, int]:
    """How many thanks each department received in the period (for the monthly review)."""
    query = select(PraiseRecord.department_code, func.count()).group_by(
        col(PraiseRecord.department_code)
    )
    if since is not None:
        query = query.where(col(PraiseRecord.received_at) >= since)
    if until is not None:
        query = query.where(col(PraiseRecord.received_at) < until)
    return {code or "": count for code, count in session.exec(query).all()}
