"""Intake: one call registers a discharge, and calling it again never enrolls or starts twice.

Real runtime, real database (SQLite and PostgreSQL), the session's real worker.
"""

from __future__ import annotations

import pytest
from sqlalchemy import event
from sqlmodel import Session, func, select
from temporalio.testing import WorkflowEnvironment

from suifang.core.errors import ValidationFailed
from suifang.core.models import ContactPoint, Encounter, Enrollment, Patient
from suifang.core.runtime import Runtime
from suifang.workflows.intake import register_discharge
from tests.workflows.test_journey_workflow import discharge, handle_of


def count(runtime: Runtime, model: type) -> int:
    with Session(runtime.engine) as session:
        return session.exec(select(func.count()).select_from(model)).one()


async def test_the_same_encounter_and_pathway_again_is_the_same_enrollment(
    runtime: Runtime, journey_worker: WorkflowEnvironment
) -> None:
    now = await journey_worker.get_current_time()
    first_call = discharge(runtime, runtime.catalog.get("pci"), now)
    first = await register_discharge(runtime, first_call)
    # The HIS sends the discharge again, corrected, with no idempotency key.
    again = first_call.model_copy(
        update={"encounter": first_call.encounter.model_copy(update={"length_of_stay_days": 5})}
    )
    second = await register_discharge(runtime, again)

    assert (first.created, second.created) == (True, False)
    assert second.enrollment_id == first.enrollment_id
    assert second.workflow_id == first.workflow_id
    assert (first.status, second.status) == ("active", "active")
    assert (count(runtime, Enrollment), count(runtime, Encounter)) == (1, 1)
    with Session(runtime.engine) as session:
        encounter = session.get(Encounter, first.encounter_id)
        enrollment = session.get(Enrollment, first.enrollment_id)
    assert encounter is not None
    assert encounter.length_of_stay_days == 5
    assert enrollment is not None
    assert enrollment.started_at is not None
    # The PCI template's department owns the journey.
    assert enrollment.department_code == "cardiology" == first.department
    description = await handle_of(journey_worker, first).describe()
    assert description.id == first.workflow_id


async def test_a_new_encounter_of_the_same_patient_is_a_new_enrollment(
    runtime: Runtime, journey_worker: WorkflowEnvironment
) -> None:
    now = await journey_worker.get_current_time()
    first_call = discharge(runtime, runtime.catalog.get("pci"), now)
    first = await register_discharge(runtime, first_call)
    readmission = first_call.model_copy(
        update={
            "encounter": first_call.encounter.model_copy(
                update={"external_id": f"{first_call.encounter.external_id}-2"}
            )
        }
    )
    second = await register_discharge(runtime, readmission)
    assert second.created
    assert second.enrollment_id != first.enrollment_id
    assert second.patient_id == first.patient_id
    assert (count(runtime, Patient), count(runtime, Enrollment)) == (1, 2)


