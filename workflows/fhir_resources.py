"""suifang's records as FHIR R4 resources, built with the ``fhir.resources`` models.

Read-only views for the facade at ``/fhir/R4`` (core/api/fhir.py): Patient, Encounter,
CarePlan (a journey, its touchpoints as activities), Observation, Task (a ticket, its owner
department and its SLA), Communication (every message sent, and received: ``in-`` ids),
QuestionnaireResponse (a touchpoint's answers) and Flag (an alert). The models are
``fhir.resources.R4B``: the package's R4-family models for pydantic 2; every element used here
is the same in R4 (4.0.1), which is what the facade declares. Each builder validates what it
builds, so what leaves is a valid resource.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.careplan import CarePlan
from fhir.resources.R4B.communication import Communication
from fhir.resources.R4B.encounter import Encounter as FhirEncounter
from fhir.resources.R4B.flag import Flag
from fhir.resources.R4B.observation import Observation as FhirObservation
from fhir.resources.R4B.patient import Patient as FhirPatient
from fhir.resources.R4B.questionnaire import Questionnaire
from fhir.resources.R4B.questionnaireresponse import QuestionnaireResponse
from fhir.resources.R4B.resource import Resource
from fhir.resources.R4B.task import Task
from sqlmodel import Session, col, func, select

from suifang.core.errors import NotFoundError, ValidationFailed
from suifang.core.models import (
    Alert,
    Answer,
    ContactPoint,
    Department,
    Encounter,
    Enrollment,
    InboundRecord,
    Message,
    Observation,
    Patient,
    Ticket,
    TouchpointRecord,
)
from suifang.core.pathway_checks import load_indicators
from suifang.core.pathways import resolve_plan
from suifang.core.runtime import Runtime
from suifang.core.security.crypto import identifier_index
from suifang.workflows.journey_core import preview_schedule

__all__ = ["FHIR_VERSION", "MRN_SYSTEM", "RESOURCE_TYPES", "SearchPage", "read", "search"]

FHIR_VERSION = "4.0.1"
MRN_SYSTEM = "urn:suifang:mrn"
VISIT_SYSTEM = "urn:suifang:visit"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
LOINC = "http://loinc.org"
RESOURCE_TYPES = (
    "Patient",
    "Encounter",
    "CarePlan",
    "Observation",
    "Task",
    "Communication",
    "QuestionnaireResponse",
    "Flag",
    "Questionnaire",
)
SEARCH_PARAMETERS = {
    "Patient": ("_id", "identifier"),
    "Encounter": ("patient", "status", "date", "_lastUpdated"),
    "CarePlan": ("patient", "status", "date"),
    "Observation": ("patient", "code", "date"),
    "Task": ("patient", "status", "_lastUpdated"),
    "Communication": ("patient",),
    "QuestionnaireResponse": ("patient",),
    "Flag": ("patient", "date"),
    "Questionnaire": ("url",),
}

_CAREPLAN_STATUS = {
    "pending": "draft",
    "active": "active",
    "paused": "on-hold",
    "completed": "completed",
    "lost": "revoked",
    "stopped": "revoked",
}
_ACTIVITY_STATUS = {
    "scheduled": "scheduled",
    "sent": "in-progress",
    "answered": "completed",
    "missed": "stopped",
    "skipped": "cancelled",
}
_TASK_STATUS = {
    "new": "received",
    "triaged": "accepted",
    "assigned": "accepted",
    "in_progress": "in-progress",
    "waiting_on_patient": "on-hold",
    "reopened": "in-progress",
    "resolved": "completed",
    "closed": "completed",
}
_TASK_PRIORITY = {"routine": "routine", "urgent": "urgent", "emergency": "stat"}
_ENCOUNTER_CLASS = {
    "inpatient": ("IMP", "inpatient encounter"),
    "day_surgery": ("SS", "short stay"),
    "outpatient": ("AMB", "ambulatory"),
    "checkup": ("AMB", "ambulatory"),
}


@dataclasses.dataclass(frozen=True)
class SearchPage:
    resources: list[Resource]
    total: int
    patient_ids: list[int]


def _instant(value: dt.datetime | None) -> str | None:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z") if value else None


def _patient(session: Session, patient: Patient) -> FhirPatient:
    contacts = session.exec(
        select(ContactPoint).where(
            ContactPoint.patient_id == patient.id, col(ContactPoint.retired_at).is_(None)
        )
    ).all()
    telecom = [
        {"system": {"phone": "phone", "email": "email"}.get(c.system, "other"), "value": c.value}
        for c in contacts
        if c.system in ("phone", "email")
    ]
    return FhirPatient.model_validate(
        {
            "resourceType": "Patient",
            "id": str(patient.id),
            "meta": {"lastUpdated": _instant(patient.updated_at)},
            "identifier": [{"use": "usual", "system": MRN_SYSTEM, "value": patient.external_id}],
            "name": [{"text": patient.name}],
            "gender": patient.sex
            if patient.sex in ("male", "female", "other", "unknown")
            else None,
            "birthDate": patient.birth_date.isoformat() if patient.birth_date else None,
            "telecom": telecom or None,
            "deceasedDateTime": _instant(patient.deceased_at),
            "communication": [{"language": {"text": patient.locale}, "preferred": True}],
        }
    )


def _encounter(session: Session, encounter: Encounter) -> FhirEncounter:
    department = session.get(Department, encounter.department_code)
    code, display = _ENCOUNTER_CLASS.get(encounter.kind, ("IMP", "inpatient encounter"))
    reasons = [{"coding": [{"system": ICD10, "code": c}]} for c in encounter.diagnosis_codes or []]
    if encounter.diagnosis_text:
        reasons.append({"text": encounter.diagnosis_text})
    return FhirEncounter.model_validate(
        {
            "resourceType": "Encounter",
            "id": str(encounter.id),
            "identifier": [{"system": VISIT_SYSTEM, "value": encounter.external_id}],
            "status": "finished",
            "class": {
                "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                "code": code,
                "display": display,
            },
            "subject": {"reference": f"Patient/{encounter.patient_id}"},
            "period": {
                "start": _instant(encounter.admitted_at),
                "end": _instant(encounter.discharged_at),
            },
            "serviceType": {
                "coding": [{"system": "urn:suifang:department", "code": encounter.department_code}],
                "text": department.name_zh if department else encounter.department_code,
            },
            "reasonCode": reasons or None,
            "participant": (
                [{"individual": {"display": encounter.attending_doctor}}]
                if encounter.attending_doctor
                else None
            ),
        }
    )


def _care_plan(runtime: Runtime, session: Session, enrollment: Enrollment) -> CarePlan:
    """A journey: its plan dated as ``pathways preview`` dates it, each touchpoint's status."""
    encounter = session.get(Encounter, enrollment.encounter_id)
    patient = session.get(Patient, enrollment.patient_id)
    assert encounter is not None
    assert patient is not None
    records = {
        r.key: r
        for r in session.exec(
            select(TouchpointRecord).where(TouchpointRecord.enrollment_id == enrollment.id)
        ).all()
    }
    title = enrollment.pathway_id
    activities: list[dict[str, Any]] = []
    try:
        template = runtime.catalog.get(enrollment.pathway_id, enrollment.pathway_version)
        title = template.name.get("zh-CN") or enrollment.pathway_id
        plan = resolve_plan(template, enrollment.risk_tier, enrollment.groups)
        schedule = preview_schedule(plan, encounter.discharged_at, timezone=patient.timezone)
    except NotFoundError:
        schedule = [(r.key, r.day, r.due_at) for r in records.values()]
    for key, day, due in schedule:
        record = records.get(key)
        status = _ACTIVITY_STATUS.get(record.status, "unknown") if record else "scheduled"
        if record is None and enrollment.status in ("stopped", "lost", "completed"):
            status = "cancelled"
        activities.append(
            {
                "detail": {
                    "kind": "CommunicationRequest",
                    "code": {"coding": [{"system": "urn:suifang:touchpoint", "code": key}]},
                    "status": status,
                    "description": f"day {day}: {key}",
                    "scheduledPeriod": {"start": _instant(record.due_at if record else due)},
                }
            }
        )
    return CarePlan.model_validate(
        {
            "resourceType": "CarePlan",
            "id": str(enrollment.id),
            "identifier": [{"system": "urn:suifang:workflow", "value": enrollment.workflow_id}],
            "status": _CAREPLAN_STATUS.get(enrollment.status, "unknown"),
            "intent": "plan",
            "title": title,
            "category": [
                {
                    "coding": [
                        {
                            "system": "urn:suifang:pathway",
                            "code": enrollment.pathway_id,
                            "version": str(enrollment.pathway_version),
                        }
                    ]
                }
            ],
            "subject": {"reference": f"Patient/{enrollment.patient_id}"},
            "encounter": {"reference": f"Encounter/{enrollment.encounter_id}"},
            "period": {"start": _instant(encounter.discharged_at)},
            "created": _instant(enrollment.enrolled_at),
            "author": {"display": enrollment.department_code},
            "activity": activities or None,
        }
    )


