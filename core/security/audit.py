"""The audit log: one append-only record per read or change of patient data.

Nothing in suifang updates or deletes an audit record; on PostgreSQL and SQLite a trigger
refuses it too (migration 0004). Records say who (actor and role), what (action, resource,
patient), when, with what outcome, and the request id that ties them to traces.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from suifang.core.db import utcnow
from suifang.core.models import AuditLog

__all__ = ["outcome_of", "query_audit", "record_audit"]


def outcome_of(status_code: int) -> str:
    if status_code < 400:
        return "ok"
    if status_code in (401, 403, 404):
        return "denied" if status_code != 404 else "not_found"
    if status_code < 500:
        return "invalid"
    return "error"


def record_audit(
    engine: Engine,
    *,
    actor: str,
    role: str,
    action: str,
    resource: str,
    request_id: str,
    outcome: str,
    patient_ids: list[int] | None = None,
    resource_id: str | None = None,
    status_code: int | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Write the record(s): one per patient touched (or one without a patient)."""
    patients: list[int | None] = list(dict.fromkeys(patient_ids or [])) or [None]
    with Session(engine) as session:
        now = utcnow()
        for patient_id in patients:
            session.add(
                AuditLog(
                    at=now,
                    actor=actor[:64],
                    role=role[:16],
                    action=action[:96],
                    resource=resource[:64],
                    resource_id=resource_id[:64] if resource_id else None,
                    patient_id=patient_id,
                    outcome=outcome,
                    status_code=status_code,
                    request_id=request_id[:64],
                    detail=detail or {},
                )
            )
        session.commit()


def query_audit(
    session: Session,
    *,
    actor: str | None = None,
    patient_id: int | None = None,
    resource: str | None = None,
    outcome: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    limit: int = 100,
) -> list[AuditLog]:
    query = select(AuditLog)
    if actor:
        query = query.where(AuditLog.actor == actor)
    if patient_id is not None:
        query = query.where(AuditLog.patient_id == patient_id)
    if resource:
        query = query.where(AuditLog.resource == resource)
    if outcome:
        query = query.where(AuditLog.outcome == outcome)
    if since:
        query = query.where(col(AuditLog.at) >= since)
    if until:
        query = query.where(col(AuditLog.at) < until)
    return list(session.exec(query.order_by(col(AuditLog.id).desc()).limit(limit)).all())
