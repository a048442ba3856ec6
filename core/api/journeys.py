"""Intake and journeys: register a discharge, list and inspect journeys, answer, steer them."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from fastapi import (
    APIRouter,
    Body,
    Depends,
    Header,
    HTTPException,
    Query,
    Request,
    Response,
    status,
)
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

_DISCHARGE_EXAMPLES = {
    "zh": {
        "summary": "A cardiac stent (PCI) discharge, pathway named",
        "value": {
            "patient": {
                "external_id": "MRN0001",
                "name": "张伟",
                "sex": "male",
                "birth_date": "1958-03-12",
                "phone": "13800138000",
                "wechat_openid": "oWx3a5ZkX1pQ9rT2yUv8bN4cD6eF",
                "preferred_channels": ["wechat", "sms"],
                "contact_consent": True,
                "consent_source": "出院宣教",
            },
            "encounter": {
                "external_id": "V0001",
                "department": "cardiology",
                "ward": "心内科12病区",
                "diagnosis_codes": ["I21.9"],
                "diagnosis_text": "急性心肌梗死",
                "procedure_codes": ["36.06"],
                "procedure_text": "经皮冠状动脉支架置入术",
                "attending_doctor": "李明",
                "admitted_at": "2026-11-25T08:30:00+08:00",
                "discharged_at": "2026-12-01T10:00:00+08:00",
            },
            "pathway": "pci",
        },
    },
    "en": {
        "summary": "A hip replacement, English-speaking patient, pathway chosen by its rules",
        "value": {
            "patient": {
                "external_id": "MRN0002",
                "name": "John Smith",
                "sex": "male",
                "birth_date": "1961-07-04",
                "locale": "en",
                "phone": "13912345678",
                "email": "john.smith@example.org",
            },
            "encounter": {
                "external_id": "V0002",
                "department": "orthopaedics",
                "diagnosis_codes": ["M16.1"],
                "diagnosis_text": "Primary osteoarthritis of the right hip",
                "procedure_codes": ["81.51"],
                "procedure_text": "Total hip replacement",
                "admitted_at": "2026-11-27T09:00:00+08:00",
                "discharged_at": "2026-12-02T15:30:00+08:00",
            },
            "idempotency_key": "his-adt-V0002-A03",
        },
    },
}


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
    responses={
        200: {"description": "Already enrolled: the existing enrollment", "model": EnrollmentOut}
    },
)
async def intake_discharge(
    body: Annotated[DischargeIn, Body(openapi_examples=_DISCHARGE_EXAMPLES)],
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
    ``SUIFANG_IDEMPOTENCY_KEY_HOURS`` (24 h). A scoped token enrolls only into its own
    departments (403 otherwise).

    中文：出院登记并入组随访（患者 + 就诊 + 路径，未指定路径时按匹配规则选择），可幂等重试：
    同一 Idempotency-Key 重发返回同一入组结果（新建 201，已存在 200），同一键不同内容返回 422。
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
    """Journeys filtered by status, pathway, department or patient, paged with ``limit`` and
    ``offset``; staff see their own departments' journeys only. For a ward's follow-up list
    or a patient's journeys.

    中文：随访旅程列表，可按状态、路径、科室、患者筛选并分页；医护人员只能看到本科室的旅程。
    """
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
    """Touchpoints, answers and alerts from the database, progress live from the workflow.
    404 for a journey that does not exist or is outside the caller's departments.

    中文：单个随访旅程的详情：随访节点、患者回答和预警（来自数据库），以及工作流中的实时进度；
    不存在或不在本科室范围内返回 404。
    """
    await in_session_thread(session, scoped_enrollment, principal, enrollment_id, request)
    return await journey_service.journey_detail(runtime, session, enrollment_id)


_ANSWER_EXAMPLES = {
    "zh": {
        "summary": "Answers taken by phone, with the patient's own words",
        "value": {
            "answers": {"chest_pain": "no", "antiplatelet": "every_dose", "bleeding": "no"},
            "text": "最近起床时偶尔有点头晕，其他都好。",
            "touchpoint_key": "day7",
            "source": "staff",
        },
    },
    "en": {
        "summary": "An answer from the patient app",
        "value": {
            "answers": {"chest_pain": "yes"},
            "text": "Some chest tightness after climbing the stairs yesterday evening.",
            "source": "patient",
        },
    },
}


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
    body: Annotated[AnswerIn, Body(openapi_examples=_ANSWER_EXAMPLES)],
    runtime: RuntimeDep,
    session: SessionDep,
    request: Request,
    principal: CanAnswer,
) -> Accepted:
    """Deliver questionnaire answers and/or free text to the journey, as if the patient had
    replied: a nurse who took them by phone, or the patient app. Its alert rules run on them.
    422 with neither answers nor text, or when the journey has ended or not started.

    中文：代患者提交随访问卷答案或文字回复（如护士电话随访、患者 App），随访路径的预警规则随即判断；
    答案和文字都为空、旅程已结束或尚未开始时返回 422。
    """
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


_OBSERVATION_EXAMPLES = {
    "blood_pressure": {
        "summary": "A home blood-pressure monitor's reading",
        "value": {
            "observations": [
                {"indicator": "sbp", "value": 148, "unit": "mmHg"},
                {"indicator": "dbp", "value": 92, "unit": "mmHg"},
                {"indicator": "heart_rate", "value": 76, "unit": "bpm"},
            ],
            "observed_at": "2026-12-05T07:30:00+08:00",
            "source": "device",
        },
    },
    "glucose": {
        "summary": "A fasting glucose entered by a nurse",
        "value": {
            "observations": [{"indicator": "glucose_fasting", "value": 7.8, "unit": "mmol/L"}],
            "observed_at": "2026-12-05T06:45:00+08:00",
        },
    },
}


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
    body: Annotated[ObservationIn, Body(openapi_examples=_OBSERVATION_EXAMPLES)],
    runtime: RuntimeDep,
    session: SessionDep,
    request: Request,
    principal: CanAnswer,
) -> Accepted:
    """Hand measurements (indicator, value, unit) to the journey, whose alert rules judge
    them: from a home device feed, the patient app or a staff entry. 422 when the journey
    has ended or not started.

    中文：向随访旅程提交测量值（血压、血糖等指标），由路径的预警规则判断；来源可为家用设备、
    患者 App 或医护录入。旅程已结束或尚未开始时返回 422。
    """
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


_RESCHEDULE_EXAMPLES = {
    "shift": {
        "summary": "Everything still to come a week later",
        "value": {"shift_days": 7},
    },
    "next": {
        "summary": "Only the next touchpoint, to a given time",
        "value": {"next_due": "2026-12-10T10:00:00+08:00"},
    },
}


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
    body: Annotated[RescheduleIn, Body(openapi_examples=_RESCHEDULE_EXAMPLES)],
    runtime: RuntimeDep,
    session: SessionDep,
    request: Request,
    principal: CanAct,
) -> Accepted:
    """Shift the rest of the schedule by ``shift_days`` (e.g. the patient is travelling), or
    move only the next touchpoint to ``next_due``. 422 if the journey cannot take it.

    中文：调整随访计划：将后续所有随访节点顺延 ``shift_days`` 天（如患者外出），或只把下一次随访改到
    ``next_due``；旅程无法调整时返回 422。
    """
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
_CONTROL_EXAMPLES = {
    "zh": {
        "summary": "pause: the patient is away",
        "value": {"reason": "患者回老家探亲一个月，暂停随访"},
    },
    "en": {
        "summary": "readmitted: when it happened",
        "value": {"reason": "Readmitted with chest pain", "at": "2026-12-12T21:40:00+08:00"},
    },
}


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
    body: Annotated[ControlIn | None, Body(openapi_examples=_CONTROL_EXAMPLES)] = None,
) -> Accepted:
    """Steer a journey: ``pause``, ``resume`` or ``stop`` it, or report that the patient was
    ``readmitted`` or is ``deceased`` (``at``: when). The body is optional. 422 if the journey
    cannot take the action (e.g. pausing one that has ended); a readmission reported after
    the journey ended is still recorded.

    中文：控制随访旅程：暂停、恢复、终止，或登记患者再入院、死亡（``at`` 为发生时间），
    请求体可省略；旅程无法执行该操作（如暂停已结束的旅程）时返回 422；
    旅程结束后登记的再入院仍会记录。
    """
    await in_session_thread(session, scoped_enrollment, principal, enrollment_id, request)
    body = body or ControlIn()
    await journey_service.control_journey(
        runtime, session, enrollment_id, ControlEvent(action=action, reason=body.reason, at=body.at)
    )
    return Accepted(detail=f"journey {enrollment_id}: {action} accepted")
