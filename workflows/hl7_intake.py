"""HL7 v2 intake: what the HIS's ADT feed does to patients and journeys, and its ACKs.

Every message, from the MLLP listener (workflows/mllp.py) or ``POST /intake/hl7v2``, goes
through :func:`receive`:

1. It is stored first, raw and encrypted, under its sender and control id (MSH-10), so nothing
   received is lost and a resend is answered from the store with the same ACK and no second
   effect. A message whose processing was interrupted (status ``received``) is processed
   again on its resend.
2. It is parsed (workflows/hl7_messages.py) and acted on:
   - A03 discharge: enrol, through the same :func:`~suifang.workflows.intake.register_discharge`
     as the JSON intake (idempotent by the message, and by visit + pathway);
   - A01/A04 admit/register: upsert the patient; an inpatient admission tells the patient's
     open journeys about the readmission;
   - A08: update demographics and contacts;
   - A11/A13 cancel admit/discharge: stop the journeys that visit's discharge started;
   - A40: merge the MRG-1 patient into the PID-3 one.
3. The ACK and the outcome are stored with the message: AA processed, AE content we cannot use
   (ERR names segment and field), AR not a message we take. A failure of ours that a resend
   can cure (Temporal or the database unreachable) gets AR with "resend later" and leaves the
   message ``received``.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import logging
from typing import Any

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import Session, col, select

from suifang.core.db import in_thread, utcnow
from suifang.core.enums import JourneyStatus
from suifang.core.errors import (
    NotFoundError,
    StartupError,
    SuifangError,
    TryAgainLater,
    ValidationFailed,
)
from suifang.core.models import (
    ContactPoint,
    Department,
    Encounter,
    Enrollment,
    HisDepartmentCode,
    Hl7Message,
    Patient,
    metadata,
)
from suifang.core.runtime import Runtime
from suifang.core.security.crypto import identifier_index
from suifang.workflows.hl7_messages import (
    ADMIT_EVENTS,
    CANCEL_EVENTS,
    AckCode,
    Hl7Problem,
    MessageHeader,
    ParsedMessage,
    Rejected,
    acknowledgement,
    parse,
    read_header,
)
from suifang.workflows.intake import (
    DischargeIn,
    EncounterIn,
    PatientIn,
    register_discharge,
    update_patient,
)
from suifang.workflows.journey_commands import ControlEvent
from suifang.workflows.journey_service import control_journey
from suifang.workflows.lab_results import ResultProblem, ResultReport, record_results

__all__ = [
    "Hl7Receipt",
    "department_map",
    "list_messages",
    "map_department",
    "receive",
    "reprocess",
    "resolve_his_department",
    "unmap_department",
]

log = logging.getLogger(__name__)

OPEN_STATUSES = (JourneyStatus.PENDING, JourneyStatus.ACTIVE, JourneyStatus.PAUSED)

# Where each intake field comes from, so a value the intake refuses is named as the HIS sent it.
_FIELD_OF = {
    ("patient", "external_id"): ("PID", 3),
    ("patient", "name"): ("PID", 5),
    ("patient", "birth_date"): ("PID", 7),
    ("patient", "sex"): ("PID", 8),
    ("patient", "phone"): ("PID", 13),
    ("patient", "address"): ("PID", 11),
    ("encounter", "external_id"): ("PV1", 19),
    ("encounter", "department"): ("PV1", 10),
    ("encounter", "ward"): ("PV1", 3),
    ("encounter", "attending_doctor"): ("PV1", 7),
    ("encounter", "admitted_at"): ("PV1", 44),
    ("encounter", "discharged_at"): ("PV1", 45),
    ("encounter", "diagnosis_codes"): ("DG1", 3),
    ("encounter", "procedure_codes"): ("PR1", 3),
}


@dataclasses.dataclass(frozen=True)
class Hl7Receipt:
    """What a sender gets back: the ACK, and the bytes to send (in the message's charset)."""

    code: AckCode
    ack: str
    encoding: str
    message_id: int | None
    duplicate: bool = False
    patient_id: int | None = None
    """The patient the message touched, for the audit record."""

    @property
    def ack_bytes(self) -> bytes:
        return self.ack.encode(self.encoding, errors="replace")


@dataclasses.dataclass
class _Outcome:
    code: AckCode
    problem: Hl7Problem | None = None
    reason: str | None = None
    error_code: int | None = None
    patient_id: int | None = None
    enrollment_id: int | None = None
    retry: bool = False
    """A failure of ours: the message stays ``received`` for a resend to process."""


async def receive(runtime: Runtime, raw: bytes, *, transport: str) -> Hl7Receipt:
    """Store, act on and acknowledge one HL7 v2 message (the bytes between the MLLP frame)."""
    try:
        header = read_header(raw)
    except Rejected as rejected:
        return await _reject_unreadable(runtime, raw, transport, rejected)
    encoding = header.codec or "utf-8"
    stored = await in_thread(_store, runtime, header, raw, transport)
    if stored.ack is not None and stored.status not in ("received", "processing"):
        return Hl7Receipt(
            code=stored.ack_code or "AA",  # type: ignore[arg-type]
            ack=stored.ack,
            encoding=encoding,
            message_id=stored.id,
            duplicate=True,
            patient_id=stored.patient_id,
        )
    if not await in_thread(_claim, runtime, stored.id):
        # The first copy is still being acted on (an engine resent it before our ACK came).
        busy = acknowledgement(header, "AR", reason="being processed; resend later", error_code=207)
        return Hl7Receipt("AR", busy, encoding, stored.id, duplicate=True)
    return await _process(runtime, stored.id, raw, header)  # type: ignore[arg-type]


CLAIM_SECONDS = 120
"""A message being processed for longer than this was abandoned (its process died): a resend
takes it over."""


def _claim(runtime: Runtime, message_id: int) -> bool:
    """Mark the message ``processing``, unless another copy is at it right now."""
    table = Hl7Message.__table__  # type: ignore[attr-defined]
    now = utcnow()
    stale = now - dt.timedelta(seconds=CLAIM_SECONDS)
    with runtime.engine.begin() as connection:
        claimed = connection.execute(
            sa.update(table)
            .where(
                table.c.id == message_id,
                sa.or_(
                    table.c.status.in_(("received", "processed", "error", "rejected")),
                    sa.and_(table.c.status == "processing", table.c.processed_at < stale),
                ),
            )
            .values(status="processing", processed_at=now)
        )
        return claimed.rowcount == 1


async def reprocess(runtime: Runtime, message_id: int) -> Hl7Receipt:
    """Act on a stored message again (after a mapping fix); its new ACK replaces the old."""
    row = await in_thread(_load, runtime, message_id)
    raw = base64.b64decode(row.raw)
    try:
        header = read_header(raw)
    except Rejected as rejected:
        raise ValidationFailed(
            f"HL7 message {message_id} is unreadable: {rejected.reason}"
        ) from None
    if not await in_thread(_claim, runtime, message_id):
        raise TryAgainLater(f"HL7 message {message_id} is being processed right now")
    return await _process(runtime, message_id, raw, header)


async def _process(
    runtime: Runtime, message_id: int, raw: bytes, header: MessageHeader
) -> Hl7Receipt:
    try:
        parsed = parse(raw, timezone=runtime.settings.timezone)
        outcome = await _act(runtime, parsed)
    except Rejected as rejected:
        outcome = _Outcome("AR", reason=rejected.reason, error_code=rejected.code)
    except Hl7Problem as problem:
        outcome = _Outcome("AE", problem=problem)
    except (StartupError, TryAgainLater, OperationalError) as exc:
        # The type only: a database error's text carries the statement and its parameters.
        log.warning(
            "HL7 message %s not processed (%s); the sender resends", message_id, type(exc).__name__
        )
        outcome = _Outcome(
            "AR", reason="temporarily unable to process; resend later", error_code=207, retry=True
        )
    except SuifangError as exc:
        outcome = _Outcome("AE", reason=str(exc), error_code=207)
    except Exception as exc:  # noqa: BLE001 -- a fault of ours: the engine resends, nothing lost
        log.error("HL7 message %s failed (%s); kept for a resend", message_id, type(exc).__name__)
        outcome = _Outcome(
            "AR", reason="temporarily unable to process; resend later", error_code=207, retry=True
        )
    ack = acknowledgement(
        header,
        outcome.code,
        problem=outcome.problem,
        reason=outcome.reason,
        error_code=outcome.error_code,
    )
    await in_thread(_record_outcome, runtime, message_id, outcome, ack)
    return Hl7Receipt(
        outcome.code, ack, header.codec or "utf-8", message_id, patient_id=outcome.patient_id
    )


# --------------------------------------------------------------------------- the store


def _store(runtime: Runtime, header: MessageHeader, raw: bytes, transport: str) -> Hl7Message:
    """The message's row: found (a resend, counted) or inserted as ``received``."""
    with Session(runtime.engine, expire_on_commit=False) as session:
        found = _stored(session, header.sender, header.control_id)
        if found is None:
            row = Hl7Message(
                sender=header.sender[:128],
                control_id=header.control_id[:64],
                message_type=header.message_type[:16],
                encoding=(header.codec or header.charset or "?")[:32],
                transport=transport,
                raw=base64.b64encode(raw).decode("ascii"),
                status="received",
            )
            session.add(row)
            try:
                session.commit()
                return row
            except IntegrityError:  # the same message, at the same moment, on another connection
                session.rollback()
                found = _stored(session, header.sender, header.control_id)
                if found is None:
                    raise
        found.attempts += 1
        session.add(found)
        session.commit()
        return found


def _stored(session: Session, sender: str, control_id: str) -> Hl7Message | None:
    return session.exec(
        select(Hl7Message).where(
            Hl7Message.sender == sender[:128], Hl7Message.control_id == control_id[:64]
        )
    ).first()


def _load(runtime: Runtime, message_id: int) -> Hl7Message:
    with Session(runtime.engine) as session:
        row = session.get(Hl7Message, message_id)
        if row is None:
            raise NotFoundError(f"no HL7 message {message_id} (see `suifang hl7 messages`)")
        session.expunge(row)
        return row


def _record_outcome(runtime: Runtime, message_id: int, outcome: _Outcome, ack: str) -> None:
    status = {"AA": "processed", "AE": "error", "AR": "rejected"}[outcome.code]
    values: dict[str, Any] = {
        "status": "received" if outcome.retry else status,
        "ack_code": outcome.code,
        "ack": None if outcome.retry else ack,
        "error": str(outcome.problem) if outcome.problem else outcome.reason,
        "processed_at": utcnow(),
    }
    if outcome.patient_id is not None:
        values["patient_id"] = outcome.patient_id
    if outcome.enrollment_id is not None:
        values["enrollment_id"] = outcome.enrollment_id
    table = Hl7Message.__table__  # type: ignore[attr-defined]
    with runtime.engine.begin() as connection:
        connection.execute(sa.update(table).where(table.c.id == message_id).values(**values))


async def _reject_unreadable(
    runtime: Runtime, raw: bytes, transport: str, rejected: Rejected
) -> Hl7Receipt:
    """Garbage still gets an ACK (AR) and is kept, under the hash of its bytes."""
    ack = acknowledgement(None, "AR", reason=rejected.reason, error_code=rejected.code)
    digest = hashlib.sha256(raw).hexdigest()

    def store() -> int | None:
        with Session(runtime.engine) as session:
            found = _stored(session, "?", digest)
            if found is not None:
                found.attempts += 1
                session.add(found)
                session.commit()
                return found.id
            row = Hl7Message(
                sender="?",
                control_id=digest,
                message_type="?",
                encoding="?",
                transport=transport,
                raw=base64.b64encode(raw).decode("ascii"),
                status="rejected",
                ack_code="AR",
                ack=ack,
                error=rejected.reason,
                processed_at=utcnow(),
            )
            session.add(row)
            try:
                session.commit()
            except IntegrityError:
                return None
            return row.id

    message_id = await in_thread(store)
    return Hl7Receipt("AR", ack, "utf-8", message_id)


def list_messages(
    runtime: Runtime, *, status: str | None = None, limit: int = 50
) -> list[Hl7Message]:
    """The newest stored messages first (raw bytes stay encrypted in the row)."""
    with Session(runtime.engine) as session:
        query = select(Hl7Message).order_by(col(Hl7Message.id).desc()).limit(limit)
        if status:
            query = query.where(Hl7Message.status == status)
        rows = list(session.exec(query).all())
        for row in rows:
            session.expunge(row)
        return rows


# --------------------------------------------------------------------------- departments


def department_map(runtime: Runtime) -> dict[str, str]:
    """HIS department code → suifang department."""
    with Session(runtime.engine) as session:
        rows = session.exec(select(HisDepartmentCode)).all()
        return {row.his_code: row.department_code for row in rows}


def map_department(runtime: Runtime, his_code: str, department: str) -> tuple[str | None, str]:
    """Map ``his_code`` to ``department``; returns (what it mapped to before, now)."""
    his_code = his_code.strip()
    if not his_code or len(his_code) > 64:
        raise ValidationFailed("his_code: give the HIS department code (1–64 characters)")
    with Session(runtime.engine) as session:
        if session.get(Department, department) is None:
            known = ", ".join(sorted(session.exec(select(Department.code)).all()))
            raise ValidationFailed(
                f"department: unknown department {department!r} (known: {known})"
            )
        row = session.get(HisDepartmentCode, his_code)
        before = row.department_code if row else None
        row = row or HisDepartmentCode(his_code=his_code, department_code=department)
        row.department_code = department
        row.changed_at = utcnow()
        session.add(row)
        session.commit()
    return before, department


def unmap_department(runtime: Runtime, his_code: str) -> str:
    """Remove ``his_code``'s mapping; returns the department it mapped to."""
    with Session(runtime.engine) as session:
        row = session.get(HisDepartmentCode, his_code)
        if row is None:
            raise NotFoundError(f"HIS department code {his_code!r} is not mapped")
        department = row.department_code
        session.delete(row)
        session.commit()
    return department


def resolve_his_department(runtime: Runtime, his_code: str) -> str | None:
    """The suifang department a HIS department code means (None: not mapped)."""
    with Session(runtime.engine) as session:
        mapped = session.get(HisDepartmentCode, his_code)
        if mapped is not None:
            return mapped.department_code
        if session.get(Department, his_code) is not None:
            return his_code  # the HIS already uses suifang's codes
    return None


def _department_for(runtime: Runtime, parsed: ParsedMessage) -> str:
    visit = parsed.visit
    assert visit is not None
    field = int(visit.department_field.split("-")[1].split(".")[0])
    if not visit.department_code:
        raise Hl7Problem("PV1", field, "department missing (PV1-10, or PV1-3.1)", code=101)
    department = resolve_his_department(runtime, visit.department_code)
    if department is not None:
        return department
    raise Hl7Problem(
        "PV1",
        field,
        f"department code {visit.department_code!r} is not mapped to a suifang department "
        f"(suifang departments map {visit.department_code} DEPARTMENT)",
        code=103,
    )


# --------------------------------------------------------------------------- the events


async def _act(runtime: Runtime, parsed: ParsedMessage) -> _Outcome:
    event = parsed.event
    if event == "A03":
        return await _discharge(runtime, parsed)
    if event in ADMIT_EVENTS:
        return await _admit(runtime, parsed)
    if event == "A08":
        patient_id = await in_thread(update_patient, runtime, _patient_in(runtime, parsed))
        return _Outcome("AA", patient_id=patient_id)
    if event in CANCEL_EVENTS:
        return await _cancel(runtime, parsed)
    if event == "A40":
        patient_id = await in_thread(_merge, runtime, parsed)
        return _Outcome("AA", patient_id=patient_id)
    if event == "R01":
        return await _results(runtime, parsed)
    raise Rejected(f"MSH-9.2: event {event} is not taken", code=201)  # pragma: no cover


def _patient_in(runtime: Runtime, parsed: ParsedMessage) -> PatientIn:
    patient = parsed.patient
    return _validated(
        PatientIn,
        "patient",
        {
            "external_id": patient.mrn,
            "name": patient.name,
            "sex": patient.sex,
            "birth_date": patient.birth_date,
            "timezone": runtime.settings.timezone,
            "phone": patient.phone,
            "id_number": patient.id_number,
            "address": patient.address,
            "consent_source": "hl7",
        },
    )


def _validated(model: Any, where: str, values: dict[str, Any]) -> Any:
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        error = exc.errors()[0]
        name = str(error["loc"][0]) if error["loc"] else ""
        segment, field = _FIELD_OF.get((where, name), ("MSH", 0))
        raise Hl7Problem(segment, field, error["msg"]) from None


async def _discharge(runtime: Runtime, parsed: ParsedMessage) -> _Outcome:
    visit = parsed.visit
    assert visit is not None
    if not visit.visit_number:
        raise Hl7Problem("PV1", 19, "visit number missing", code=101)
    if visit.discharged_at is None:
        raise Hl7Problem("PV1", 45, "discharge date/time missing", code=101)
    department = await in_thread(_department_for, runtime, parsed)
    encounter = _validated(
        EncounterIn,
        "encounter",
        {
            "external_id": visit.visit_number,
            "kind": visit.patient_class or "inpatient",
            "department": department,
            "ward": visit.ward,
            "diagnosis_codes": visit.diagnosis_codes,
            "diagnosis_text": visit.diagnosis_text,
            "procedure_codes": visit.procedure_codes,
            "procedure_text": visit.procedure_text,
            "attending_doctor": visit.attending_doctor,
            "admitted_at": visit.admitted_at,
            "discharged_at": visit.discharged_at,
            "discharge_disposition": visit.discharge_disposition,
        },
    )
    data = DischargeIn(patient=_patient_in(runtime, parsed), encounter=encounter)
    try:
        enrolled = await register_discharge(
            runtime, data, idempotency_key=f"hl7:{_message_key(parsed)}"
        )
    except ValidationFailed as exc:
        if str(exc).startswith("no pathway matches"):
            raise Hl7Problem(
                "DG1",
                3,
                "no pathway matches the diagnoses (DG1), procedures (PR1) and department",
                code=103,
            ) from None
        raise Hl7Problem("PV1", 0, str(exc), code=207) from None
    return _Outcome("AA", patient_id=enrolled.patient_id, enrollment_id=enrolled.enrollment_id)


async def _results(runtime: Runtime, parsed: ParsedMessage) -> _Outcome:
    department = "health_checkup"
    if parsed.visit is not None and parsed.visit.department_code:
        department = await in_thread(_department_for, runtime, parsed)
    visit = parsed.visit
    report = ResultReport(
        results=parsed.results,
        # Never the bare visit number: that is the stay's own encounter, not the report's.
        report_id=(
            f"LAB:{parsed.order_number}"
            if parsed.order_number
            else f"LAB:{parsed.header.sender}:{parsed.header.control_id}"
        )[:64],
        taken_at=parsed.result_time,
        inpatient=visit is not None and visit.patient_class == "inpatient",
        source="hl7",
    )
    try:
        outcome = await record_results(
            runtime,
            report,
            _patient_in(runtime, parsed),
            key=_message_key(parsed),
            department=department,
        )
    except ResultProblem as problem:
        field = 6 if problem.field == "unit" else 5
        raise Hl7Problem("OBX", field, f"OBX {problem.index}: {problem}") from None
    except (ValidationFailed, NotFoundError) as exc:
        raise Hl7Problem(
            "OBX", 0, f"the findings could not start follow-up: {exc}", code=207
        ) from None
    enrolled = outcome.enrolled
    return _Outcome(
        "AA",
        patient_id=outcome.patient_id,
        enrollment_id=enrolled.enrollment_id if enrolled else None,
    )


def _message_key(parsed: ParsedMessage) -> str:
    sender = f"{parsed.header.sender}|{parsed.header.control_id}"
    return hashlib.sha256(sender.encode()).hexdigest()


async def _admit(runtime: Runtime, parsed: ParsedMessage) -> _Outcome:
    patient_id = await in_thread(update_patient, runtime, _patient_in(runtime, parsed))
    visit = parsed.visit
    if visit is None or visit.patient_class != "inpatient":
        return _Outcome("AA", patient_id=patient_id)  # a registration, not a readmission
    admitted = visit.admitted_at or dt.datetime.now(dt.UTC)
    visit_number = visit.visit_number
    journeys = await in_thread(_open_journeys, runtime, patient_id, visit_number, admitted)
    for enrollment_id in journeys:
        with Session(runtime.engine) as session:
            await control_journey(
                runtime,
                session,
                enrollment_id,
                ControlEvent(action="readmitted", reason="HL7 ADT admission", at=admitted),
            )
    return _Outcome("AA", patient_id=patient_id)


def _open_journeys(
    runtime: Runtime, patient_id: int, visit_number: str | None, admitted: dt.datetime
) -> list[int]:
    """Open journeys of the patient discharged before this admission (not the visit's own)."""
    own = identifier_index("visit", visit_number) if visit_number else None
    with Session(runtime.engine) as session:
        rows = session.exec(
            select(Enrollment.id, Encounter.external_id_hash)
            .join(Encounter, col(Encounter.id) == Enrollment.encounter_id)
            .where(
                Enrollment.patient_id == patient_id,
                col(Enrollment.status).in_(OPEN_STATUSES),
                Encounter.discharged_at <= admitted,
            )
        ).all()
    return [enrollment_id for enrollment_id, visit_hash in rows if visit_hash != own]


async def _cancel(runtime: Runtime, parsed: ParsedMessage) -> _Outcome:
    visit = parsed.visit
    if visit is None or not visit.visit_number:
        raise Hl7Problem("PV1", 19, "visit number missing: which visit is cancelled?", code=101)
    journeys = await in_thread(_journeys_of_visit, runtime, visit.visit_number)
    what = "discharge" if parsed.event == "A13" else "admission"
    for enrollment_id in journeys:
        with Session(runtime.engine) as session:
            await control_journey(
                runtime,
                session,
                enrollment_id,
                ControlEvent(action="stop", reason=f"HIS cancelled the {what} ({parsed.event})"),
            )
    await in_thread(_release_visit, runtime, visit.visit_number)
    patient_id = await in_thread(_patient_by_mrn, runtime, parsed.patient.mrn)
    return _Outcome("AA", patient_id=patient_id, enrollment_id=journeys[0] if journeys else None)


def _release_visit(runtime: Runtime, visit_number: str) -> None:
    """The cancelled visit's encounter keeps its history but no longer answers to the visit
    number: the discharge the HIS sends again after a cancel (A13, then A03) is a new
    encounter with its own journey, not the stopped one found again."""
    table = Encounter.__table__  # type: ignore[attr-defined]
    current = identifier_index("visit", visit_number)
    with runtime.engine.begin() as connection:
        found = connection.execute(
            sa.select(table.c.id).where(table.c.external_id_hash == current)
        ).scalar()
        if found is not None:
            released = identifier_index("visit", f"cancelled:{found}:{visit_number}")
            connection.execute(
                sa.update(table).where(table.c.id == found).values(external_id_hash=released)
            )


def _journeys_of_visit(runtime: Runtime, visit_number: str) -> list[int]:
    with Session(runtime.engine) as session:
        return list(
            session.exec(
                select(Enrollment.id)
                .join(Encounter, col(Encounter.id) == Enrollment.encounter_id)
                .where(
                    Encounter.external_id_hash == identifier_index("visit", visit_number),
                    col(Enrollment.status).in_(OPEN_STATUSES),
                )
            ).all()
        )


def _patient_by_mrn(runtime: Runtime, mrn: str) -> int | None:
    with Session(runtime.engine) as session:
        return session.exec(
            select(Patient.id).where(Patient.external_id_hash == identifier_index("mrn", mrn))
        ).first()


def _merge(runtime: Runtime, parsed: ParsedMessage) -> int:
    """A40: the MRG-1 patient's records become the PID-3 patient's.

    When the surviving MRN is new this is a correction of the MRN: the patient is re-keyed.
    When both exist every row that names the prior patient is moved to the survivor, and
    the prior patient's contact points are copied: its running journeys carry its id and keep
    reaching the patient through it. Its MRN is released, so the old MRN is never matched
    again.
    """
    assert parsed.prior_mrn is not None
    prior_hash = identifier_index("mrn", parsed.prior_mrn)
    survivor_hash = identifier_index("mrn", parsed.patient.mrn)
    with Session(runtime.engine) as session:
        prior = session.exec(select(Patient).where(Patient.external_id_hash == prior_hash)).first()
        survivor = session.exec(
            select(Patient).where(Patient.external_id_hash == survivor_hash)
        ).first()
        if prior is None:  # a resend of a merge done is answered from the store, not here
            raise Hl7Problem("MRG", 1, f"no patient with MRN {parsed.prior_mrn!r}", code=204)
        if survivor is None:
            prior.external_id = parsed.patient.mrn
            prior.external_id_hash = survivor_hash
            session.add(prior)
            session.commit()
            return prior.id  # type: ignore[return-value]
        if survivor.id == prior.id:
            return survivor.id  # type: ignore[return-value]
        connection = session.connection()
        for table in metadata.sorted_tables:
            for column in table.columns:
                if table.name in ("patient", "contact_point"):
                    continue
                if any(fk.column.table.name == "patient" for fk in column.foreign_keys):
                    connection.execute(
                        sa.update(table)
                        .where(column == prior.id)
                        .values({column.name: survivor.id})
                    )
        known = {
            (c.system, c.value_hash)
            for c in session.exec(
                select(ContactPoint).where(ContactPoint.patient_id == survivor.id)
            ).all()
        }
        for contact in session.exec(
            select(ContactPoint).where(ContactPoint.patient_id == prior.id)
        ).all():
            if (contact.system, contact.value_hash) not in known:
                session.add(
                    ContactPoint(
                        patient_id=survivor.id,  # type: ignore[arg-type]
                        system=contact.system,
                        value=contact.value,
                        value_hash=contact.value_hash,
                        preferred_at=contact.preferred_at,
                    )
                )
        prior.external_id_hash = identifier_index("mrn", f"merged:{prior.id}:{parsed.prior_mrn}")
        prior.external_id = f"{parsed.prior_mrn} (merged into patient {survivor.id})"[:64]
        session.add(prior)
        session.commit()
        return survivor.id  # type: ignore[return-value]