async def test_a_returning_patient_is_updated_field_by_field(
    runtime: Runtime, journey_worker: WorkflowEnvironment
) -> None:
    now = await journey_worker.get_current_time()
    first_call = discharge(
        runtime,
        runtime.catalog.get("pci"),
        now,
        patient={"id_number": "11010519491231002x", "address": "北京市东城区", "email": "a@b.cn"},
    )
    first = await register_discharge(runtime, first_call)
    with Session(runtime.engine) as session:
        stamped = session.get(Patient, first.patient_id)
    assert stamped is not None
    assert stamped.contact_consent
    assert stamped.consent_source == "intake"
    assert (stamped.do_not_contact, stamped.preferred_channels) == (False, [])

    # Back for a new visit: a new name and locale, no sex, birth date or address this time,
    # the same phone, consent unchanged.
    patient = first_call.patient.model_copy(
        update={"name": "李建华", "locale": "en", "sex": None, "birth_date": None, "address": None}
    )
    encounter = first_call.encounter.model_copy(
        update={"external_id": f"{first_call.encounter.external_id}-2"}
    )
    second = await register_discharge(
        runtime, first_call.model_copy(update={"patient": patient, "encounter": encounter})
    )
    with Session(runtime.engine) as session:
        updated = session.get(Patient, first.patient_id)
        contacts = session.exec(
            select(ContactPoint.system).where(ContactPoint.patient_id == first.patient_id)
        ).all()
    assert second.patient_id == first.patient_id
    assert updated is not None
    assert (updated.name, updated.locale) == ("李建华", "en")
    assert (updated.sex, str(updated.birth_date)) == ("male", "1970-05-01")  # kept
    assert (updated.address, updated.id_number) == ("北京市东城区", "11010519491231002X")
    assert updated.consent_at == stamped.consent_at  # consent did not change: not re-stamped
    assert sorted(contacts) == ["email", "phone"]  # the phone again is not a second row

    # The patient withdraws consent to be contacted: that is stamped.
    withdrawn = patient.model_copy(update={"contact_consent": False, "consent_source": "ward"})
    third_visit = encounter.model_copy(update={"external_id": f"{encounter.external_id}-3"})
    await register_discharge(
        runtime, first_call.model_copy(update={"patient": withdrawn, "encounter": third_visit})
    )
    with Session(runtime.engine) as session:
        withdrawn_row = session.get(Patient, first.patient_id)
    assert withdrawn_row is not None
    assert (withdrawn_row.contact_consent, withdrawn_row.consent_source) == (False, "ward")
    assert withdrawn_row.consent_at is not None
    assert stamped.consent_at is not None
    assert withdrawn_row.consent_at > stamped.consent_at


async def test_a_visit_number_of_another_patient_is_refused(
    runtime: Runtime, journey_worker: WorkflowEnvironment
) -> None:
    now = await journey_worker.get_current_time()
    first_call = discharge(runtime, runtime.catalog.get("pci"), now)
    await register_discharge(runtime, first_call)
    other = discharge(
        runtime,
        runtime.catalog.get("pci"),
        now,
        encounter={"external_id": first_call.encounter.external_id},
    )
    with pytest.raises(ValidationFailed, match="already belongs to another patient"):
        await register_discharge(runtime, other)
    assert (count(runtime, Patient), count(runtime, Enrollment)) == (1, 1)


async def test_an_unknown_department_is_refused_and_nothing_is_written(
    runtime: Runtime, journey_worker: WorkflowEnvironment
) -> None:
    now = await journey_worker.get_current_time()
    call = discharge(runtime, runtime.catalog.get("pci"), now, encounter={"department": "nowhere"})
    with pytest.raises(ValidationFailed) as refused:
        await register_discharge(runtime, call)
    message = str(refused.value)
    assert message.startswith("encounter.department: unknown department 'nowhere' (known: ")
    assert "cardiology" in message
    assert (count(runtime, Patient), count(runtime, Encounter), count(runtime, Enrollment)) == (
        0,
        0,
        0,
    )


# What registering a discharge of a patient new to the hospital may say to the database:
# look up the department and the catalogue, write patient, contact point, encounter and
# enrollment (and name its workflow), read what the record says for the tags (one statement),
# and mark the journey active once started. The tags once cost a query per rule on every
# intake and a fifth of the API's capacity (docs/benchmarks.md); a change that adds
# statements to every discharge's path fails here, not only in a benchmark.
NEW_PATIENT_STATEMENTS = 12


async def test_a_new_patients_discharge_takes_a_fixed_handful_of_statements(
    runtime: Runtime, journey_worker: WorkflowEnvironment
) -> None:
    now = await journey_worker.get_current_time()
    warm = discharge(runtime, runtime.catalog.get("pci"), now)
    await register_discharge(runtime, warm)  # first use loads the catalogue and caches
    new_patient = discharge(runtime, runtime.catalog.get("pci"), now)
    statements: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        statements.append(" ".join(statement.split())[:70])

    event.listen(runtime.engine, "before_cursor_execute", record)
    try:
        result = await register_discharge(runtime, new_patient)
    finally:
        event.remove(runtime.engine, "before_cursor_execute", record)
    assert result.created
    assert len(statements) <= NEW_PATIENT_STATEMENTS, "\n".join(statements)
