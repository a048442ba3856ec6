"""The FHIR R4 facade (``/fhir/R4``): read and search Patient, Encounter, CarePlan,
Observation and Task, with the same tokens, roles, department scoping and audit as the rest
of the API. Resources are built in workflows/fhir_resources.py."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse

from suifang.core.api.deps import RuntimeDep, SessionDep
from suifang.core.api.security import (
    PrincipalDep,
    audit_patients,
    require,
    require_department_in_scope,
    require_patient_in_scope,
)
from suifang.core.errors import NotFoundError, ValidationFailed
from suifang.core.security.auth import Permission, Principal, patient_in_scope
from suifang.workflows.fhir_intake import (
    BundleContent,
    patient_of,
    prepare_discharge,
    read_bundle,
    results_of,
)
from suifang.workflows.fhir_resources import (
    FHIR_VERSION,
    RESOURCE_TYPES,
    SEARCH_PARAMETERS,
    bundle,
    read,
    read_department,
    search,
)
from suifang.workflows.intake import register_discharge
from suifang.workflows.lab_results import ResultProblem, record_results

router = APIRouter(prefix="/fhir/R4", tags=["fhir"])

FHIR_JSON = "application/fhir+json"
_PERMISSION = {
    "Patient": Permission.PATIENTS_READ,
    "Encounter": Permission.JOURNEYS_READ,
    "CarePlan": Permission.JOURNEYS_READ,
    "Observation": Permission.JOURNEYS_READ,
    "Task": Permission.TICKETS_READ,
    "Communication": Permission.OUTBOX_READ,
    "QuestionnaireResponse": Permission.JOURNEYS_READ,
    "Flag": Permission.JOURNEYS_READ,
    "Questionnaire": Permission.PATHWAYS_READ,
}
_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {FHIR_JSON: {"schema": {"type": "object"}}}},
    400: {"description": "An OperationOutcome: an unsupported or malformed search parameter"},
    404: {"description": "An OperationOutcome: no such resource, or not this caller's to see"},
}


_ICD10 = "http://hl7.org/fhir/sid/icd-10"
_LOINC = "http://loinc.org"
_DISCHARGE_BUNDLE = {
    "resourceType": "Bundle",
    "id": "his-discharge-V0001",
    "type": "transaction",
    "entry": [
        {
            "resource": {
                "resourceType": "Patient",
                "identifier": [{"system": "urn:suifang:mrn", "value": "MRN0001"}],
                "name": [{"family": "张", "given": ["伟"]}],
                "gender": "male",
                "birthDate": "1958-03-12",
                "telecom": [{"system": "phone", "value": "13800138000"}],
            },
            "request": {"method": "POST", "url": "Patient"},
        },
        {
            "resource": {
                "resourceType": "Encounter",
                "status": "finished",
                "class": {"code": "IMP"},
                "identifier": [{"value": "V0001"}],
                "serviceType": {"coding": [{"code": "XNK"}]},
                "period": {
                    "start": "2026-11-25T08:30:00+08:00",
                    "end": "2026-12-01T10:00:00+08:00",
                },
                "reasonCode": [
                    {"coding": [{"system": _ICD10, "code": "I21.9"}], "text": "急性心肌梗死"}
                ],
                "participant": [{"individual": {"display": "李明"}}],
            },
            "request": {"method": "POST", "url": "Encounter"},
        },
        {
            "resource": {
                "resourceType": "Procedure",
                "status": "completed",
                "subject": {"display": "张伟"},
                "code": {"coding": [{"code": "36.06"}], "text": "经皮冠状动脉支架置入术"},
            },
            "request": {"method": "POST", "url": "Procedure"},
        },
    ],
}
_RESULTS_BUNDLE = {
    "resourceType": "Bundle",
    "id": "checkup-TJ20261203001",
    "type": "transaction",
    "entry": [
        {
            "fullUrl": "urn:uuid:p1",
            "resource": {
                "resourceType": "Patient",
                "identifier": [{"system": "urn:suifang:mrn", "value": "MRN0003"}],
                "name": [{"text": "孙丽"}],
                "gender": "female",
                "birthDate": "1972-05-20",
            },
        },
        {
            "fullUrl": "urn:uuid:r1",
            "resource": {
                "resourceType": "DiagnosticReport",
                "status": "final",
                "identifier": [{"value": "TJ20261203001"}],
                "code": {"text": "体检报告"},
                "effectiveDateTime": "2026-12-03T09:20:00+08:00",
                "result": [{"reference": "urn:uuid:o1"}],
            },
        },
        {
            "fullUrl": "urn:uuid:o1",
            "resource": {
                "resourceType": "Observation",
                "status": "final",
                "code": {"coding": [{"system": _LOINC, "code": "4548-4"}], "text": "糖化血红蛋白"},
                "valueQuantity": {"value": 8.4, "unit": "%"},
                "referenceRange": [{"low": {"value": 4.0}, "high": {"value": 6.0}}],
                "interpretation": [
                    {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/"
                                "v3-ObservationInterpretation",
                                "code": "H",
                            }
                        ]
                    }
                ],
            },
        },
    ],
}


class FhirJSONResponse(JSONResponse):
    """The facade's answers are ``application/fhir+json``: so the spec says, for each route."""

    media_type = FHIR_JSON


