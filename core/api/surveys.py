"""Satisfaction survey campaigns (满意度调查): start one, record a patient's answers, read the
results by department, ward and doctor."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Request, status
from pydantic import BaseModel
from sqlmodel import Session

from suifang.core.api.deps import RuntimeDep, SessionDep
from suifang.core.api.security import audit_patients, require, require_patient_in_scope
from suifang.core.db import in_thread
from suifang.core.errors import NotFoundError
from suifang.core.models import SurveyInvitation
from suifang.core.runtime import Runtime
from suifang.core.security.auth import Permission, Principal
from suifang.workflows.surveys import (
    AnswersIn,
    CampaignIn,
    SurveyResults,
    campaign_results,
    record_answers,
    start_campaign,
)

router = APIRouter(tags=["surveys"])

CanManage = Annotated[Principal, Depends(require(Permission.PATHWAYS_WRITE))]
CanAnswer = Annotated[Principal, Depends(require(Permission.JOURNEYS_ANSWER))]
CanReport = Annotated[Principal, Depends(require(Permission.REPORTS_READ))]


_CAMPAIGN_EXAMPLES = {
    "monthly": {
        "summary": "Cardiology's discharges, surveyed monthly for three months",
        "value": {
            "name": "心内科出院患者满意度",
            "department": "cardiology",
            "discharged_from": "2026-11-01",
            "discharged_to": "2026-11-30",
            "rounds": 3,
            "every_days": 30,
            "channels": ["wechat", "sms"],
        },
    },
    "once": {
        "summary": "Every department's discharges of one week, once",
        "value": {
            "name": "全院出院患者满意度（第48周）",
            "discharged_from": "2026-11-23",
            "discharged_to": "2026-11-29",
        },
    },
}
_ANSWER_EXAMPLES = {
    "scores": {
        "summary": "Scores and a comment (the comment opens a feedback ticket)",
        "value": {
            "answers": {
                "doctor_communication": 5,
                "nurse_care": 5,
                "ward_environment": 4,
                "food": 2,
                "costs": 4,
                "overall": 4,
                "recommend": 5,
            },
            "comment": "饭菜太咸了",
        },
    }
}


class CampaignOut(BaseModel):
    id: int
    name: str
    survey: str
    status: str
    workflow_id: str


class AnswerOut(BaseModel):
    invitation_id: int
    status: str
    ticket_id: int | None


@router.post(
    "/surveys/campaigns",
    response_model=CampaignOut,
    status_code=status.HTTP_201_CREATED,
    summary="Start a satisfaction survey campaign",
)
async def create_campaign(
    body: Annotated[CampaignIn, Body(openapi_examples=_CAMPAIGN_EXAMPLES)],
    runtime: RuntimeDep,
    principal: CanManage,
) -> CampaignOut:
    """Survey the patients discharged in a period (a department's, or all) over the channels,
    once or in rounds ``every_days`` apart, each round's period moved on by that much. The
    campaign is a durable workflow; results build up as patients answer.

    中文：对某期间（某科室或全院）出院患者发起满意度调查，经各渠道发送，可一次或按 ``every_days``
    周期多轮发送（每轮的出院期间随之顺延）。调查活动为持久化工作流，结果随患者作答累积。
    """
    campaign = await start_campaign(runtime, body, actor=principal.username)
    return CampaignOut(
        id=campaign.id,  # type: ignore[arg-type]
        name=campaign.name,
        survey=campaign.survey_id,
        status=campaign.status,
        workflow_id=campaign.workflow_id,
    )


@router.post(
    "/surveys/invitations/{invitation_id}/answers",
    response_model=AnswerOut,
    summary="A patient's survey answers (from the patient app or a phone call)",
)
async def answer_invitation(
    invitation_id: int,
    body: Annotated[AnswersIn, Body(openapi_examples=_ANSWER_EXAMPLES)],
    request: Request,
    runtime: RuntimeDep,
    principal: CanAnswer,
) -> AnswerOut:
    """Scores on the survey's scale (1–5), and a comment that opens a ticket the triage routes
    like any feedback (low scores make it a low-satisfaction ticket). Each invitation is
    answered once; 404 outside the caller's departments.

    中文：患者的调查评分（1–5 分）及意见；意见会生成工单，由分诊像其他反馈一样转给负责科室（低分
    则为低满意度工单）。每份问卷只能作答一次；不在本科室范围内返回 404。
    """
    patient_id = await in_thread(_invitation_in_scope, runtime, principal, invitation_id)
    audit_patients(request, patient_id)
    answered = await record_answers(runtime, invitation_id, body, actor=principal.username)
    return AnswerOut(
        invitation_id=invitation_id, status=answered.status, ticket_id=answered.ticket_id
    )


def _invitation_in_scope(runtime: Runtime, principal: Principal, invitation_id: int) -> int:
    """The invitation's patient, if the caller may see them (else 404)."""
    with Session(runtime.engine) as session:
        invitation = session.get(SurveyInvitation, invitation_id)
        if invitation is None:
            raise NotFoundError(f"no survey invitation {invitation_id}")
        require_patient_in_scope(session, principal, invitation.patient_id)
        return invitation.patient_id


@router.get(
    "/surveys/campaigns/{campaign_id}/results",
    response_model=SurveyResults,
    summary="A campaign's response rates and scores by department, ward and doctor",
)
def results(campaign_id: int, session: SessionDep, principal: CanReport) -> SurveyResults:
    """Invited, delivered and answered, the response rate, and the mean score of each question,
    overall and by department, ward and doctor. Staff see their own departments' patients.

    中文：调查的邀请数、送达数、作答数和应答率，以及各题平均分（总体及按科室、病区、医生）。
    医护人员只能看到本科室患者的结果。
    """
    return campaign_results(session, campaign_id, scope=principal.scope)