def _observation(runtime: Runtime, observation: Observation) -> FhirObservation:
    indicator = load_indicators(runtime.settings.indicators_file).get(observation.indicator)
    coding = [{"system": "urn:suifang:indicator", "code": observation.indicator}]
    if indicator is not None and indicator.loinc:
        coding.insert(0, {"system": LOINC, "code": indicator.loinc})
    quantity: dict[str, Any] = {"value": observation.value}
    if observation.unit:
        quantity["unit"] = observation.unit
    return FhirObservation.model_validate(
        {
            "resourceType": "Observation",
            "id": str(observation.id),
            "status": "final",
            "code": {
                "coding": coding,
                "text": indicator.name.get("zh-CN") if indicator else observation.indicator,
            },
            "subject": {"reference": f"Patient/{observation.patient_id}"},
            "effectiveDateTime": _instant(observation.observed_at),
            "valueQuantity": quantity,
            "method": {"text": observation.source},
        }
    )


def _task(session: Session, ticket: Ticket) -> Task:
    department = session.get(Department, ticket.department_code) if ticket.department_code else None
    restriction = None
    if ticket.resolution_due or ticket.first_response_due:
        restriction = {
            "period": {
                "start": _instant(ticket.opened_at),
                "end": _instant(ticket.resolution_due or ticket.first_response_due),
            }
        }
    return Task.model_validate(
        {
            "resourceType": "Task",
            "id": str(ticket.id),
            "identifier": [{"system": "urn:suifang:workflow", "value": ticket.workflow_id}],
            "status": _TASK_STATUS.get(ticket.status, "received"),
            "intent": "order",
            "priority": _TASK_PRIORITY.get(ticket.priority, "routine"),
            "code": {
                "coding": [{"system": "urn:suifang:ticket-category", "code": ticket.category}],
                "text": f"{ticket.tier} {ticket.category}",
            },
            "description": ticket.summary,
            "for": {"reference": f"Patient/{ticket.patient_id}"},
            "authoredOn": _instant(ticket.opened_at),
            "lastModified": _instant(ticket.resolved_at or ticket.opened_at),
            "owner": (
                {
                    "identifier": {
                        "system": "urn:suifang:department",
                        "value": ticket.department_code,
                    },
                    "display": department.name_zh if department else ticket.department_code,
                }
                if ticket.department_code
                else None
            ),
            "restriction": restriction,
        }
    )


