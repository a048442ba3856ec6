"""FHIR Bundle intake: a transaction or message Bundle carrying a Patient and a finished
Encounter enrols exactly as an HL7 ADT^A03 does (the same ``register_discharge``).

What is read, and from where (every problem names its FHIRPath):

| suifang | FHIR |
|---|---|
| MRN | Patient.identifier: system ``urn:suifang:mrn`` or type MR, else the first |
| name, sex, birth date | Patient.name (text, else family + given), gender, birthDate |
| phone | Patient.telecom (system phone) |
| visit number | Encounter.identifier (the first) |
| department | Encounter.serviceType.coding.code, through the HIS code table |
| kind | Encounter.class: IMP inpatient, AMB outpatient, SS day surgery |
| admitted, discharged | Encounter.period.start, .end (required) |
| diagnoses | Encounter.reasonCode coding (ICD-10 codes), text |
| procedures | Procedure entries: code.coding (ICD-9-CM-3 codes), code.text |
| attending doctor | Encounter.participant.individual.display |
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from fhir.resources.R4B.bundle import Bundle
from pydantic import ValidationError

from suifang.core.db import in_thread
from suifang.core.errors import ValidationFailed
from suifang.core.runtime import Runtime
from suifang.workflows.hl7_intake import resolve_his_department
from suifang.workflows.intake import DischargeIn, EnrollmentOut, register_discharge

__all__ = ["enrol_bundle", "prepare_bundle", "read_bundle"]

_CLASS = {"IMP": "inpatient", "ACUTE": "inpatient", "AMB": "outpatient", "SS": "day_surgery"}
_GENDER = ("male", "female", "other", "unknown")


def read_bundle(body: bytes) -> tuple[dict[str, Any], dict[str, Any], str]:
    """The Bundle's Patient and Encounter (as JSON), and its idempotency key."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ValidationFailed("Bundle: the body is not JSON") from None
    if not isinstance(document, dict) or document.get("resourceType") != "Bundle":
        raise ValidationFailed("resourceType: send a Bundle (transaction or message)")
    try:
        bundle = Bundle.model_validate(document)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        raise ValidationFailed(f"Bundle.{where}: {error['msg']}") from None
    except (TypeError, ValueError) as exc:  # the models' own checks, outside pydantic's
        raise ValidationFailed(f"Bundle: {exc}") from None
    if bundle.type not in ("transaction", "message", "collection", "batch"):
        raise ValidationFailed(f"Bundle.type: {bundle.type!r}; send a transaction or message")
    found: dict[str, dict[str, Any]] = {}
    procedures: list[dict[str, Any]] = []
    for index, entry in enumerate(document.get("entry") or []):
        resource = (entry or {}).get("resource") or {}
        kind = resource.get("resourceType")
        if kind == "Procedure":
            procedures.append(resource)
        if kind in ("Patient", "Encounter"):
            if kind in found:
                raise ValidationFailed(
                    f"Bundle.entry[{index}]: a second {kind}; send one per Bundle"
                )
            found[kind] = resource
    for kind in ("Patient", "Encounter"):
        if kind not in found:
            raise ValidationFailed(f"Bundle.entry: no {kind}")
    key_source = bundle.id or (bundle.identifier.value if bundle.identifier else None)
    key = key_source or hashlib.sha256(body).hexdigest()
    encounter = {**found["Encounter"], "_procedures": procedures}
    return found["Patient"], encounter, f"fhir:{hashlib.sha256(key.encode()).hexdigest()}"


def _mrn(patient: dict[str, Any]) -> str:
    identifiers = patient.get("identifier") or []
    for identifier in identifiers:
        types = [c.get("code") for c in ((identifier.get("type") or {}).get("coding") or [])]
        is_mrn = identifier.get("system") == "urn:suifang:mrn" or "MR" in types
        if is_mrn and identifier.get("value"):
            return str(identifier["value"])
    if identifiers and identifiers[0].get("value"):
        return str(identifiers[0]["value"])
    raise ValidationFailed("Patient.identifier: the MRN is missing")


def _name(patient: dict[str, Any]) -> str:
    for name in patient.get("name") or []:
        if name.get("text"):
            return str(name["text"])
        family, given = name.get("family") or "", "".join(name.get("given") or [])
        if any("\u3400" <= ch <= "\u9fff" for ch in family + given):
            return family + given
        if family or given:
            return " ".join(p for p in (" ".join(name.get("given") or []), family) if p)
    raise ValidationFailed("Patient.name: missing")