def _fhir(content: Any, status_code: int = 200) -> JSONResponse:
    return JSONResponse(content=content, status_code=status_code, media_type=FHIR_JSON)


def _outcome(status_code: int, code: str, text: str) -> JSONResponse:
    return _fhir(
        {
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": code, "diagnostics": text}],
        },
        status_code,
    )


def _allowed(principal: Principal, resource_type: str) -> None:
    permission = _PERMISSION.get(resource_type)
    if permission is not None and not principal.can(permission):
        raise HTTPException(status_code=403, detail=principal.refusal(permission))


@router.get(
    "/metadata",
    summary="The CapabilityStatement: what this FHIR facade serves",
    responses=_RESPONSES,
    response_class=FhirJSONResponse,
)
def metadata(request: Request, principal: PrincipalDep) -> JSONResponse:
    """The FHIR CapabilityStatement: each resource type served (read and search) with its
    search parameters, for a FHIR client's discovery. Any valid token may read it.

    中文：FHIR 能力声明（CapabilityStatement）：本接口提供的资源类型、读取与检索方式及检索参数，
    供 FHIR 客户端发现服务。任何有效令牌均可读取。
    """
    base = str(request.base_url).rstrip("/") + "/fhir/R4"
    resources = [
        {
            "type": name,
            "interaction": [{"code": "read"}, {"code": "search-type"}],
            "searchParam": [
                {"name": p, "type": "date" if p in ("date", "_lastUpdated") else "token"}
                for p in SEARCH_PARAMETERS[name]
            ],
        }
        for name in RESOURCE_TYPES
    ]
    return _fhir(
        {
            "resourceType": "CapabilityStatement",
            "status": "active",
            "date": "2026-12-05",
            "kind": "instance",
            "software": {"name": "suifang"},
            "implementation": {"description": "suifang follow-up", "url": base},
            "fhirVersion": FHIR_VERSION,
            "format": ["json"],
            "rest": [
                {
                    "mode": "server",
                    "security": {
                        "description": "Bearer tokens (suifang tokens create); department-scoped"
                    },
                    "resource": resources,
                }
            ],
        }
    )


