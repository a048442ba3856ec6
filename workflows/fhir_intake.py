"""FHIR Bundle intake: a transaction or message Bundle carrying a Patient and a finished
Encounter enrols exactly as an HL7 ADT^A03 does (the same ``register_discharge``); one
carrying a Patient, a DiagnosticReport and its Observations is recorded as an ORU^R01 is
(workflows/lab_results.py).

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

import dataclasses
import datetime as dt
import hashlib
import json
from typing import Any

from fhir.resources.R4B.bundle import Bundle
from pydantic import ValidationError

from suifang.core.db import in_thread
from suifang.core.errors import ValidationFailed
from suifang.core.runtime import Runtime
from suifang.workflows.hl7_intake import resolve_his_department
from suifang.workflows.intake import DischargeIn, PatientIn
from suifang.workflows.lab_results import ResultFields, ResultReport

__all__ = ["BundleContent", "patient_of", "prepare_discharge", "read_bundle", "results_of"]

_CLASS = {"IMP": "inpatient", "ACUTE": "inpatient", "AMB": "outpatient", "SS": "day_surgery"}
_GENDER = ("male", "female", "other", "unknown")


@dataclasses.dataclass
class BundleContent:
    """What a Bundle carries that suifang reads (resources as JSON), and its idempotency key."""

    patient: dict[str, Any]
    encounter: dict[str, Any] | None
    procedures: list[dict[str, Any]]
    report: dict[str, Any] | None
    """A DiagnosticReport: the Bundle is results, not a discharge."""
    observations: dict[str, dict[str, Any]]
    """By every name a reference may use: the entry's fullUrl and Observation/<id>."""
    key: str


def read_bundle(body: bytes) -> BundleContent:
    """Check the Bundle with the fhir.resources models and pick out what suifang reads."""
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
    observations: dict[str, dict[str, Any]] = {}
    for index, entry in enumerate(document.get("entry") or []):
        resource = (entry or {}).get("resource") or {}
        kind = resource.get("resourceType")
        if kind == "Procedure":
            procedures.append(resource)
        elif kind == "Observation":
            names = [entry.get("fullUrl"), f"Observation/{resource.get('id')}", f"#{index}"]
            observations |= {name: resource for name in names if name}
        elif kind in ("Patient", "Encounter", "DiagnosticReport"):
            if kind in found:
                raise ValidationFailed(
                    f"Bundle.entry[{index}]: a second {kind}; send one per Bundle"
                )
            found[kind] = resource
    if "Patient" not in found:
        raise ValidationFailed("Bundle.entry: no Patient")
    if "Encounter" not in found and "DiagnosticReport" not in found:
        raise ValidationFailed(
            "Bundle.entry: no Encounter (a discharge) and no DiagnosticReport (results)"
        )
    # By content, not Bundle.id: senders reuse fixed ids, and a different discharge under a
    # reused id must not be taken for the first. The same discharge sent again with other
    # bytes is still found by its visit and pathway, as every intake is.
    key = hashlib.sha256(body).hexdigest()
    return BundleContent(
        patient=found["Patient"],
        encounter=found.get("Encounter"),
        procedures=procedures,
        report=found.get("DiagnosticReport"),
        observations=observations,
        key=key,
    )


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


def _patient_values(runtime: Runtime, patient: dict[str, Any]) -> dict[str, Any]:
    phones = [
        t["value"]
        for t in patient.get("telecom") or []
        if t.get("system") == "phone" and t.get("value")
    ]
    gender = patient.get("gender")
    return {
        "external_id": _mrn(patient),
        "name": _name(patient),
        "sex": gender if gender in _GENDER else None,
        "birth_date": patient.get("birthDate"),
        "phone": phones[0] if phones else None,
        "timezone": runtime.settings.timezone,
        "consent_source": "fhir",
    }


def patient_of(runtime: Runtime, content: BundleContent) -> PatientIn:
    """The Bundle's Patient as intake takes it."""
    try:
        return PatientIn.model_validate(_patient_values(runtime, content.patient))
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(p) for p in error["loc"])
        raise ValidationFailed(f"Patient ({field}): {error['msg']}") from None