def _communication(message: Message) -> Communication:
    """A message suifang sent (id = the message's)."""
    status = {"failed": "not-done", "pending": "in-progress"}.get(message.status, "completed")
    return Communication.model_validate(
        {
            "resourceType": "Communication",
            "id": str(message.id),
            "status": status,
            "category": [
                {"coding": [{"system": "urn:suifang:message-kind", "code": message.kind}]}
            ],
            "medium": (
                [{"coding": [{"system": "urn:suifang:channel", "code": message.channel}]}]
                if message.channel
                else None
            ),
            "subject": {"reference": f"Patient/{message.patient_id}"},
            "recipient": [{"reference": f"Patient/{message.patient_id}"}],
            "sent": _instant(message.sent_at),
            "received": _instant(message.delivered_at),
            "payload": [{"contentString": message.body}],
        }
    )


def _inbound_communication(record: InboundRecord) -> Communication:
    """A message suifang received from the patient (id ``in-`` + the inbound record's)."""
    return Communication.model_validate(
        {
            "resourceType": "Communication",
            "id": f"in-{record.id}",
            "status": "completed",
            "category": [{"coding": [{"system": "urn:suifang:inbound-kind", "code": record.kind}]}],
            "medium": [{"coding": [{"system": "urn:suifang:channel", "code": record.channel}]}],
            "subject": {"reference": f"Patient/{record.patient_id}"},
            "sender": {"reference": f"Patient/{record.patient_id}"},
            "received": _instant(record.received_at),
            "payload": [{"contentString": record.payload}],
        }
    )