def _discharge(
    runtime: Runtime, patient: dict[str, Any], encounter: dict[str, Any]
) -> tuple[DischargeIn, str]:
    if encounter.get("status") != "finished":
        raise ValidationFailed(
            f"Encounter.status: {encounter.get('status')!r}; a discharge is an Encounter "
            "with status finished"
        )
    period = encounter.get("period") or {}
    if not period.get("end"):
        raise ValidationFailed("Encounter.period.end: the discharge time is missing")
    visits = encounter.get("identifier") or []
    if not visits or not visits[0].get("value"):
        raise ValidationFailed("Encounter.identifier: the visit number is missing")
    codes = [
        c.get("code")
        for service in [encounter.get("serviceType") or {}]
        for c in service.get("coding") or []
        if c.get("code")
    ]
    if not codes:
        raise ValidationFailed("Encounter.serviceType.coding: the department code is missing")
    his_department = str(codes[0])
    diagnoses = [
        c["code"]
        for reason in encounter.get("reasonCode") or []
        for c in reason.get("coding") or []
        if c.get("code")
    ]
    texts = [r["text"] for r in encounter.get("reasonCode") or [] if r.get("text")]
    procedures = [
        c["code"]
        for procedure in encounter["_procedures"]
        for c in (procedure.get("code") or {}).get("coding") or []
        if c.get("code")
    ]
    procedure_texts = [
        (p.get("code") or {}).get("text")
        for p in encounter["_procedures"]
        if (p.get("code") or {}).get("text")
    ]
    phones = [
        t["value"]
        for t in patient.get("telecom") or []
        if t.get("system") == "phone" and t.get("value")
    ]
    doctors = [
        (p.get("individual") or {}).get("display")
        for p in encounter.get("participant") or []
        if (p.get("individual") or {}).get("display")
    ]
    gender = patient.get("gender")
    values = {
        "patient": {
            "external_id": _mrn(patient),
            "name": _name(patient),
            "sex": gender if gender in _GENDER else None,
            "birth_date": patient.get("birthDate"),
            "phone": phones[0] if phones else None,
            "timezone": runtime.settings.timezone,
            "consent_source": "fhir",
        },
        "encounter": {
            "external_id": visits[0]["value"],
            "kind": _CLASS.get(
                ((encounter.get("class") or {}).get("code") or "IMP").upper(), "inpatient"
            ),
            "department": his_department,
            "diagnosis_codes": diagnoses[:50],
            "diagnosis_text": "；".join(texts)[:512] or None,
            "procedure_codes": procedures[:50],
            "procedure_text": "；".join(procedure_texts)[:512] or None,
            "attending_doctor": doctors[0][:128] if doctors else None,
            "admitted_at": period.get("start"),
            "discharged_at": period.get("end"),
        },
    }
    try:
        return DischargeIn.model_validate(values), his_department
    except ValidationError as exc:
        error = exc.errors()[0]
        where = {"patient": "Patient", "encounter": "Encounter"}.get(str(error["loc"][0]), "")
        field = ".".join(str(p) for p in error["loc"][1:])
        raise ValidationFailed(f"{where} ({field}): {error['msg']}") from None


async def prepare_bundle(runtime: Runtime, body: bytes) -> tuple[DischargeIn, str]:
    """The discharge a Bundle carries, its department mapped, and its idempotency key."""
    patient, encounter, key = read_bundle(body)
    data, his_department = _discharge(runtime, patient, encounter)
    department = await in_thread(resolve_his_department, runtime, his_department)
    if department is None:
        raise ValidationFailed(
            f"Encounter.serviceType.coding.code: department code {his_department!r} is not "
            f"mapped to a suifang department (suifang departments map {his_department} DEPARTMENT)"
        )
    data = data.model_copy(
        update={"encounter": data.encounter.model_copy(update={"department": department})}
    )
    return data, key


async def enrol_bundle(runtime: Runtime, body: bytes) -> EnrollmentOut:
    """Enrol the discharge a Bundle carries; a resend of the same Bundle finds the same one."""
    data, key = await prepare_bundle(runtime, body)
    return await register_discharge(runtime, data, idempotency_key=key)