def _discharge(runtime: Runtime, content: BundleContent) -> tuple[DischargeIn, str]:
    patient = content.patient
    encounter = content.encounter
    assert encounter is not None
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
        for procedure in content.procedures
        for c in (procedure.get("code") or {}).get("coding") or []
        if c.get("code")
    ]
    procedure_texts = [
        (p.get("code") or {}).get("text")
        for p in content.procedures
        if (p.get("code") or {}).get("text")
    ]
    doctors = [
        (p.get("individual") or {}).get("display")
        for p in encounter.get("participant") or []
        if (p.get("individual") or {}).get("display")
    ]
    values = {
        "patient": _patient_values(runtime, patient),
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


async def prepare_discharge(runtime: Runtime, content: BundleContent) -> tuple[DischargeIn, str]:
    """The discharge a Bundle carries, its department mapped, and its idempotency key."""
    data, his_department = _discharge(runtime, content)
    department = await in_thread(resolve_his_department, runtime, his_department)
    if department is None:
        raise ValidationFailed(
            f"Encounter.serviceType.coding.code: department code {his_department!r} is not "
            f"mapped to a suifang department (suifang departments map {his_department} DEPARTMENT)"
        )
    data = data.model_copy(
        update={"encounter": data.encounter.model_copy(update={"department": department})}
    )
    return data, f"fhir:{content.key}"


def results_of(content: BundleContent) -> ResultReport:
    """A DiagnosticReport's Observations as results: the ones it references (``result``), or
    every Observation of the Bundle when it references none."""
    report = content.report
    assert report is not None
    references = [r.get("reference") for r in report.get("result") or [] if r.get("reference")]
    if references:
        missing = [r for r in references if r not in content.observations]
        if missing:
            raise ValidationFailed(
                f"DiagnosticReport.result: {missing[0]} is not an Observation of this Bundle"
            )
        chosen = [content.observations[r] for r in references]
    else:
        chosen = list({id(o): o for o in content.observations.values()}.values())
    if not chosen:
        raise ValidationFailed("DiagnosticReport: no Observation to record")
    identifiers = [i.get("value") for i in report.get("identifier") or [] if i.get("value")]
    return ResultReport(
        results=[_result(index, o) for index, o in enumerate(chosen)],
        report_id=(identifiers[0] if identifiers else report.get("id"))
        or f"FHIR-{content.key[:16]}",
        taken_at=_when(report.get("effectiveDateTime"), "DiagnosticReport.effectiveDateTime"),
        inpatient=False,
        source="fhir",
    )


def _result(index: int, observation: dict[str, Any]) -> ResultFields:
    where = f"Observation[{index}]"
    code = observation.get("code") or {}
    codings = code.get("coding") or []
    loinc = next((c for c in codings if c.get("system") == "http://loinc.org"), None)
    chosen = loinc or (codings[0] if codings else {})
    if not chosen.get("code") and not code.get("text"):
        raise ValidationFailed(f"{where}.code: no code and no text")
    quantity = observation.get("valueQuantity") or {}
    if quantity.get("value") is not None:
        value, units = str(quantity["value"]), quantity.get("unit") or quantity.get("code")
    else:
        concept = observation.get("valueCodeableConcept") or {}
        value, units = str(observation.get("valueString") or concept.get("text") or ""), None
    ranges = observation.get("referenceRange") or [{}]
    low, high = (
        (ranges[0].get("low") or {}).get("value"),
        (ranges[0].get("high") or {}).get("value"),
    )
    reference = ranges[0].get("text") or (
        f"{low}-{high}" if low is not None and high is not None else None
    )
    flags = [
        c.get("code")
        for i in observation.get("interpretation") or []
        for c in i.get("coding") or []
        if c.get("code")
    ]
    return ResultFields(
        code=str(chosen.get("code") or code.get("text")),
        name=str(code.get("text") or chosen.get("display") or chosen.get("code")),
        value=value,
        units=units,
        reference_range=reference,
        abnormal_flag=str(flags[0]).upper() if flags else None,
        observed_at=_when(observation.get("effectiveDateTime"), f"{where}.effectiveDateTime"),
        withdrawn=observation.get("status") in ("cancelled", "entered-in-error"),
    )


def _when(value: Any, where: str) -> dt.datetime | None:
    if not value:
        return None
    try:
        moment = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise ValidationFailed(f"{where}: {value!r} is not a dateTime") from None
    if moment.tzinfo is None:
        raise ValidationFailed(f"{where}: give a timezone (e.g. +08:00)")
    return moment
