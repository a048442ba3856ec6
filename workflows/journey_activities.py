"""The journey's side effects, as idempotent Temporal activities.

Each activity carries the ``event_key`` of the command it carries out (workflow id + the
command's sequence number, stable across retries and replays), and writes under a unique
constraint on it: a retried activity changes nothing the first attempt already changed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, Field
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from suifang.core.db import utcnow
from suifang.core.enums import JourneyStatus, Priority, TicketSource, Tier, TouchpointStatus
from suifang.core.models import (
    Alert,
    Answer,
    Department,
    Enrollment,
    Observation,
    Patient,
    PointsEntry,
    TouchpointRecord,
)
from suifang.core.pathways import LocalizedText, Questionnaire, SendWindow
from suifang.core.runtime import Runtime
from suifang.core.triage import TriageResult
from suifang.tickets.service import TicketStart, build_ticket
from suifang.workflows.delivery import DeliveryRequest, RetryableDelivery, deliver
from suifang.workflows.journey_core import (
    GreetingBatch,
    GreetingOccasion,
    ObservationValue,
    SendOutcome,
)
from suifang.workflows.rendering import MessageContext, MessageRenderer, address_patient

__all__ = [
    "AlertInput",
    "AnswersInput",
    "GreetingsInput",
    "JourneyActivities",
    "JourneyMessageInput",
    "JourneyTicketInput",
    "ObservationsInput",
    "PointsInput",
    "RecordBatch",
    "RecordItem",
    "StatusInput",
    "TouchpointInput",
]


class JourneyMessageInput(BaseModel):
    idempotency_key: str
    enrollment_id: int
    patient_id: int
    kind: Literal["touchpoint", "reminder", "greeting", "advice"]
    touchpoint_key: str | None = None
    message: LocalizedText | None = None
    questionnaire: Questionnaire | None = None
    greeting: str | None = None
    day: int | None = None
    reminder: int = 0
    channels: list[str]
    window: SendWindow | None = None
    respect_quiet_hours: bool = True


class TouchpointInput(BaseModel):
    record: Literal["touchpoint"] = "touchpoint"
    enrollment_id: int
    key: str
    touchpoint_id: str
    day: int
    status: TouchpointStatus
    due_at: dt.datetime
    at: dt.datetime
    detail: str | None = None


class AnswersInput(BaseModel):
    record: Literal["answers"] = "answers"
    event_key: str
    enrollment_id: int
    patient_id: int
    touchpoint_key: str | None
    answers: dict[str, Any]
    invalid: dict[str, str] = Field(default_factory=dict)
    observations: list[ObservationValue] = Field(default_factory=list)
    text: str | None = None
    at: dt.datetime
    late: bool = False
    channel: str | None = None
    source: str = "patient"


class ObservationsInput(BaseModel):
    record: Literal["observations"] = "observations"
    event_key: str
    enrollment_id: int
    patient_id: int
    observations: list[ObservationValue]
    at: dt.datetime
    source: str


class AlertInput(BaseModel):
    record: Literal["alert"] = "alert"
    event_key: str
    enrollment_id: int
    patient_id: int
    rule_id: str
    touchpoint_key: str | None
    tier: Tier
    priority: Priority
    category: str
    summary: LocalizedText
    evidence: dict[str, Any] = Field(default_factory=dict)
    at: dt.datetime | None = None
    """The journey's clock when the alert was raised (absent from journeys before 2026-11-23)."""


class JourneyTicketInput(BaseModel):
    """A ticket the journey opens: for the alerts of one answer, or a call for a person."""

    event_key: str
    enrollment_id: int
    patient_id: int
    source: TicketSource
    touchpoint_key: str | None
    tier: Tier
    priority: Priority
    category: str
    summary: LocalizedText
    alert_event_keys: list[str] = Field(default_factory=list)


class PointsInput(BaseModel):
    record: Literal["points"] = "points"
    event_key: str
    enrollment_id: int
    patient_id: int
    touchpoint_key: str
    points: int


