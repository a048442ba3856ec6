"""A patient's health record (健康档案): everything follow-up knows about them, in one place.

Read-only: encounters, journeys with their touchpoints, answers and observations, alerts with
how each was handled, tickets, messages, and call recordings (随访电话录音: the voice
channel's recording callbacks). Decrypted here, for a caller the API or CLI has already
scoped to the patient's departments and audited.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from pydantic import BaseModel, Field
from sqlmodel import Session, col, select

from suifang.core.errors import NotFoundError
from suifang.core.models import (
    Alert,
    Answer,
    Encounter,
    Enrollment,
    InboundRecord,
    Message,
    Observation,
    Patient,
    PatientTag,
    PatientTagChange,
    Ticket,
    TouchpointRecord,
)

__all__ = ["HealthRecord", "age_on", "health_record"]


class PatientSummary(BaseModel):
    id: int
    name: str
    sex: str | None
    birth_date: dt.date | None
    age: int | None = Field(description="Whole years today.")
    locale: str
    timezone: str
    contactable: bool
    do_not_contact: bool
    deceased_at: dt.datetime | None


class EncounterEntry(BaseModel):
    id: int
    kind: str
    department: str
    ward: str | None
    admitted_at: dt.datetime | None
    discharged_at: dt.datetime
    length_of_stay_days: float | None
    diagnosis_codes: list[str]
    diagnosis_text: str | None


class TouchpointEntry(BaseModel):
    key: str
    day: int
    status: str
    due_at: dt.datetime
    sent_at: dt.datetime | None
    answered_at: dt.datetime | None


class JourneyEntry(BaseModel):
    enrollment_id: int
    encounter_id: int
    pathway_id: str
    pathway_version: int
    department: str
    status: str
    risk_tier: str
    variants: list[str]
    groups: list[str]
    enrolled_at: dt.datetime
    ended_at: dt.datetime | None
    points: int
    touchpoints: list[TouchpointEntry]


class AnswerEntry(BaseModel):
    enrollment_id: int
    touchpoint_key: str | None
    question_id: str = Field(description="'_text' for a free-text reply.")
    value: Any
    text: str | None
    channel: str | None
    received_at: dt.datetime


class ObservationEntry(BaseModel):
    indicator: str
    value: float
    unit: str | None
    observed_at: dt.datetime
    source: str = Field(description="questionnaire, lab (HL7/FHIR), device…")


class AlertEntry(BaseModel):
    id: int
    rule_id: str
    tier: str
    priority: str
    category: str
    summary: str = Field(description="In the record's language.")
    created_at: dt.datetime
    ticket_id: int | None
    handled: str = Field(
        description="How it was handled: its ticket's status (resolved, closed…), or 'no ticket'."
    )


class TicketEntry(BaseModel):
    id: int
    source: str
    category: str
    tier: str
    priority: str
    status: str
    department: str | None
    opened_at: dt.datetime
    first_response_at: dt.datetime | None
    resolved_at: dt.datetime | None
    breached: bool
    satisfaction: int | None


class MessageEntry(BaseModel):
    id: int
    kind: str
    channel: str | None
    status: str
    touchpoint_key: str | None
    created_at: dt.datetime
    sent_at: dt.datetime | None


class RecordingEntry(BaseModel):
    inbound_id: int
    channel: str
    url: str = Field(description="The provider's recording: open it to play the call.")
    duration_seconds: float | None
    provider_message_id: str | None
    received_at: dt.datetime


class TagEntry(BaseModel):
    tag: str
    since: dt.datetime


class TagChangeEntry(BaseModel):
    tag: str
    change: str = Field(description="added or removed")
    reason: str = Field(description="What was being recorded: intake, answers, observations…")
    at: dt.datetime


class HealthRecord(BaseModel):
    """健康档案: one patient's follow-up, newest first within each part."""

    patient: PatientSummary
    tags: list[TagEntry] = Field(description="Auto-tags the patient has now (自动标签).")
    tag_history: list[TagChangeEntry] = Field(description="Every tag given or taken away.")
    encounters: list[EncounterEntry]
    journeys: list[JourneyEntry]
    answers: list[AnswerEntry]
    observations: list[ObservationEntry]
    alerts: list[AlertEntry]
    tickets: list[TicketEntry]
    messages: list[MessageEntry]
    recordings: list[RecordingEntry]


def age_on(birth_date: dt.date | None, day: dt.date) -> int | None:
    """Whole years on ``day``."""
    if birth_date is None:
        return None
    before_birthday = (day.month, day.day) < (birth_date.month, birth_date.day)
    return day.year - birth_date.year - before_birthday


