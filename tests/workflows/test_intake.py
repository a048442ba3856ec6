"""Intake: one call registers a discharge, and calling it again never enrolls or starts twice.

Real runtime, real database (SQLite and PostgreSQL), the session's real worker.
"""

from __future__ import annotations

import pytest
from sqlmodel import Session, func, select
from temporalio.testing import WorkflowEnvironment

from suifang.core.errors import ValidationFailed
from suifang.core.models import Encounter, Enrollment, Patient
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
