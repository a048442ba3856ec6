"""Intake and journeys: register a discharge, list and inspect journeys, answer, steer them."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, Response, status
from pydantic import BaseModel, Field
from sqlmodel import Session

from suifang.core.api.deps import RuntimeDep, SessionDep
from suifang.core.api.idempotency import Claim, claim_key, remember_result
from suifang.core.api.security import audit_patients, require, require_department_in_scope
from suifang.core.db import in_session_thread, in_thread
from suifang.core.enums import JourneyStatus
from suifang.core.models import Enrollment
from suifang.core.security.auth import Permission, Principal
from suifang.core.timestamps import PlausibleInstant
from suifang.workflows import journey_service
from suifang.workflows.intake import (
    DischargeIn,
    EnrollmentOut,
    journey_department,
    register_discharge,
)
from suifang.workflows.journey_commands import (
    AnswerEvent,
    ControlEvent,
    ObservationEvent,
    ObservationValue,
    RescheduleEvent,
)
from suifang.workflows.journey_service import JourneyDetail, JourneySummary

router = APIRouter(tags=["journeys"])

CanIntake = Annotated[Principal, Depends(require(Permission.INTAKE_WRITE))]
CanRead = Annotated[Principal, Depends(require(Permission.JOURNEYS_READ))]
CanAnswer = Annotated[Principal, Depends(require(Permission.JOURNEYS_ANSWER))]
CanAct = Annotated[Principal, Depends(require(Permission.JOURNEYS_ACT))]


def scoped_enrollment(
    session: Session, principal: Principal, enrollment_id: int, request: Request
) -> Enrollment:
    """The journey if the caller may touch it; 404 alike for missing and out of scope.

    A scoped integrator token (the patient app, a device feed) reaches its departments'
    journeys only, like staff; it never reads one back (it has no read permission).
    """
    enrollment = session.get(Enrollment, enrollment_id)
    scope = principal.scope
    if enrollment is None or (scope is not None and enrollment.department_code not in scope):
        raise HTTPException(status_code=404, detail=f"no journey {enrollment_id}")
    audit_patients(request, enrollment.patient_id)
    return enrollment


@router.post(
    "/intake/discharges",
    response_model=EnrollmentOut,
    status_code=status.HTTP_201_CREATED,
    summary="Register a discharge and enroll the patient (idempotent)",
    responses={200: {"description": "Already enrolled: the existing enrollment"}},
)
async def intake_discharge(
    body: DischargeIn,
    runtime: RuntimeDep,
    response: Response,
    request: Request,
    principal: CanIntake,
    idempotency_key: Annotated[str | None, Header(max_length=128)] = None,
) -> EnrollmentOut:
    """One call: patient + encounter (+ pathway, or chosen by the pathway match rules).

    Send an ``Idempotency-Key`` header (or ``idempotency_key`` in the body): a retry of the
    same request with the same key returns the same enrollment and never creates a second
    patient or journey; the same key with a different body is refused (422
    ``idempotency_key_reused``). Keys are the caller's own and are remembered for
    ``SUIFANG_IDEMPOTENCY_KEY_HOURS`` (24 h).
    """
    if principal.scope is not None:
        require_department_in_scope(principal, body.encounter.department, "encounter.department")
        journey_in = await in_thread(journey_department, runtime, body)
        chosen = f"pathway {body.pathway!r}" if body.pathway else "pathway (chosen by its rules)"
        require_department_in_scope(principal, journey_in, chosen)
    key = idempotency_key or body.idempotency_key
    claim = None
    if key is not None:

        def claim_it() -> Claim:
            with Session(runtime.engine) as session:
                return claim_key(
                    session,
                    principal,
                    "POST /intake/discharges",
                    key,
                    body,
                    hours=runtime.settings.idempotency_key_hours,
                )

        claim = await in_thread(claim_it)
    body = body.model_copy(update={"idempotency_key": None})
    enrollment = await register_discharge(
        runtime, body, idempotency_key=claim.internal_key if claim else None
    )
    audit_patients(request, enrollment.patient_id)
    if not enrollment.created:
        response.status_code = status.HTTP_200_OK
    if claim is not None:

        def remember(claim: Claim, status_code: int) -> int:
            with Session(runtime.engine) as session:
                return remember_result(session, claim, enrollment.enrollment_id, status_code)

        response.status_code = await in_thread(
            remember, claim, response.status_code or status.HTTP_201_CREATED
        )
    return enrollment


@router.get("/journeys", response_model=list[JourneySummary], summary="List journeys")
def list_journeys(
    session: SessionDep,
    request: Request,
    principal: CanRead,
    status_: Annotated[JourneyStatus | None, Query(alias="status")] = None,
    pathway: str | None = None,
    department: str | None = None,
    patient_id: int | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[JourneySummary]:
    journeys = journey_service.list_journeys(
        session,
        status=status_,
        pathway=pathway,
        department=department,
        departments=principal.scope,
        patient_id=patient_id,
        limit=limit,
        offset=offset,
    )
    audit_patients(request, *(j.patient_id for j in journeys))
    return journeys


@router.get("/journeys/{enrollment_id}", response_model=JourneyDetail, summary="One journey")
async def get_journey(
    enrollment_id: int,
    runtime: RuntimeDep,
    session: SessionDep,
    request: Request,
    principal: CanRead,
) -> JourneyDetail:
    """Touchpoints, answers and alerts from the database, progress live from the workflow."""
    await in_session_thread(session, scoped_enrollment, principal, enrollment_id, request)
    return await journey_service.journey_detail(runtime, session, enrollment_id)


class AnswerIn(BaseModel):
    answers: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description='Question id → answer, e.g. {"chest_pain": "no"}.'
    )
    text: str | None = Field(None, max_length=2000)
    touchpoint_key: str | None = Field(None, max_length=64)
    source: Literal["patient", "staff"] = "staff"


class Accepted(BaseModel):
    accepted: bool = True
    detail: str


@router.post(
    "/journeys/{enrollment_id}/answers",
    response_model=Accepted,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Answer a touchpoint on the patient's behalf",
)
async def answer_journey(
    enrollment_id: int,
    body: AnswerIn,
    runtime: RuntimeDep,
    session: SessionDep,
    request: Request,
    principal: CanAnswer,
) -> Accepted:
    await in_session_thread(session, scoped_enrollment, principal, enrollment_id, request)
    await journey_service.send_answer(
        runtime,
        session,
        enrollment_id,
        AnswerEvent(
            answers=body.answers,
            text=body.text,
            touchpoint_key=body.touchpoint_key,
            source=body.source,
            channel="api",
        ),
    )
    return Accepted(detail="answer delivered to the journey")


class ObservationIn(BaseModel):
    observations: list[ObservationValue] = Field(min_length=1, max_length=50)
    observed_at: PlausibleInstant | None = None
    source: str = Field("manual", max_length=32)


@router.post(
    "/journeys/{enrollment_id}/observations",
    response_model=Accepted,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Record measurements (blood pressure, glucose…) for the journey's alert rules",
)
async def observe_journey(
    enrollment_id: int,
    body: ObservationIn,
    runtime: RuntimeDep,
    session: SessionDep,
    request: Request,
    principal: CanAnswer,
) -> Accepted:
    await in_session_thread(session, scoped_enrollment, principal, enrollment_id, request)
    await journey_service.record_observation(
        runtime,
        session,
        enrollment_id,
        ObservationEvent(
            observations=body.observations, observed_at=body.observed_at, source=body.source
        ),
    )
    return Accepted(detail="observations delivered to the journey")


class RescheduleIn(BaseModel):
    shift_days: float | None = Field(None, ge=-365, le=365)
    next_due: PlausibleInstant | None = None


@router.post(
    "/journeys/{enrollment_id}/reschedule",
    response_model=Accepted,
    summary="Move the rest of the schedule, or the next touchpoint",
)
async def reschedule(
    enrollment_id: int,
    body: RescheduleIn,
    runtime: RuntimeDep,
    session: SessionDep,
    request: Request,
    principal: CanAct,
) -> Accepted:
    await in_session_thread(session, scoped_enrollment, principal, enrollment_id, request)
    await journey_service.reschedule_journey(
        runtime,
        session,
        enrollment_id,
        RescheduleEvent(
            shift=dt.timedelta(days=body.shift_days) if body.shift_days else None,
            next_due=body.next_due,
        ),
    )
    return Accepted(detail="schedule changed")


class ControlIn(BaseModel):
    reason: str | None = Field(None, max_length=128)
    at: PlausibleInstant | None = Field(None, description="When it happened (readmission, death).")


ControlAction = Literal["pause", "resume", "stop", "readmitted", "deceased"]


@router.post(
    "/journeys/{enrollment_id}/{action}",
    response_model=Accepted,
    summary="Pause, resume or stop a journey; report a readmission or death",
)
async def control(
    enrollment_id: int,
    action: ControlAction,
    runtime: RuntimeDep,
    session: SessionDep,
    request: Request,
    principal: CanAct,
    body: ControlIn | None = None,
) -> Accepted:
    await in_session_thread(session, scoped_enrollment, principal, enrollment_id, request)
    body = body or ControlIn()
    await journey_service.control_journey(
        runtime, session, enrollment_id, ControlEvent(action=action, reason=body.reason, at=body.at)
    )
    return Accepted(detail=f"journey {enrollment_id}: {action} accepted")
