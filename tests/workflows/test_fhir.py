"""The FHIR R4 facade: a journey is a CarePlan dated as `pathways preview` dates it, tickets
are Tasks, results are Observations; everything emitted parses back with fhir.resources, and
the facade keeps the API's roles and department scoping.

Real API (ASGI), real database (SQLite and PostgreSQL), the session's real worker.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.careplan import CarePlan
from fhir.resources.R4B.communication import Communication
from fhir.resources.R4B.encounter import Encounter
from fhir.resources.R4B.flag import Flag
from fhir.resources.R4B.observation import Observation as FhirObservation
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.questionnaire import Questionnaire
from fhir.resources.R4B.questionnaireresponse import QuestionnaireResponse
from fhir.resources.R4B.task import Task
from sqlmodel import Session
from temporalio.testing import WorkflowEnvironment

from suifang.core.api import create_app
from suifang.core.models import Alert, Observation
from suifang.core.models import Encounter as EncounterRow
from suifang.core.models import Patient as PatientRow
from suifang.core.pathways import resolve_plan
from suifang.core.runtime import Runtime
from suifang.core.security.auth import Role, create_user, issue_token
from suifang.tickets.service import TicketIn, open_ticket
from suifang.workflows.intake import EnrollmentOut, register_discharge
from suifang.workflows.journey import PatientJourneyWorkflow
from suifang.workflows.journey_commands import AnswerEvent
from suifang.workflows.journey_core import preview_schedule
from tests.workflows.test_journey_workflow import (
    abnormal_answers,
    advance_to_next_touchpoint,
    discharge,
    handle_of,
    rows,
    settle,
)

ICD10 = "http://hl7.org/fhir/sid/icd-10"
LOINC = "http://loinc.org"

PARSERS: dict[str, Any] = {
    "Patient": Patient,
    "Encounter": Encounter,
    "CarePlan": CarePlan,
    "Observation": FhirObservation,
    "Task": Task,
    "Communication": Communication,
    "QuestionnaireResponse": QuestionnaireResponse,
    "Flag": Flag,
}


@pytest.fixture
async def fhir(
    runtime: Runtime, journey_worker: WorkflowEnvironment
) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, dict[str, str]], EnrollmentOut]]:
    now = await journey_worker.get_current_time()
    enrolled = await register_discharge(
        runtime, discharge(runtime, runtime.catalog.get("pci"), now - dt.timedelta(hours=1))
    )
    await open_ticket(
        runtime,
        TicketIn(patient_id=enrolled.patient_id, text="停车场太难找了", source="complaint"),
    )
    with Session(runtime.engine) as session:
        session.add(
            Observation(
                event_key="fhir-test",
                patient_id=enrolled.patient_id,
                enrollment_id=enrolled.enrollment_id,
                indicator="sbp",
                value=142,
                unit="mmHg",
                observed_at=now,
                source="device",
            )
        )
        tokens = {}
        for name, role, departments in (
            ("admin", Role.ADMIN, []),
            ("cardio", Role.NURSE, ["cardiology"]),
            ("ortho", Role.DOCTOR, ["orthopaedics"]),
            ("feed", Role.INTEGRATOR, []),
        ):
            user = create_user(
                session, username=name, display_name=name, role=role, departments=departments
            )
            token = issue_token(session, user, name="t", unscoped=role == Role.INTEGRATOR)[0]
            tokens[name] = {"Authorization": f"Bearer {token}"}
        session.commit()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(runtime)), base_url="http://suifang.test"
    ) as client:
        yield client, tokens, enrolled


async def test_a_journey_is_a_care_plan_dated_as_the_preview_and_everything_parses_back(
    runtime: Runtime,
    journey_worker: WorkflowEnvironment,
    fhir: tuple[httpx.AsyncClient, dict[str, dict[str, str]], EnrollmentOut],
) -> None:
    client, tokens, enrolled = fhir
    patient = enrolled.patient_id
    found = await client.get(f"/fhir/R4/CarePlan?patient={patient}", headers=tokens["admin"])
    assert found.status_code == 200, found.text
    assert found.headers["content-type"].startswith("application/fhir+json")
    searchset = Bundle.model_validate(found.json())
    assert searchset.type == "searchset"
    assert searchset.total == 1
    plan = CarePlan.model_validate(found.json()["entry"][0]["resource"])
    assert plan.id == str(enrolled.enrollment_id)
    assert plan.status == "active"
    assert plan.subject.reference == f"Patient/{patient}"
    # The activities are the schedule `suifang pathways preview` shows for this journey.
    template = runtime.catalog.get("pci")
    expected = preview_schedule(
        resolve_plan(template, enrolled.risk_tier, enrolled.groups), _discharged(runtime, enrolled)
    )
    activities = [
        (a.detail.code.coding[0].code, a.detail.scheduledPeriod.start) for a in plan.activity
    ]
    assert activities == [(key, due.astimezone(dt.UTC)) for key, _, due in expected]
    assert {a.detail.status for a in plan.activity} <= {"scheduled", "in-progress"}

    # The first questionnaire goes out and is answered abnormally: a message, answers, an alert.
    plan_of = resolve_plan(template, enrolled.risk_tier, enrolled.groups)
    handle = handle_of(journey_worker, enrolled)
    key = await advance_to_next_touchpoint(journey_worker, handle)
    while key is not None and plan_of.touchpoint(key.split("#")[0]).questionnaire is None:
        key = await advance_to_next_touchpoint(journey_worker, handle)
    assert key is not None
    answers, _ = abnormal_answers(plan_of, key.split("#")[0])
    await handle.signal(PatientJourneyWorkflow.answer, AnswerEvent(answers=answers))
    await settle(lambda: rows(runtime, Alert, enrollment_id=enrolled.enrollment_id))

    # Every resource type, searched and read, parses back as its fhir.resources model.
    for name, model in PARSERS.items():
        query = (
            f"identifier={_mrn(runtime, patient)}" if name == "Patient" else f"patient={patient}"
        )
        listed = await client.get(f"/fhir/R4/{name}?{query}", headers=tokens["admin"])
        assert listed.status_code == 200, (name, listed.text)
        entries = Bundle.model_validate(listed.json()).entry
        assert entries, f"no {name} for the patient"
        for entry in listed.json()["entry"]:
            resource = model.model_validate(entry["resource"])
            one = await client.get(f"/fhir/R4/{name}/{resource.id}", headers=tokens["admin"])
            assert one.status_code == 200, one.text
            assert model.model_validate(one.json()) == resource
    task = Task.model_validate(
        (await client.get(f"/fhir/R4/Task?patient={patient}", headers=tokens["admin"])).json()[
            "entry"
        ][0]["resource"]
    )
    assert task.owner.identifier.value == "logistics"  # a parking complaint
    assert task.restriction.period.end is not None  # the SLA
    observation = FhirObservation.model_validate(
        (
            await client.get(
                f"/fhir/R4/Observation?patient={patient}&code=http://loinc.org|8480-6",
                headers=tokens["admin"],
            )
        ).json()["entry"][0]["resource"]
    )
    assert observation.valueQuantity.value == 142
    assert observation.code.coding[0].code == "8480-6"
    metadata = await client.get("/fhir/R4/metadata", headers=tokens["admin"])
    assert metadata.json()["fhirVersion"] == "4.0.1"
    served = [r["type"] for r in metadata.json()["rest"][0]["resource"]]
    assert served == [*PARSERS, "Questionnaire"]
    response = QuestionnaireResponse.model_validate(
        (
            await client.get(
                f"/fhir/R4/QuestionnaireResponse?patient={patient}", headers=tokens["admin"]
            )
        ).json()["entry"][0]["resource"]
    )
    assert response.status == "completed"
    assert {item.linkId for item in response.item} == set(answers)
    # …answering the pathway's questionnaire, which the facade serves too.
    asked = await client.get(
        f"/fhir/R4/Questionnaire?url={response.questionnaire}", headers=tokens["admin"]
    )
    assert "entry" in asked.json(), (response.questionnaire, asked.text[:500])
    [entry] = asked.json()["entry"]
    questionnaire = Questionnaire.model_validate(entry["resource"])
    assert set(answers) <= {item.linkId for item in questionnaire.item}
    again = await client.get(f"/fhir/R4/Questionnaire/{questionnaire.id}", headers=tokens["admin"])
    assert Questionnaire.model_validate(again.json()) == questionnaire


async def test_the_facade_keeps_roles_and_department_scoping(
    runtime: Runtime, fhir: tuple[httpx.AsyncClient, dict[str, dict[str, str]], EnrollmentOut]
) -> None:
    client, tokens, enrolled = fhir
    url = f"/fhir/R4/CarePlan/{enrolled.enrollment_id}"
    assert (await client.get(url, headers=tokens["cardio"])).status_code == 200
    hidden = await client.get(url, headers=tokens["ortho"])
    assert hidden.status_code == 404  # another department's patient is not even probed
    assert hidden.json()["resourceType"] == "OperationOutcome"
    search = f"/fhir/R4/CarePlan?patient={enrolled.patient_id}"
    assert (await client.get(search, headers=tokens["ortho"])).status_code == 404
    assert (await client.get(url, headers=tokens["feed"])).status_code == 403
    assert (await client.get(url)).status_code == 401
    bad = await client.get(
        f"/fhir/R4/CarePlan?patient={enrolled.patient_id}&colour=red", headers=tokens["admin"]
    )
    assert bad.status_code == 400
    assert "unsupported search parameter(s) colour" in bad.json()["issue"][0]["diagnostics"]
    unknown = await client.get("/fhir/R4/Medication/1", headers=tokens["admin"])
    assert unknown.status_code == 404
    assert unknown.json()["issue"][0]["code"] == "not-supported"
    no_patient = await client.get("/fhir/R4/Task", headers=tokens["admin"])
    assert no_patient.status_code == 400
    dated = await client.get(
        f"/fhir/R4/Task?patient={enrolled.patient_id}&_lastUpdated=gt2100-01-01",
        headers=tokens["admin"],
    )
    assert dated.json()["total"] == 0
    tasks = f"/fhir/R4/Task?patient={enrolled.patient_id}"
    ranged = await client.get(
        f"{tasks}&_lastUpdated=ge2000-01-01&_lastUpdated=lt2100-01-01", headers=tokens["admin"]
    )
    assert ranged.json()["total"] == 1  # repeated: both hold
    either = await client.get(
        f"{tasks}&_lastUpdated=lt2000-01-02,ge2000-01-01", headers=tokens["admin"]
    )
    assert either.json()["total"] == 1  # comma: either holds
    twice = await client.get(f"{tasks}&status=completed&status=received", headers=tokens["admin"])
    assert twice.status_code == 400


def _discharged(runtime: Runtime, enrolled: EnrollmentOut) -> dt.datetime:
    with Session(runtime.engine) as session:
        row = session.get(EncounterRow, enrolled.encounter_id)
        assert row is not None
        return row.discharged_at


def _mrn(runtime: Runtime, patient_id: int) -> str:
    with Session(runtime.engine) as session:
        row = session.get(PatientRow, patient_id)
        assert row is not None
        return row.external_id


def discharge_bundle(
    bundle_id: str, mrn: str, visit: str, ended: dt.datetime, status: str = "finished"
) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "id": bundle_id,
        "type": "transaction",
        "entry": [
            {
                "resource": {
                    "resourceType": "Patient",
                    "identifier": [{"system": "urn:suifang:mrn", "value": mrn}],
                    "name": [{"family": "赵", "given": ["建华"]}],
                    "gender": "male",
                    "birthDate": "1955-07-01",
                    "telecom": [{"system": "phone", "value": "13600136000"}],
                },
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "resource": {
                    "resourceType": "Encounter",
                    "status": status,
                    "class": {"code": "IMP"},
                    "identifier": [{"value": visit}],
                    "serviceType": {"coding": [{"code": "XNK"}]},
                    "period": {
                        "start": (ended - dt.timedelta(days=5)).isoformat(),
                        "end": ended.isoformat(),
                    },
                    "reasonCode": [
                        {"coding": [{"system": ICD10, "code": "I21.9"}], "text": "急性心肌梗死"}
                    ],
                },
                "request": {"method": "POST", "url": "Encounter"},
            },
            {
                "resource": {
                    "resourceType": "Procedure",
                    "status": "completed",
                    "subject": {"display": "赵建华"},
                    "code": {"coding": [{"code": "36.06"}], "text": "经皮冠状动脉支架置入术"},
                },
                "request": {"method": "POST", "url": "Procedure"},
            },
        ],
    }


async def test_a_discharge_bundle_enrols_as_an_adt_a03_does(
    runtime: Runtime,
    journey_worker: WorkflowEnvironment,
    fhir: tuple[httpx.AsyncClient, dict[str, dict[str, str]], EnrollmentOut],
) -> None:
    client, tokens, _ = fhir
    now = await journey_worker.get_current_time()
    body = discharge_bundle("b-1", "MRN-FHIR-1", "V-FHIR-1", now - dt.timedelta(hours=1))
    headers = {**tokens["admin"], "Content-Type": "application/fhir+json"}
    first = await client.post("/fhir/R4/Bundle", json=body, headers=headers)
    again = await client.post("/fhir/R4/Bundle", json=body, headers=headers)
    assert first.status_code == 201, first.text
    assert again.status_code == 200
    location = first.json()["entry"][2]["response"]["location"]
    assert again.json()["entry"][2]["response"]["location"] == location
    plan = CarePlan.model_validate(
        (await client.get(f"/fhir/R4/{location}", headers=tokens["admin"])).json()
    )
    assert plan.category[0].coding[0].code == "pci"
    patient = Patient.model_validate(
        (await client.get(f"/fhir/R4/{plan.subject.reference}", headers=tokens["admin"])).json()
    )
    assert patient.name[0].text == "赵建华"

    open_visit = discharge_bundle("b-2", "MRN-FHIR-2", "V-FHIR-2", now, status="in-progress")
    refused = await client.post("/fhir/R4/Bundle", json=open_visit, headers=headers)
    assert refused.status_code == 400
    assert refused.json()["resourceType"] == "OperationOutcome"
    assert "Encounter.status: 'in-progress'" in refused.json()["issue"][0]["diagnostics"]
    no_patient = {**body, "id": "b-3", "entry": body["entry"][1:]}  # Encounter, Procedure
    missing = await client.post("/fhir/R4/Bundle", json=no_patient, headers=headers)
    assert missing.status_code == 400
    assert "Bundle.entry: no Patient" in missing.text
    with Session(runtime.engine) as session:
        feed = create_user(session, username="ortho-feed", display_name="f", role=Role.INTEGRATOR)
        token = issue_token(
            session, feed, name="t", departments=["orthopaedics"], scopes=["intake"]
        )[0]
    other = discharge_bundle("b-4", "MRN-FHIR-4", "V-FHIR-4", now - dt.timedelta(hours=1))
    outside = await client.post(
        "/fhir/R4/Bundle",
        json=other,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"},
    )
    assert outside.status_code == 403  # an orthopaedics feed cannot enrol into cardiology


def results_bundle(bundle_id: str, mrn: str, taken: dt.datetime, unit: str = "%") -> dict[str, Any]:
    interpretation = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
    return {
        "resourceType": "Bundle",
        "id": bundle_id,
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:p1",
                "resource": {
                    "resourceType": "Patient",
                    "identifier": [{"system": "urn:suifang:mrn", "value": mrn}],
                    "name": [{"text": "孙丽"}],
                    "gender": "female",
                },
            },
            {
                "fullUrl": "urn:uuid:r1",
                "resource": {
                    "resourceType": "DiagnosticReport",
                    "status": "final",
                    "identifier": [{"value": f"TJ-{bundle_id}"}],
                    "code": {"text": "体检报告"},
                    "effectiveDateTime": taken.isoformat(),
                    "result": [{"reference": "urn:uuid:o1"}, {"reference": "urn:uuid:o2"}],
                },
            },
            {
                "fullUrl": "urn:uuid:o1",
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {
                        "coding": [{"system": LOINC, "code": "4548-4"}],
                        "text": "糖化血红蛋白",
                    },
                    "valueQuantity": {"value": 8.4, "unit": unit},
                    "referenceRange": [{"low": {"value": 4.0}, "high": {"value": 6.0}}],
                    "interpretation": [{"coding": [{"system": interpretation, "code": "H"}]}],
                },
            },
            {
                "fullUrl": "urn:uuid:o2",
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {
                        "coding": [{"system": LOINC, "code": "22748-8"}],
                        "text": "低密度脂蛋白",
                    },
                    "valueQuantity": {"value": 2.1, "unit": "mmol/L"},
                    "interpretation": [{"coding": [{"system": interpretation, "code": "N"}]}],
                },
            },
        ],
    }


async def test_a_diagnostic_report_is_recorded_and_its_findings_followed_up(
    runtime: Runtime,
    journey_worker: WorkflowEnvironment,
    fhir: tuple[httpx.AsyncClient, dict[str, dict[str, str]], EnrollmentOut],
) -> None:
    client, tokens, _ = fhir
    taken = await journey_worker.get_current_time() - dt.timedelta(hours=3)
    headers = {**tokens["admin"], "Content-Type": "application/fhir+json"}
    posted = await client.post(
        "/fhir/R4/Bundle", json=results_bundle("r-1", "MRN-LAB-1", taken), headers=headers
    )
    assert posted.status_code == 200, posted.text
    patient_ref, plan_ref = (e["response"]["location"] for e in posted.json()["entry"])
    patient_id = patient_ref.split("/")[1]
    found = await client.get(
        f"/fhir/R4/Observation?patient={patient_id}&code=4548-4", headers=tokens["admin"]
    )
    [entry] = found.json()["entry"]
    assert float(FhirObservation.model_validate(entry["resource"]).valueQuantity.value) == 8.4
    plan = CarePlan.model_validate(
        (await client.get(f"/fhir/R4/{plan_ref}", headers=tokens["admin"])).json()
    )
    assert plan.category[0].coding[0].code == "post-checkup"
    encounter = Encounter.model_validate(
        (await client.get(f"/fhir/R4/{plan.encounter.reference}", headers=tokens["admin"])).json()
    )
    assert [r.text for r in encounter.reasonCode] == ["糖化血红蛋白 8.4 %(偏高,参考 4.0-6.0)"]
    wrong = await client.post(
        "/fhir/R4/Bundle",
        json=results_bundle("r-2", "MRN-LAB-1", taken, unit="mmol/mol"),
        headers=headers,
    )
    assert wrong.status_code == 400
    assert "Observation[0]: unit 'mmol/mol' for hba1c (expected %)" in wrong.text


async def test_a_shared_patient_shows_each_department_only_its_own_resources(
    runtime: Runtime,
    journey_worker: WorkflowEnvironment,
    fhir: tuple[httpx.AsyncClient, dict[str, dict[str, str]], EnrollmentOut],
) -> None:
    client, tokens, cardiology = fhir
    now = await journey_worker.get_current_time()
    # The same patient is also discharged from orthopaedics.
    mrn = _mrn(runtime, cardiology.patient_id)
    hip = discharge(
        runtime,
        runtime.catalog.get("hip-replacement"),
        now - dt.timedelta(hours=1),
        patient={"external_id": mrn},
    )
    orthopaedics = await register_discharge(runtime, hip)
    assert orthopaedics.patient_id == cardiology.patient_id
    ortho = tokens["ortho"]
    own = await client.get(f"/fhir/R4/CarePlan/{orthopaedics.enrollment_id}", headers=ortho)
    other = await client.get(f"/fhir/R4/CarePlan/{cardiology.enrollment_id}", headers=ortho)
    assert own.status_code == 200
    assert other.status_code == 404
    plans = await client.get(f"/fhir/R4/CarePlan?patient={cardiology.patient_id}", headers=ortho)
    assert [e["resource"]["id"] for e in plans.json()["entry"]] == [str(orthopaedics.enrollment_id)]
    visits = await client.get(f"/fhir/R4/Encounter?patient={cardiology.patient_id}", headers=ortho)
    assert [e["resource"]["id"] for e in visits.json()["entry"]] == [str(orthopaedics.encounter_id)]
    tasks = await client.get(f"/fhir/R4/Task?patient={cardiology.patient_id}", headers=ortho)
    assert tasks.json()["total"] == 0  # the parking complaint is logistics'


async def test_a_reused_bundle_id_is_not_taken_for_another_discharge(
    runtime: Runtime,
    journey_worker: WorkflowEnvironment,
    fhir: tuple[httpx.AsyncClient, dict[str, dict[str, str]], EnrollmentOut],
) -> None:
    client, tokens, _ = fhir
    now = await journey_worker.get_current_time()
    headers = {**tokens["admin"], "Content-Type": "application/fhir+json"}
    first = discharge_bundle("fixed", "MRN-REUSE-1", "V-REUSE-1", now - dt.timedelta(hours=1))
    second = discharge_bundle("fixed", "MRN-REUSE-2", "V-REUSE-2", now - dt.timedelta(hours=1))
    one = await client.post("/fhir/R4/Bundle", json=first, headers=headers)
    two = await client.post("/fhir/R4/Bundle", json=second, headers=headers)
    assert (one.status_code, two.status_code) == (201, 201)
    assert (
        one.json()["entry"][0]["response"]["location"]
        != two.json()["entry"][0]["response"]["location"]
    )