def _questionnaire_url(pathway_id: str, version: int, questionnaire_id: str) -> str:
    return f"urn:suifang:questionnaire:{pathway_id}:{version}:{questionnaire_id}"


def _questionnaire_id(pathway_id: str, version: int, questionnaire_id: str) -> str:
    """A FHIR id ([A-Za-z0-9.-]) for a pathway's questionnaire."""
    return f"{pathway_id}.{version}.{questionnaire_id}".replace("_", "-")[:64]


def _questionnaire_of(
    runtime: Runtime, pathway_id: str, version: int, touchpoint_id: str
) -> tuple[str, Any] | None:
    """The (id, questionnaire) a touchpoint of a pathway version asks, if any."""
    try:
        template = runtime.catalog.get(pathway_id, version)
    except NotFoundError:
        return None
    touchpoints = {t.id: t for t in template.touchpoints}
    for variant in template.variants.values():
        touchpoints |= {t.id: t for t in variant.add_touchpoints}
    touchpoint = touchpoints.get(touchpoint_id)
    if touchpoint is None or not touchpoint.questionnaire:
        return None
    return touchpoint.questionnaire, template.questionnaires[touchpoint.questionnaire]


def _questionnaire(
    pathway_id: str, version: int, questionnaire_id: str, spec: Any
) -> Questionnaire:
    """A pathway's questionnaire: yes/no and choice questions with their options as codes,
    scales and numbers as decimals, text as text."""
    items = []
    for question in spec.questions:
        item: dict[str, Any] = {
            "linkId": question.id,
            "text": question.text.get("zh-CN"),
            "required": question.required,
        }
        if question.type == "yes_no":
            item["type"] = "choice"
            item["answerOption"] = [
                {"valueCoding": {"code": "yes", "display": "是"}},
                {"valueCoding": {"code": "no", "display": "否"}},
            ]
        elif question.type == "choice":
            item["type"] = "choice"
            item["answerOption"] = [
                {"valueCoding": {"code": o.id, "display": o.label.get("zh-CN")}}
                for o in question.options
            ]
        elif question.type in ("scale", "number"):
            item["type"] = "decimal"
        else:
            item["type"] = "text"
        items.append(item)
    return Questionnaire.model_validate(
        {
            "resourceType": "Questionnaire",
            "id": _questionnaire_id(pathway_id, version, questionnaire_id),
            "url": _questionnaire_url(pathway_id, version, questionnaire_id),
            "version": str(version),
            "title": spec.title.get("zh-CN") if spec.title else questionnaire_id,
            "status": "active",
            "item": items,
        }
    )


def _questionnaires(runtime: Runtime) -> list[Questionnaire]:
    found = []
    for template in runtime.catalog.current():
        for questionnaire_id, spec in template.questionnaires.items():
            found.append(_questionnaire(template.id, template.version, questionnaire_id, spec))
    return found


def _questionnaire_response(
    runtime: Runtime, session: Session, record: TouchpointRecord
) -> QuestionnaireResponse:
    """A touchpoint's answers (id = the touchpoint record's)."""
    enrollment = session.get(Enrollment, record.enrollment_id)
    assert enrollment is not None
    asked = _questionnaire_of(
        runtime, enrollment.pathway_id, enrollment.pathway_version, record.touchpoint_id
    )
    types = {q.id: q.type for q in asked[1].questions} if asked else {}
    answers = session.exec(
        select(Answer)
        .where(Answer.enrollment_id == record.enrollment_id, Answer.touchpoint_key == record.key)
        .order_by(col(Answer.id))
    ).all()
    items = []
    for answer in answers:
        value = answer.value if answer.question_id != "_text" else answer.text
        if value is None or value == "":
            continue
        kind = types.get(answer.question_id)
        if kind in ("yes_no", "choice"):
            typed: dict[str, Any] = {"valueCoding": {"code": str(value)}}
        elif kind in ("scale", "number") and isinstance(value, int | float):
            typed = {"valueDecimal": value}
        else:
            typed = {"valueString": str(value)}
        items.append({"linkId": answer.question_id, "answer": [typed]})
    return QuestionnaireResponse.model_validate(
        {
            "resourceType": "QuestionnaireResponse",
            "id": str(record.id),
            "identifier": {"system": "urn:suifang:touchpoint", "value": record.key},
            "basedOn": [{"reference": f"CarePlan/{record.enrollment_id}"}],
            "questionnaire": (
                _questionnaire_url(enrollment.pathway_id, enrollment.pathway_version, asked[0])
                if asked
                else None
            ),
            "status": "completed" if record.status == "answered" else "in-progress",
            "subject": {"reference": f"Patient/{enrollment.patient_id}"},
            "authored": _instant(record.answered_at or record.sent_at or record.due_at),
            "item": items or None,
        }
    )