def health_record(
    session: Session, patient_id: int, *, locale: str = "zh-CN", today: dt.date | None = None
) -> HealthRecord:
    """The patient's whole record (raises NotFoundError for an unknown patient)."""
    patient = session.get(Patient, patient_id)
    if patient is None:
        raise NotFoundError(f"patient {patient_id} not found")
    today = today or dt.datetime.now(dt.UTC).date()

    def rows(model: Any, order: Any) -> list[Any]:
        query = select(model).where(model.patient_id == patient_id)
        return list(session.exec(query.order_by(col(order).desc(), col(model.id).desc())).all())

    enrollments = rows(Enrollment, Enrollment.enrolled_at)
    touchpoints = _touchpoints(session, [e.id for e in enrollments if e.id is not None])
    tickets = rows(Ticket, Ticket.opened_at)
    ticket_status = {t.id: t.status for t in tickets}
    return HealthRecord(
        patient=PatientSummary(
            id=patient_id,
            name=patient.name,
            sex=patient.sex,
            birth_date=patient.birth_date,
            age=age_on(patient.birth_date, today),
            locale=patient.locale,
            timezone=patient.timezone,
            contactable=patient.contactable,
            do_not_contact=patient.do_not_contact,
            deceased_at=patient.deceased_at,
        ),
        tags=[
            TagEntry(tag=t.tag, since=t.since)
            for t in session.exec(
                select(PatientTag)
                .where(PatientTag.patient_id == patient_id)
                .order_by(col(PatientTag.tag))
            )
        ],
        tag_history=[
            TagChangeEntry(tag=c.tag, change=c.change, reason=c.reason, at=c.at)
            for c in rows(PatientTagChange, PatientTagChange.at)
        ],
        encounters=[
            EncounterEntry(
                id=e.id,
                kind=e.kind,
                department=e.department_code,
                ward=e.ward,
                admitted_at=e.admitted_at,
                discharged_at=e.discharged_at,
                length_of_stay_days=e.length_of_stay_days,
                diagnosis_codes=list(e.diagnosis_codes or []),
                diagnosis_text=e.diagnosis_text,
            )
            for e in rows(Encounter, Encounter.discharged_at)
        ],
        journeys=[
            JourneyEntry(
                enrollment_id=e.id,
                encounter_id=e.encounter_id,
                pathway_id=e.pathway_id,
                pathway_version=e.pathway_version,
                department=e.department_code,
                status=e.status,
                risk_tier=e.risk_tier,
                variants=list(e.variants or []),
                groups=list(e.groups or []),
                enrolled_at=e.enrolled_at,
                ended_at=e.ended_at,
                points=e.points,
                touchpoints=touchpoints.get(e.id, []),
            )
            for e in enrollments
        ],
        answers=[
            AnswerEntry(
                enrollment_id=a.enrollment_id,
                touchpoint_key=a.touchpoint_key,
                question_id=a.question_id,
                value=a.value,
                text=a.text,
                channel=a.channel,
                received_at=a.received_at,
            )
            for a in rows(Answer, Answer.received_at)
        ],
        observations=[
            ObservationEntry(
                indicator=o.indicator,
                value=o.value,
                unit=o.unit,
                observed_at=o.observed_at,
                source=o.source,
            )
            for o in rows(Observation, Observation.observed_at)
        ],
        alerts=[
            AlertEntry(
                id=a.id,
                rule_id=a.rule_id,
                tier=a.tier,
                priority=a.priority,
                category=a.category,
                summary=a.summary_en if locale == "en" else a.summary_zh,
                created_at=a.created_at,
                ticket_id=a.ticket_id,
                handled=ticket_status.get(a.ticket_id, "no ticket") if a.ticket_id else "no ticket",
            )
            for a in rows(Alert, Alert.created_at)
        ],
        tickets=[
            TicketEntry(
                id=t.id,
                source=t.source,
                category=t.category,
                tier=t.tier,
                priority=t.priority,
                status=t.status,
                department=t.department_code,
                opened_at=t.opened_at,
                first_response_at=t.first_response_at,
                resolved_at=t.resolved_at,
                breached=t.breached,
                satisfaction=t.satisfaction,
            )
            for t in tickets
        ],
        messages=[
            MessageEntry(
                id=m.id,
                kind=m.kind,
                channel=m.channel,
                status=m.status,
                touchpoint_key=m.touchpoint_key,
                created_at=m.created_at,
                sent_at=m.sent_at,
            )
            for m in rows(Message, Message.created_at)
            if m.recipient is None  # a page to staff is not the patient's record
        ],
        recordings=_recordings(rows(InboundRecord, InboundRecord.received_at)),
    )


def _touchpoints(session: Session, enrollment_ids: list[int]) -> dict[int, list[TouchpointEntry]]:
    found: dict[int, list[TouchpointEntry]] = {}
    if not enrollment_ids:
        return found
    query = (
        select(TouchpointRecord)
        .where(col(TouchpointRecord.enrollment_id).in_(enrollment_ids))
        .order_by(col(TouchpointRecord.due_at), col(TouchpointRecord.id))
    )
    for t in session.exec(query):
        found.setdefault(t.enrollment_id, []).append(
            TouchpointEntry(
                key=t.key,
                day=t.day,
                status=t.status,
                due_at=t.due_at,
                sent_at=t.sent_at,
                answered_at=t.answered_at,
            )
        )
    return found


def _recordings(records: list[InboundRecord]) -> list[RecordingEntry]:
    """Call recordings: a voice provider's callbacks that carry a recording URL."""
    found = []
    for record in records:
        if "recording_url" not in record.payload:
            continue
        try:
            payload = json.loads(record.payload)
        except ValueError:
            continue
        for item in payload.get("items", [payload]) if isinstance(payload, dict) else []:
            extra = item.get("extra") if isinstance(item, dict) else None
            url = (extra or {}).get("recording_url") if isinstance(extra, dict) else None
            if isinstance(url, str) and url:
                duration = extra.get("recording_duration")
                found.append(
                    RecordingEntry(
                        inbound_id=record.id,
                        channel=record.channel,
                        url=url,
                        duration_seconds=float(duration) if _number(duration) else None,
                        provider_message_id=item.get("provider_message_id"),
                        received_at=record.received_at,
                    )
                )
    return found


def _number(value: object) -> bool:
    try:
        float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return True
