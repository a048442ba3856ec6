"""The journey's side effects, as idempotent Temporal activities.

Each activity carries the ``event_key`` of the command it carries out (workflow id + the
command's sequence number, stable across retries and replays), and writes under a unique
constraint on it: a retried activity changes nothing the first attempt already changed. The
records' inputs and statements are in journey_records; sends go through delivery's ledger.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import Connection, Executable, bindparam
from sqlmodel import Session, col, select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from suifang.core.categories import is_clinical
from suifang.core.db import in_thread, utcnow
from suifang.core.delivery import (
    NOTICE_CHANNELS,
    RECIPIENT_COLUMNS,
    DeliveryRequest,
    MessageLedger,
    RetryableDelivery,
    SendOutcome,
    deliver,
    open_ledger,
    recipient_from_row,
    send_through_cascade,
)
from suifang.core.enums import Priority, TicketSource, Tier
from suifang.core.models import Alert, Department, Encounter, Enrollment, Patient
from suifang.core.pathways import LocalizedText, Questionnaire, SendWindow
from suifang.core.rendering import MessageContext, MessageRenderer, address_patient
from suifang.core.runtime import Runtime
from suifang.core.triage import TriageRequest, TriageResult
from suifang.tickets.opening import TicketStart, build_ticket
from suifang.tickets.praise import record_praise
from suifang.workflows.greetings import greeting_occasions, load_greeting_texts
from suifang.workflows.journey_commands import GreetingBatch, GreetingOccasion
from suifang.workflows.journey_records import (
    RecordBatch,
    RecordItem,
    UnknownEnrollment,
    write_records,
)
from suifang.workflows.tags import apply_tags

__all__ = [
    "ASKING_KINDS",
    "GreetingsInput",
    "JourneyActivities",
    "JourneyMessageInput",
    "JourneyMessageKind",
    "JourneyTicketInput",
    "PatientTextInput",
]


JourneyMessageKind = Literal["touchpoint", "reminder", "reask", "greeting", "advice"]
ASKING_KINDS: tuple[JourneyMessageKind, ...] = ("touchpoint", "reminder", "reask")
"""The messages that ask a touchpoint's questions (a reply answers the latest of them)."""


class JourneyMessageInput(BaseModel):
    idempotency_key: str
    enrollment_id: int
    patient_id: int
    kind: JourneyMessageKind
    touchpoint_key: str | None = None
    message: LocalizedText | None = None
    questionnaire: Questionnaire | None = None
    greeting: str | None = None
    day: int | None = None
    reminder: int = 0
    only_questions: list[str] = Field(default_factory=list)
    """A re-ask: only these questions (the ones a partial reply left unanswered)."""
    rejected_answers: dict[str, str] = Field(default_factory=dict)
    """A re-ask: what the patient wrote for a question that could not be taken."""
    channels: list[str]
    window: SendWindow | None = None
    respect_quiet_hours: bool = True
    records: list[RecordItem] = Field(default_factory=list)
    """The journey's records made since its last write, written before anything is sent."""


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
    department: str | None = None
    """The department the alert rules name; None: routed by category."""


class PatientTextInput(BaseModel):
    """Free text a patient sent during a journey, to triage like any patient message."""

    event_key: str
    enrollment_id: int
    patient_id: int
    touchpoint_key: str | None = None
    text: str
    channel: str | None = None
    pathway_id: str | None = None


class GreetingsInput(BaseModel):
    patient_id: int
    after: dt.date
    days: int = 365