def _flag(alert: Alert) -> Flag:
    """An alert a rule raised on the patient's answers or readings."""
    return Flag.model_validate(
        {
            "resourceType": "Flag",
            "id": str(alert.id),
            "status": "active",
            "category": [{"coding": [{"system": "urn:suifang:category", "code": alert.category}]}],
            "code": {
                "coding": [{"system": "urn:suifang:alert-rule", "code": alert.rule_id}],
                "text": alert.summary_zh,
            },
            "subject": {"reference": f"Patient/{alert.patient_id}"},
            "period": {"start": _instant(alert.created_at)},
        }
    )


# --------------------------------------------------------------------------- read and search


def read(
    runtime: Runtime, session: Session, resource_type: str, resource_id: str
) -> tuple[Resource, int | None]:
    """One resource and the patient it belongs to (for scoping and audit; None: a pathway's
    Questionnaire, which is no one's)."""
    if resource_type == "Questionnaire":
        found = next((q for q in _questionnaires(runtime) if q.id == resource_id), None)
        if found is None:
            raise NotFoundError(f"no Questionnaire/{resource_id}")
        return found, None
    if resource_type not in _MODELS:
        raise NotFoundError(
            f"{resource_type} is not served here (served: {', '.join(RESOURCE_TYPES)})"
        )
    model = _MODELS[resource_type]
    if resource_type == "Communication" and resource_id.startswith("in-"):
        model, resource_id = InboundRecord, resource_id[3:]
    if not resource_id.isdigit() or int(resource_id) > 2**31 - 1:
        raise NotFoundError(f"no {resource_type}/{resource_id}")
    row = session.get(model, int(resource_id))
    if row is None or getattr(row, "patient_id", 0) is None:
        raise NotFoundError(f"no {resource_type}/{resource_id}")
    return _build(runtime, session, resource_type, row), _patient_of(session, resource_type, row)


def read_department(session: Session, resource_type: str, resource_id: str) -> str | None:
    """The department of a resource :func:`read` found (call it after ``read``)."""
    if resource_type in ("Patient", "Questionnaire"):
        return None
    model = _MODELS[resource_type]
    if resource_type == "Communication" and resource_id.startswith("in-"):
        model, resource_id = InboundRecord, resource_id[3:]
    row = session.get(model, int(resource_id))
    return department_of(session, resource_type, row) if row is not None else None


def _patient_of(session: Session, resource_type: str, row: Any) -> int:
    if resource_type == "Patient":
        return int(row.id)
    if resource_type == "QuestionnaireResponse":
        enrollment = session.get(Enrollment, row.enrollment_id)
        assert enrollment is not None
        return enrollment.patient_id
    return int(row.patient_id)