class StatusInput(BaseModel):
    record: Literal["status"] = "status"
    enrollment_id: int
    status: JourneyStatus
    reason: str | None
    at: dt.datetime


RecordItem = Annotated[
    TouchpointInput | AnswersInput | ObservationsInput | AlertInput | PointsInput | StatusInput,
    Field(discriminator="record"),
]


class RecordBatch(BaseModel):
    """Records a journey made between two sends or waits, written in the order it made them."""

    items: list[RecordItem]


class GreetingsInput(BaseModel):
    patient_id: int
    after: dt.date
    days: int = 365


NON_CLINICAL = {"call_task", "other", "billing", "parking", "food", "environment", "appointment"}
CALL_TASK_SUMMARY = {
    "lost_to_follow_up": LocalizedText.model_validate(
        {
            "zh-CN": "失访:连续多次随访未回复,请电话联系患者",
            "en": "Lost to follow-up: please phone the patient",
        }
    ),
    "undeliverable": LocalizedText.model_validate(
        {
            "zh-CN": "所有渠道均无法送达,请电话随访",
            "en": "No channel could reach the patient: please phone",
        }
    ),
}


class JourneyActivities:
    """Activities of the journey workflow, bound to one runtime (DB engine, plugins)."""

    def __init__(self, runtime: Runtime) -> None:
        # Everything else comes from the runtime at call time (tests switch it per test).
        self.runtime = runtime
        self.renderer = MessageRenderer()

    def all(self) -> list[Any]:
        return [
            self.send_journey_message,
            self.record_batch,
            self.record_touchpoint,
            self.record_answers,
            self.record_observations,
            self.raise_alert,
            self.prepare_journey_ticket,
            self.credit_points,
            self.set_journey_status,
            self.extend_greetings,
        ]

    # ----------------------------------------------------------------- messages

    def _context(
        self, session: Session, patient: Patient, enrollment: Enrollment, day: int | None
    ) -> MessageContext:
        department = session.get(Department, enrollment.department_code)
        department_name = ""
        if department is not None:
            department_name = department.name_en if patient.locale == "en" else department.name_zh
        today = utcnow().date()
        return MessageContext(
            name=address_patient(
                patient.name,
                sex=patient.sex,
                birth_date=patient.birth_date,
                locale=patient.locale,
                today=today,
            ),
            department=department_name,
            hospital=self.runtime.settings.hospital_name,
            day=day,
            points=enrollment.points,
        )

    def _outside_window(self, patient: Patient, window: SendWindow) -> dt.datetime | None:
        """When sending now would break the patient's quiet hours, the next allowed instant.

        "Now" is when Temporal scheduled this attempt: the workflow's clock, which is the
        wall clock in production and the skipped-ahead clock in tests.
        """
        from zoneinfo import ZoneInfo

        zone = ZoneInfo(patient.timezone)
        local = activity.info().current_attempt_scheduled_time.astimezone(zone)
        if window.contains(local.time()):
            return None
        day = local.date() + (
            dt.timedelta(days=1) if local.time() >= window.end else dt.timedelta(0)
        )
        return dt.datetime.combine(day, window.start, tzinfo=zone).astimezone(dt.UTC)

    @activity.defn(name="send_journey_message")
    async def send_journey_message(self, request: JourneyMessageInput) -> SendOutcome:
        with Session(self.runtime.engine, expire_on_commit=False) as session:
            patient = session.get(Patient, request.patient_id)
            enrollment = session.get(Enrollment, request.enrollment_id)
            if patient is None or enrollment is None:
                raise ApplicationError("patient or enrollment missing", non_retryable=True)
            if request.respect_quiet_hours and request.window and enrollment.time_scale == 1:
                retry_at = self._outside_window(patient, request.window)
                if retry_at is not None and request.kind != "advice":
                    return SendOutcome(delivered=False, suppressed="quiet_hours", retry_at=retry_at)
            context = self._context(session, patient, enrollment, request.day)
        locale = patient.locale
        if request.kind == "greeting":
            from suifang.workflows.greetings import load_greeting_texts

            texts = load_greeting_texts()
            text = texts.get(request.greeting or "")
            if text is None:
                raise ApplicationError(
                    f"no greeting text for {request.greeting!r}", non_retryable=True
                )
            body = self.renderer.text(text.get(locale), locale, context)
            subject = body.split("。")[0].split(".")[0][:40]
        elif request.kind == "advice" and request.message is not None:
            body = self.renderer.text(request.message, locale, context)
            subject = body[:40]
        elif request.message is not None:
            rendered = self.renderer.touchpoint(
                request.message, request.questionnaire, locale, context, reminder=request.reminder
            )
            subject, body = rendered.subject, rendered.body
        else:
            raise ApplicationError("a touchpoint message needs its text", non_retryable=True)
        try:
            return await deliver(
                self.runtime.engine,
                self.runtime.channels,
                DeliveryRequest(
                    idempotency_key=request.idempotency_key,
                    patient_id=request.patient_id,
                    enrollment_id=request.enrollment_id,
                    kind=request.kind,
                    touchpoint_key=request.touchpoint_key,
                    subject=subject,
                    body=body,
                    locale=locale,
                    channels=request.channels,
                ),
                now=activity.info().current_attempt_scheduled_time,
            )
        except RetryableDelivery as exc:
            raise ApplicationError(str(exc), type="TransientChannelError") from None

    # ----------------------------------------------------------------- records
    #
    # Each record is a ``_write_*`` into a caller's session: the single-record activities
    # (journeys started before batching) commit one each, ``record_batch`` commits them all
    # at once.

    @activity.defn(name="record_batch")
    async def record_batch(self, batch: RecordBatch) -> None:
        """The records a journey made between two sends or waits, in one transaction."""
        with Session(self.runtime.engine, expire_on_commit=False) as session:
            for item in batch.items:
                self._WRITERS[type(item)](self, session, item)
            try:
                session.commit()
            except IntegrityError:
                # Another attempt of this batch committed first; the next attempt finds its
                # rows and writes nothing twice.
                session.rollback()
                raise ApplicationError(
                    "records of this batch were written concurrently; retrying",
                    type="ConcurrentRecord",
                ) from None

    @activity.defn(name="record_touchpoint")
    async def record_touchpoint(self, update: TouchpointInput) -> None:
        with Session(self.runtime.engine, expire_on_commit=False) as session:
            self._write_touchpoint(session, update)
            session.commit()

    def _write_touchpoint(self, session: Session, update: TouchpointInput) -> None:
        record = session.exec(
            select(TouchpointRecord).where(
                TouchpointRecord.enrollment_id == update.enrollment_id,
                TouchpointRecord.key == update.key,
            )
        ).first()
        if record is None:
            record = TouchpointRecord(
                enrollment_id=update.enrollment_id,
                key=update.key,
                touchpoint_id=update.touchpoint_id,
                day=update.day,
                status=update.status,
                due_at=update.due_at,
            )
        record.status = update.status
        record.due_at = update.due_at
        record.detail = update.detail
        record.updated_at = utcnow()
        if update.status == TouchpointStatus.SENT:
            record.sent_at = update.at
        elif update.status == TouchpointStatus.ANSWERED:
            record.answered_at = update.at
            record.closed_at = update.at
        elif update.status in (TouchpointStatus.MISSED, TouchpointStatus.SKIPPED):
            record.closed_at = update.at
        session.add(record)

    @activity.defn(name="record_answers")
    async def record_answers(self, record: AnswersInput) -> None:
        self._commit_once(self._write_answers, record)

    def _write_answers(self, session: Session, record: AnswersInput) -> bool:
        rows: list[Answer] = []
        for question_id, value in record.answers.items():
            rows.append(self._answer_row(record, question_id, value=value))
        for question_id, problem in record.invalid.items():
            rows.append(self._answer_row(record, question_id, invalid=problem))
        if record.text:
            rows.append(self._answer_row(record, "_text", text=record.text))
        observations = [
            Observation(
                event_key=record.event_key,
                patient_id=record.patient_id,
                enrollment_id=record.enrollment_id,
                indicator=o.indicator,
                value=o.value,
                unit=o.unit,
                observed_at=record.at,
                source="questionnaire",
            )
            for o in record.observations
        ]
        return self._add_once(session, record.event_key, Answer, [*rows, *observations])

    def _answer_row(self, record: AnswersInput, question_id: str, **values: Any) -> Answer:
        return Answer(
            event_key=record.event_key,
            enrollment_id=record.enrollment_id,
            patient_id=record.patient_id,
            touchpoint_key=record.touchpoint_key,
            question_id=question_id,
            late=record.late,
            channel=record.channel,
            source=record.source,
            received_at=record.at,
            **values,
        )

    @staticmethod
    def _add_once(session: Session, event_key: str, marker: type[Any], rows: list[Any]) -> bool:
        """Add ``rows`` unless this event was already recorded; True if added now."""
        if session.exec(select(marker).where(marker.event_key == event_key)).first() is not None:
            return False
        session.add_all(rows)
        return True

    def _commit_once(self, write: Callable[[Session, Any], bool], record: Any) -> bool:
        """One record in its own transaction; False if it was (or concurrently got) recorded."""
        with Session(self.runtime.engine) as session:
            if not write(session, record):
                return False
            try:
                session.commit()
            except IntegrityError:
                session.rollback()  # a concurrent attempt won the race: same rows, keep theirs
                return False
        return True

    @activity.defn(name="record_observations")
    async def record_observations(self, record: ObservationsInput) -> None:
        self._commit_once(self._write_observations, record)

    def _write_observations(self, session: Session, record: ObservationsInput) -> bool:
        rows = [
            Observation(
                event_key=record.event_key,
                patient_id=record.patient_id,
                enrollment_id=record.enrollment_id,
                indicator=o.indicator,
                value=o.value,
                unit=o.unit,
                observed_at=record.at,
                source=record.source,
            )
            for o in record.observations
        ]
        return self._add_once(session, record.event_key, Observation, rows)

    @activity.defn(name="raise_alert")
    async def raise_alert(self, alert: AlertInput) -> int:
        self._commit_once(self._write_alert, alert)
        with Session(self.runtime.engine) as session:
            stored = session.exec(select(Alert).where(Alert.event_key == alert.event_key)).one()
            return stored.id  # type: ignore[return-value]

    def _write_alert(self, session: Session, alert: AlertInput) -> bool:
        row = Alert(
            event_key=alert.event_key,
            enrollment_id=alert.enrollment_id,
            patient_id=alert.patient_id,
            rule_id=alert.rule_id,
            touchpoint_key=alert.touchpoint_key,
            tier=alert.tier,
            priority=alert.priority,
            category=alert.category,
            summary_zh=alert.summary.zh_cn,
            summary_en=alert.summary.en,
            evidence=alert.evidence,
            # The journey's clock, like the answer that raised it (the alert rate compares them).
            created_at=alert.at or activity.info().current_attempt_scheduled_time,
        )
        return self._add_once(session, alert.event_key, Alert, [row])

    @activity.defn(name="prepare_journey_ticket")
    async def prepare_journey_ticket(self, request: JourneyTicketInput) -> TicketStart:
        """Create the ticket row (once per event) and link its alerts; the workflow starts it."""
        with Session(self.runtime.engine, expire_on_commit=False) as session:
            alerts = list(
                session.exec(
                    select(Alert).where(col(Alert.event_key).in_(request.alert_event_keys))
                ).all()
            )
            start = build_ticket(
                session,
                patient_id=request.patient_id,
                source=request.source,
                summary=f"{request.summary.zh_cn} / {request.summary.en}",
                triage=TriageResult(
                    category=request.category,
                    urgency=request.priority,
                    confidence=1.0,
                    suggested_tier=request.tier,
                    clinical=request.category not in NON_CLINICAL,
                ),
                opened_at=activity.info().current_attempt_scheduled_time,
                enrollment_id=request.enrollment_id,
                alert_id=alerts[0].id if alerts else None,
                tier=request.tier,
                idempotency_key=request.event_key,
            )
            for alert in alerts:
                alert.ticket_id = start.ticket_id
                session.add(alert)
            session.commit()
            return start

    @activity.defn(name="credit_points")
    async def credit_points(self, credit: PointsInput) -> None:
        self._commit_once(self._write_points, credit)

    def _write_points(self, session: Session, credit: PointsInput) -> bool:
        entry = PointsEntry(
            event_key=credit.event_key,
            patient_id=credit.patient_id,
            enrollment_id=credit.enrollment_id,
            touchpoint_key=credit.touchpoint_key,
            points=credit.points,
            reason="follow-up completed",
        )
        if not self._add_once(session, credit.event_key, PointsEntry, [entry]):
            return False
        enrollment = session.get(Enrollment, credit.enrollment_id)
        if enrollment is not None:
            # The sum sees the entry just added (the session flushes before the query).
            enrollment.points = sum(
                session.exec(
                    select(PointsEntry.points).where(
                        PointsEntry.enrollment_id == credit.enrollment_id
                    )
                ).all()
            )
            session.add(enrollment)
        return True

    @activity.defn(name="set_journey_status")
    async def set_journey_status(self, update: StatusInput) -> None:
        with Session(self.runtime.engine, expire_on_commit=False) as session:
            self._write_status(session, update)
            session.commit()

    def _write_status(self, session: Session, update: StatusInput) -> None:
        enrollment = session.get(Enrollment, update.enrollment_id)
        if enrollment is None:
            raise ApplicationError(f"enrollment {update.enrollment_id} missing", non_retryable=True)
        enrollment.status = update.status
        enrollment.stop_reason = update.reason
        if update.status in (
            JourneyStatus.COMPLETED,
            JourneyStatus.LOST,
            JourneyStatus.STOPPED,
        ):
            enrollment.ended_at = enrollment.ended_at or update.at
        else:
            enrollment.ended_at = None
        if update.reason == "readmitted":
            enrollment.readmitted_at = enrollment.readmitted_at or update.at
        patient = session.get(Patient, enrollment.patient_id)
        if patient is not None and update.reason == "do_not_contact" and not patient.do_not_contact:
            patient.do_not_contact = True
            patient.do_not_contact_at = update.at
            patient.do_not_contact_source = patient.do_not_contact_source or "journey"
            session.add(patient)
        if patient is not None and update.reason == "deceased" and patient.deceased_at is None:
            patient.deceased_at = update.at
            session.add(patient)
        session.add(enrollment)

    _WRITERS: ClassVar[dict[type[BaseModel], Callable[..., Any]]] = {
        TouchpointInput: _write_touchpoint,
        AnswersInput: _write_answers,
        ObservationsInput: _write_observations,
        AlertInput: _write_alert,
        PointsInput: _write_points,
        StatusInput: _write_status,
    }

    @activity.defn(name="extend_greetings")
    async def extend_greetings(self, request: GreetingsInput) -> GreetingBatch:
        from suifang.workflows.greetings import greeting_occasions

        with Session(self.runtime.engine) as session:
            patient = session.get(Patient, request.patient_id)
            birth_date = patient.birth_date if patient else None
        start = request.after + dt.timedelta(days=1)
        until = request.after + dt.timedelta(days=request.days)
        occasions = greeting_occasions(start, until, birth_date=birth_date)
        return GreetingBatch(
            greetings=[GreetingOccasion(date=o.date, occasion=o.id) for o in occasions], until=until
        )