@router.post(
    "/Bundle",
    summary="Take a Bundle: a discharge (Patient + Encounter) or results (+ DiagnosticReport)",
    status_code=201,
    responses={
        201: {"content": {FHIR_JSON: {"schema": {"type": "object"}}}},
        400: {"description": "An OperationOutcome naming the element that is wrong"},
    },
    response_class=FhirJSONResponse,
    dependencies=[Depends(require(Permission.INTAKE_WRITE))],
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                FHIR_JSON: {
                    "schema": {"type": "object"},
                    "examples": {
                        "discharge": {
                            "summary": "A discharge: Patient + Encounter (finished) + Procedure",
                            "value": _DISCHARGE_BUNDLE,
                        },
                        "results": {
                            "summary": "Check-up results: Patient + DiagnosticReport + Observation",
                            "value": _RESULTS_BUNDLE,
                        },
                    },
                }
            },
            "description": "A Bundle with one Patient and one Encounter (status finished), or "
            "one Patient and one DiagnosticReport with its Observations.",
        }
    },
)
async def post_bundle(
    request: Request, runtime: RuntimeDep, principal: PrincipalDep
) -> JSONResponse:
    """A discharge does exactly what an HL7 ADT^A03 does: upsert the patient and visit, choose
    the pathway, start the journey. Results (a DiagnosticReport and its Observations) do what
    an ORU^R01 does. Idempotent: the same Bundle sent again does nothing twice (matched by
    its content, a discharge also by its visit and pathway; never by Bundle.id, which senders
    reuse). A problem in the Bundle is a 400 OperationOutcome naming the element.

    中文：接收 FHIR Bundle：出院（Patient + Encounter）与 HL7 ADT^A03 效果相同——更新患者与就诊、
    选择路径、开始随访；检验结果（DiagnosticReport 及其 Observation）与 ORU^R01 相同。可幂等重发；
    内容有误时返回 400 OperationOutcome。
    """
    try:
        content = read_bundle(await request.body())
        if content.report is not None:
            return await _results(request, runtime, principal, content)
        data, key = await prepare_discharge(runtime, content)
    except ValidationFailed as exc:
        return _outcome(400, "invalid", str(exc))
    if principal.scope is not None:
        require_department_in_scope(principal, data.encounter.department, "Encounter.serviceType")
    try:
        enrolled = await register_discharge(runtime, data, idempotency_key=key)
    except (ValidationFailed, NotFoundError) as exc:
        return _outcome(400, "invalid", str(exc))
    audit_patients(request, enrolled.patient_id)
    status = "201 Created" if enrolled.created else "200 OK"
    return _fhir(
        {
            "resourceType": "Bundle",
            "type": "transaction-response",
            "entry": [
                {"response": {"status": status, "location": f"Patient/{enrolled.patient_id}"}},
                {"response": {"status": status, "location": f"Encounter/{enrolled.encounter_id}"}},
                {"response": {"status": status, "location": f"CarePlan/{enrolled.enrollment_id}"}},
            ],
        },
        201 if enrolled.created else 200,
    )


async def _results(
    request: Request, runtime: RuntimeDep, principal: Principal, content: BundleContent
) -> JSONResponse:
    """A DiagnosticReport: its results recorded, its findings followed up (post-check-up)."""
    department = "health_checkup"
    if principal.scope is not None:
        require_department_in_scope(principal, department, "DiagnosticReport")
    try:
        outcome = await record_results(
            runtime,
            results_of(content),
            patient_of(runtime, content),
            key=content.key,
            department=department,
        )
    except ResultProblem as problem:
        return _outcome(400, "invalid", f"Observation[{problem.index - 1}]: {problem}")
    except (ValidationFailed, NotFoundError) as exc:
        return _outcome(400, "invalid", str(exc))
    audit_patients(request, outcome.patient_id)
    entries = [{"response": {"status": "200 OK", "location": f"Patient/{outcome.patient_id}"}}]
    if outcome.enrolled is not None:
        status = "201 Created" if outcome.enrolled.created else "200 OK"
        location = f"CarePlan/{outcome.enrolled.enrollment_id}"
        entries.append({"response": {"status": status, "location": location}})
    return _fhir({"resourceType": "Bundle", "type": "transaction-response", "entry": entries})