def search(
    runtime: Runtime,
    session: Session,
    resource_type: str,
    params: dict[str, str],
    *,
    count: int,
    offset: int,
    scope: list[str] | None = None,
) -> tuple[SearchPage, int | None]:
    """Matching resources, a page of them, and the patient the search is about (None: a
    Patient search by identifier, whose hits are the patients)."""
    if resource_type not in _MODELS:
        raise NotFoundError(
            f"{resource_type} is not served here (served: {', '.join(RESOURCE_TYPES)})"
        )
    model = _MODELS[resource_type]
    allowed = SEARCH_PARAMETERS[resource_type]
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValidationFailed(
            f"{resource_type}: unsupported search parameter(s) {', '.join(unknown)} "
            f"(supported: {', '.join(allowed)}, _count, _offset)"
        )
    if resource_type == "Questionnaire":
        every = [
            q for q in _questionnaires(runtime) if "url" not in params or q.url == params["url"]
        ]
        return SearchPage(every[offset : offset + count], len(every), []), None
    query = select(model)
    patient_id: int | None = None
    if resource_type == "Patient":
        if "_id" in params:
            query = query.where(Patient.id == _int(params["_id"], "_id"))
        if "identifier" in params:
            value = params["identifier"].rpartition("|")[2]
            query = query.where(Patient.external_id_hash == identifier_index("mrn", value))
        if not params:
            raise ValidationFailed("Patient: search by identifier (the MRN) or _id")
    else:
        if "patient" not in params:
            raise ValidationFailed(f"{resource_type}: search needs patient=ID (Patient/ID)")
        patient_id = _int(params["patient"].rpartition("/")[2], "patient")
        if resource_type == "Communication":
            return _communications(session, patient_id, count, offset, scope), patient_id
        if resource_type == "QuestionnaireResponse":
            query = query.join(Enrollment, col(Enrollment.id) == TouchpointRecord.enrollment_id)
            query = query.where(
                Enrollment.patient_id == patient_id,
                col(TouchpointRecord.status).in_(("sent", "answered", "missed")),
            )
        else:
            query = query.where(model.patient_id == patient_id)
        query = _filters(
            query,
            resource_type,
            params,
            runtime.settings.indicators_file,
            ZoneInfo(runtime.settings.timezone),
        )
        if scope is not None:
            query = _in_scope(query, resource_type, scope)
    total = session.exec(select(func.count()).select_from(query.subquery())).one()
    rows = session.exec(query.order_by(col(model.id)).offset(offset).limit(count)).all()
    resources = [_build(runtime, session, resource_type, row) for row in rows]
    ids = [_patient_of(session, resource_type, row) for row in rows]
    return SearchPage(resources, total, ids), patient_id


def _in_scope(query: Any, resource_type: str, scope: list[str]) -> Any:
    """Only the resources of the caller's departments: a patient two departments share shows
    each department its own journeys, visits, tickets and what they hold."""
    journeys = select(Enrollment.id).where(col(Enrollment.department_code).in_(scope))
    if resource_type == "Encounter":
        return query.where(col(Encounter.department_code).in_(scope))
    if resource_type in ("CarePlan", "QuestionnaireResponse"):
        return query.where(col(Enrollment.department_code).in_(scope))
    if resource_type == "Task":
        return query.where(col(Ticket.department_code).in_(scope))
    if resource_type == "Flag":
        return query.where(col(Alert.enrollment_id).in_(journeys))
    if resource_type == "Observation":
        # A reading of no journey (a lab result, a device) is the patient's, for every
        # department that cares for them.
        return query.where(
            sa.or_(
                col(Observation.enrollment_id).is_(None),
                col(Observation.enrollment_id).in_(journeys),
            )
        )
    return query


def department_of(session: Session, resource_type: str, row: Any) -> str | None:
    """The department a resource belongs to (None: the patient's, any caring department's)."""
    if resource_type in ("Encounter", "CarePlan", "Task"):
        return row.department_code
    enrollment_id = getattr(row, "enrollment_id", None)
    if enrollment_id is not None:
        enrollment = session.get(Enrollment, enrollment_id)
        return enrollment.department_code if enrollment else None
    ticket_id = getattr(row, "ticket_id", None)
    if ticket_id is not None:
        ticket = session.get(Ticket, ticket_id)
        return ticket.department_code if ticket else None
    return None


def _communications(
    session: Session, patient_id: int, count: int, offset: int, scope: list[str] | None
) -> SearchPage:
    """Sent and received, oldest first: two tables, one list."""
    sent = [
        m
        for m in session.exec(select(Message).where(Message.patient_id == patient_id)).all()
        if scope is None or department_of(session, "Communication", m) in (None, *scope)
    ]
    received = [
        r
        for r in session.exec(
            select(InboundRecord).where(InboundRecord.patient_id == patient_id)
        ).all()
        if scope is None or department_of(session, "Communication", r) in (None, *scope)
    ]
    timeline: list[tuple[dt.datetime, Resource]] = [
        (m.sent_at or m.created_at, _communication(m)) for m in sent
    ] + [(r.received_at, _inbound_communication(r)) for r in received]
    timeline.sort(key=lambda item: item[0])
    page = [resource for _, resource in timeline[offset : offset + count]]
    return SearchPage(page, len(timeline), [patient_id] * len(page))