#: The records after which a patient's auto-tags are looked at again.
_TAGGING_RECORDS = frozenset({"answers", "observations", "alert"})

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
            self.prepare_journey_ticket,
            self.triage_patient_text,
            self.extend_greetings,
        ]

    # ----------------------------------------------------------------- messages

    def _context(self, row: Any, day: int | None) -> MessageContext:
        """What a message's text may use, from a row of :func:`_send_context`."""
        department = (row.name_en if row.locale == "en" else row.name_zh) or ""
        return MessageContext(
            name=address_patient(
                row.name,
                sex=row.sex,
                birth_date=row.birth_date,
                locale=row.locale,
                today=utcnow().date(),
            ),
            department=department,
            hospital=self.runtime.settings.hospital_name,
            day=day,
            points=row.points,
            finding=row.diagnosis_text or "",
        )

    def _outside_window(self, timezone: str, window: SendWindow) -> dt.datetime | None:
        """When sending now would break the patient's quiet hours, the next allowed instant.

        "Now" is when Temporal scheduled this attempt: the workflow's clock, which is the
        wall clock in production and the skipped-ahead clock in tests.
        """
        from zoneinfo import ZoneInfo

        zone = ZoneInfo(timezone)
        local = activity.info().current_attempt_scheduled_time.astimezone(zone)
        if window.contains(local.time()):
            return None
        day = local.date() + (
            dt.timedelta(days=1) if local.time() >= window.end else dt.timedelta(0)
        )
        return dt.datetime.combine(day, window.start, tzinfo=zone).astimezone(dt.UTC)

    @activity.defn(name="send_journey_message")
    async def send_journey_message(self, request: JourneyMessageInput) -> SendOutcome:
        prepared = await in_thread(self._prepare_send, request)
        if isinstance(prepared, SendOutcome):
            return prepared
        delivery, ledger, row = prepared
        try:
            return await send_through_cascade(
                self.runtime.engine,
                self.runtime.channels,
                delivery,
                ledger,
                recipient_from_row(row),
                now=activity.info().current_attempt_scheduled_time,
            )
        except RetryableDelivery as exc:
            raise ApplicationError(str(exc), type="TransientChannelError") from None

    def _prepare_send(
        self, request: JourneyMessageInput
    ) -> SendOutcome | tuple[DeliveryRequest, MessageLedger, Any]:
        """One transaction before anything is sent: the journey's records, then what the
        message says (the points just credited included), then the message's ledger row —
        or, in the patient's quiet hours, the outcome that says when to try again."""
        try:
            with self.runtime.engine.begin() as connection:
                self._write_records(connection, request.records)
                row = connection.execute(
                    _send_context(),
                    {"patient": request.patient_id, "enrollment": request.enrollment_id},
                ).first()
                if row is None:
                    raise ApplicationError("patient or enrollment missing", non_retryable=True)
                if request.respect_quiet_hours and request.window and row.time_scale == 1:
                    retry_at = self._outside_window(row.timezone, request.window)
                    if retry_at is not None and request.kind != "advice":
                        return SendOutcome(
                            delivered=False, suppressed="quiet_hours", retry_at=retry_at
                        )
                delivery = self._delivery_request(request, row)
                return delivery, open_ledger(connection, delivery), row
        except UnknownEnrollment as exc:
            raise ApplicationError(str(exc), non_retryable=True) from None

    def _delivery_request(self, request: JourneyMessageInput, row: Any) -> DeliveryRequest:
        """The message rendered for its patient, as delivery sends it."""
        locale = row.locale
        context = self._context(row, request.day)
        if request.kind == "greeting":
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
                request.message,
                request.questionnaire,
                locale,
                context,
                reminder=request.reminder,
                only=request.only_questions,
                rejected=request.rejected_answers,
            )
            subject, body = rendered.subject, rendered.body
        else:
            raise ApplicationError("a touchpoint message needs its text", non_retryable=True)
        return DeliveryRequest(
            idempotency_key=request.idempotency_key,
            patient_id=request.patient_id,
            enrollment_id=request.enrollment_id,
            kind=request.kind,
            touchpoint_key=request.touchpoint_key,
            subject=subject,
            body=body,
            locale=locale,
            channels=request.channels,
        )

    # ----------------------------------------------------------------- records
    #
    # ``record_batch`` writes the records a journey made between two sends or waits in one
    # transaction. The statements, and why a retry writes nothing twice, are in journey_records.

    @activity.defn(name="record_batch")
    def record_batch(self, batch: RecordBatch) -> None:
        """The records a journey made between two sends or waits, in one transaction; then
        the auto-tags of a patient whose answers, readings or alerts were among them."""
        self._write(*batch.items)
        telling: dict[int, set[str]] = {}
        for item in batch.items:
            if getattr(item, "record", None) in _TAGGING_RECORDS:
                telling.setdefault(item.patient_id, set()).add(item.record)
        missed = {
            item.enrollment_id
            for item in batch.items
            if getattr(item, "record", None) == "touchpoint" and item.status == "missed"
        }
        if telling or missed:
            with Session(self.runtime.engine) as session:
                for enrollment_id in missed:
                    enrollment = session.get(Enrollment, enrollment_id)
                    if enrollment is not None:
                        telling.setdefault(enrollment.patient_id, set()).add("missed")
                for patient_id, records in sorted(telling.items()):
                    apply_tags(
                        session,
                        patient_id,
                        reason=", ".join(sorted(records)),
                        indicators_file=self.runtime.settings.indicators_file,
                        tags_file=self.runtime.settings.tags_file,
                    )
                session.commit()

    def _write(self, *records: BaseModel) -> None:
        if not records:
            return
        try:
            with self.runtime.engine.begin() as connection:
                self._write_records(connection, records)
        except UnknownEnrollment as exc:
            raise ApplicationError(str(exc), non_retryable=True) from None

    @staticmethod
    def _write_records(connection: Connection, records: Sequence[BaseModel]) -> None:
        write_records(connection, records)

    @activity.defn(name="prepare_journey_ticket")
    def prepare_journey_ticket(self, request: JourneyTicketInput) -> TicketStart:
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
                    clinical=is_clinical(request.category),
                ),
                opened_at=activity.info().current_attempt_scheduled_time,
                enrollment_id=request.enrollment_id,
                alert_id=alerts[0].id if alerts else None,
                department=self._existing_department(session, request.department),
                tier=request.tier,
                idempotency_key=request.event_key,
            )
            for alert in alerts:
                alert.ticket_id = start.ticket_id
                session.add(alert)
            session.commit()
            return start

    @staticmethod
    def _existing_department(session: Session, code: str | None) -> str | None:
        """The rule's department, unless it was removed after the pathway was validated: then
        the routing table decides rather than the alert being lost."""
        if code is None or session.get(Department, code) is not None:
            return code
        activity.logger.warning("alert rule names unknown department %r; routing by category", code)
        return None

    @activity.defn(name="triage_patient_text")
    async def triage_patient_text(self, request: PatientTextInput) -> TicketStart | None:
        """Triage what the patient wrote: the ticket's row (the workflow starts it), or None —
        for thanks the praise recorded and the patient thanked, for a reply with nothing to
        act on ("没有", "还好") nothing at all."""
        locale, department = await in_thread(self._locale_and_department, request)
        # Triage may call an AI service: no connection is held while it runs.
        triage = await self.runtime.plugins.triage_async(
            TriageRequest(
                text=request.text,
                locale=locale,
                source=TicketSource.PATIENT_MESSAGE,
                pathway_id=request.pathway_id,
                discharge_department=department,
            )
        )
        if triage.intent == "nothing":
            return None  # "没有", "还好": the answers were recorded; nothing to act on
        if triage.intent != "praise":
            return await in_thread(self._open_patient_ticket, request, triage, department)
        await in_thread(self._record_praise, request, department)
        await self._thank(request)
        return None

    def _locale_and_department(self, request: PatientTextInput) -> tuple[str, str | None]:
        with Session(self.runtime.engine, expire_on_commit=False) as session:
            patient = session.get(Patient, request.patient_id)
            enrollment = session.get(Enrollment, request.enrollment_id)
            if patient is None or enrollment is None:
                raise ApplicationError("patient or enrollment missing", non_retryable=True)
            return patient.locale, enrollment.department_code

    def _open_patient_ticket(
        self, request: PatientTextInput, triage: TriageResult, department: str | None
    ) -> TicketStart:
        with Session(self.runtime.engine, expire_on_commit=False) as session:
            return build_ticket(
                session,
                patient_id=request.patient_id,
                source=TicketSource.PATIENT_MESSAGE,
                summary=request.text,
                triage=triage,
                opened_at=activity.info().current_attempt_scheduled_time,
                enrollment_id=request.enrollment_id,
                idempotency_key=request.event_key,
            )

    def _record_praise(self, request: PatientTextInput, department: str | None) -> None:
        with Session(self.runtime.engine, expire_on_commit=False) as session:
            record_praise(
                session,
                event_key=request.event_key,
                patient_id=request.patient_id,
                text=request.text,
                received_at=activity.info().current_attempt_scheduled_time,
                department=department,
                enrollment_id=request.enrollment_id,
            )

    def _send_context_row(self, request: PatientTextInput) -> Any:
        with self.runtime.engine.connect() as connection:
            return connection.execute(
                _send_context(),
                {"patient": request.patient_id, "enrollment": request.enrollment_id},
            ).first()

    async def _thank(self, request: PatientTextInput) -> None:
        engine = self.runtime.engine
        row = await in_thread(self._send_context_row, request)
        if row is None:
            return
        body = self.renderer.file("praise_ack", row.locale, self._context(row, None))
        try:
            await deliver(
                engine,
                self.runtime.channels,
                DeliveryRequest(
                    idempotency_key=f"{request.event_key}:thanks",
                    patient_id=request.patient_id,
                    enrollment_id=request.enrollment_id,
                    kind="praise_ack",
                    subject=body[:40],
                    body=body,
                    locale=row.locale,
                    channels=[*self._reply_channel(request.channel), *NOTICE_CHANNELS],
                ),
                now=activity.info().current_attempt_scheduled_time,
                patient=recipient_from_row(row),
            )
        except RetryableDelivery as exc:
            raise ApplicationError(str(exc), type="TransientChannelError") from None

    def _reply_channel(self, channel: str | None) -> list[str]:
        """The channel a patient wrote on, first, when it is one that can send."""
        return [channel] if channel and channel in self.runtime.channels.classes else []

    @activity.defn(name="extend_greetings")
    def extend_greetings(self, request: GreetingsInput) -> GreetingBatch:

        with Session(self.runtime.engine) as session:
            patient = session.get(Patient, request.patient_id)
            birth_date = patient.birth_date if patient else None
        start = request.after + dt.timedelta(days=1)
        until = request.after + dt.timedelta(days=request.days)
        occasions = greeting_occasions(start, until, birth_date=birth_date)
        return GreetingBatch(
            greetings=[GreetingOccasion(date=o.date, occasion=o.id) for o in occasions], until=until
        )


@functools.cache
def _send_context() -> Executable:
    """A send's patient (who, how to address them, where), enrollment and department, at once."""
    return (
        select(
            *RECIPIENT_COLUMNS,
            col(Patient.name),
            col(Patient.sex),
            col(Patient.birth_date),
            col(Patient.locale),
            col(Patient.timezone),
            col(Enrollment.time_scale),
            col(Enrollment.points),
            col(Department.name_zh),
            col(Department.name_en),
            col(Encounter.diagnosis_text),
        )
        .select_from(Patient)
        .join(Enrollment, col(Enrollment.patient_id) == col(Patient.id))
        .outerjoin(Department, col(Department.code) == col(Enrollment.department_code))
        .outerjoin(Encounter, col(Encounter.id) == col(Enrollment.encounter_id))
        .where(
            col(Patient.id) == bindparam("patient"),
            col(Enrollment.id) == bindparam("enrollment"),
        )
    )