@router.get(
    "/{resource_type}",
    summary="Search a resource type; a searchset Bundle",
    responses=_RESPONSES,
    response_class=FhirJSONResponse,
)
def search_resources(
    resource_type: str,
    request: Request,
    runtime: RuntimeDep,
    session: SessionDep,
    principal: PrincipalDep,
    count: Annotated[int, Query(alias="_count", ge=1, le=100)] = 20,
    offset: Annotated[int, Query(alias="_offset", ge=0, le=1_000_000)] = 0,
) -> JSONResponse:
    """Patient by `identifier` (the MRN) or `_id`; the others by `patient` (required), with
    `status`, `date` / `_lastUpdated` (`ge2026-12-01`, `lt…`) and, for Observation, `code`
    (a LOINC code or indicator id). Paged with `_count` and `_offset`.

    中文：按条件检索某类资源，返回 searchset Bundle：Patient 按病历号（identifier）或 _id，
    其他资源须带 patient，可加 status、date/_lastUpdated，Observation 可加 code；
    用 _count、_offset 分页。
    """
    if resource_type not in RESOURCE_TYPES:
        return _outcome(404, "not-supported", f"{resource_type} is not served here")
    _allowed(principal, resource_type)
    params: dict[str, str] = {}
    for name, value in request.query_params.multi_items():
        if name in ("_count", "_offset"):
            continue
        if name in params:
            if name not in ("date", "_lastUpdated"):
                return _outcome(400, "invalid", f"{name}: give it once")
            params[name] += "&" + value  # a range: date=ge…&date=lt…, both must hold
        else:
            params[name] = value
    try:
        page, patient_id = search(
            runtime,
            session,
            resource_type,
            params,
            count=count,
            offset=offset,
            scope=principal.scope,
        )
    except ValidationFailed as exc:
        return _outcome(400, "invalid", str(exc))
    if patient_id is not None:
        require_patient_in_scope(session, principal, patient_id)
    elif principal.scope is not None and resource_type == "Patient":
        keep = [
            i
            for i, pid in enumerate(page.patient_ids)
            if patient_in_scope(session, pid, principal.scope)
        ]
        page = type(page)(
            [page.resources[i] for i in keep], len(keep), [page.patient_ids[i] for i in keep]
        )
    audit_patients(request, *page.patient_ids)
    base = str(request.base_url).rstrip("/") + "/fhir/R4"
    self_url = str(request.url)
    next_url = None
    if offset + count < page.total:
        next_url = str(request.url.include_query_params(_count=count, _offset=offset + count))
    found = bundle(page, base=base, self_url=self_url, next_url=next_url)
    return _fhir(found.model_dump(mode="json", exclude_none=True))


@router.get(
    "/{resource_type}/{resource_id}",
    summary="Read one resource",
    responses=_RESPONSES,
    response_class=FhirJSONResponse,
)
def read_resource(
    resource_type: str,
    resource_id: str,
    request: Request,
    runtime: RuntimeDep,
    session: SessionDep,
    principal: PrincipalDep,
) -> JSONResponse:
    """One resource by type and id, e.g. ``CarePlan/42`` (a journey) or ``Task/7`` (a
    ticket). 404 OperationOutcome for one that does not exist or is outside the caller's
    departments.

    中文：按类型和编号读取单个资源，如 CarePlan/42（随访旅程）、Task/7（工单）；不存在或不在本科室
    范围内时返回 404 OperationOutcome。
    """
    if resource_type not in RESOURCE_TYPES:
        return _outcome(404, "not-supported", f"{resource_type} is not served here")
    _allowed(principal, resource_type)
    try:
        resource, patient_id = read(runtime, session, resource_type, resource_id)
    except NotFoundError as exc:
        return _outcome(404, "not-found", str(exc))
    if patient_id is not None:
        department = read_department(session, resource_type, resource_id)
        hidden = not patient_in_scope(session, patient_id, principal.scope) or (
            principal.scope is not None
            and department is not None
            and department not in principal.scope
        )
        if hidden:
            return _outcome(404, "not-found", f"no {resource_type}/{resource_id}")
        audit_patients(request, patient_id)
    return _fhir(resource.model_dump(mode="json", exclude_none=True))