def _filters(
    query: Any,
    resource_type: str,
    params: dict[str, str],
    indicators_file: Path | None,
    zone: ZoneInfo,
) -> Any:
    if "status" in params:
        wanted = set(params["status"].split(","))
        table = {"CarePlan": _CAREPLAN_STATUS, "Task": _TASK_STATUS}.get(resource_type)
        if resource_type == "Encounter":
            if "finished" not in wanted:
                query = query.where(col(Encounter.id).is_(None))
        elif table is not None:
            ours = [k for k, v in table.items() if v in wanted]
            column = Enrollment.status if resource_type == "CarePlan" else Ticket.status
            query = query.where(col(column).in_(ours))
    date_column = {
        "Flag": Alert.created_at,
        "QuestionnaireResponse": TouchpointRecord.due_at,
        "Encounter": Encounter.discharged_at,
        "CarePlan": Enrollment.enrolled_at,
        "Observation": Observation.observed_at,
        "Task": Ticket.opened_at,
    }[resource_type]
    for name in ("date", "_lastUpdated"):
        # Repeated (date=ge…&date=lt…, joined with & by the route): all must hold; values
        # separated by commas: any may.
        for group in params[name].split("&") if name in params else []:
            query = query.where(
                sa.or_(*(_date_condition(date_column, v, name, zone) for v in group.split(",")))
            )
    if resource_type == "Observation" and "code" in params:
        code = params["code"].rpartition("|")[2]
        indicators = {
            name for name, spec in load_indicators(None).items() if code in (name, spec.loinc)
        } or {code}
        query = query.where(col(Observation.indicator).in_(indicators))
    return query


def _date_condition(column: Any, value: str, name: str, zone: ZoneInfo) -> Any:
    """One FHIR date value as a condition; a date or time without an offset is the
    hospital's (``SUIFANG_TIMEZONE``)."""
    prefix = value[:2] if value[:2] in ("eq", "gt", "ge", "lt", "le") else "eq"
    text = value[2:] if value[:2] == prefix else value
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValidationFailed(
            f"{name}: {value!r} is not a FHIR date (e.g. ge2026-12-01)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    day_only = len(text) == 10
    end = moment + (dt.timedelta(days=1) if day_only else dt.timedelta(seconds=1))
    if prefix == "eq":
        return sa.and_(column >= moment, column < end)
    return {
        "gt": column >= end,
        "ge": column >= moment,
        "lt": column < moment,
        "le": column < end,
    }[prefix]


def _int(value: str, name: str) -> int:
    if not value.isdigit() or int(value) > 2**31 - 1:
        raise ValidationFailed(f"{name}: {value!r} is not an id")
    return int(value)


_MODELS: dict[str, Any] = {
    "Patient": Patient,
    "Encounter": Encounter,
    "CarePlan": Enrollment,
    "Observation": Observation,
    "Task": Ticket,
    "Communication": Message,
    "QuestionnaireResponse": TouchpointRecord,
    "Flag": Alert,
    "Questionnaire": None,
}


def _build(runtime: Runtime, session: Session, resource_type: str, row: Any) -> Resource:
    if resource_type == "Patient":
        return _patient(session, row)
    if resource_type == "Encounter":
        return _encounter(session, row)
    if resource_type == "CarePlan":
        return _care_plan(runtime, session, row)
    if resource_type == "Observation":
        return _observation(runtime, row)
    if resource_type == "Communication":
        return (
            _inbound_communication(row) if isinstance(row, InboundRecord) else _communication(row)
        )
    if resource_type == "QuestionnaireResponse":
        return _questionnaire_response(runtime, session, row)
    if resource_type == "Flag":
        return _flag(row)
    return _task(session, row)


def bundle(page: SearchPage, *, base: str, self_url: str, next_url: str | None) -> Bundle:
    """A searchset Bundle of ``page``."""
    links = [{"relation": "self", "url": self_url}]
    if next_url:
        links.append({"relation": "next", "url": next_url})
    return Bundle.model_validate(
        {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": page.total,
            "link": links,
            "entry": [
                {
                    "fullUrl": f"{base}/{r.get_resource_type()}/{r.id}",
                    "resource": r,
                    "search": {"mode": "match"},
                }
                for r in page.resources
            ]
            or None,
        }
    )
