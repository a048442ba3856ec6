"""Satisfaction survey campaigns (满意度调查): a cohort surveyed over the channels, once or
periodically; answers recorded, comments triaged as feedback, results by department, ward and
doctor with response rates.

A campaign is a Temporal workflow (:class:`SurveyCampaignWorkflow`): each round is an activity
that invites the patients discharged in the round's period (the campaign's period moved on by
``round × every_days``) through the delivery cascade, then the workflow sleeps until the next.
Answers come from the hospital's patient app or a phone call (``POST
/surveys/invitations/{id}/answers``, ``suifang surveys answer``); a comment opens a ticket the
triage routes like any feedback.
"""

from __future__ import annotations

import datetime as dt
import functools
import statistics
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
import yaml
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import Session, col, select
from temporalio import activity

from suifang.core.db import in_thread, utcnow
from suifang.core.delivery import DeliveryRequest, deliver
from suifang.core.enums import TicketSource
from suifang.core.errors import NotFoundError, ValidationFailed
from suifang.core.models import Department, Encounter, Patient, SurveyCampaign, SurveyInvitation
from suifang.core.pathways import LocalizedText
from suifang.core.rendering import address_patient
from suifang.core.runtime import Runtime
from suifang.tickets.service import TicketIn, open_ticket

__all__ = [
    "CampaignIn",
    "CampaignInput",
    "RoundInput",
    "SurveyActivities",
    "SurveyResults",
    "campaign_results",
    "load_survey",
    "record_answers",
    "start_campaign",
]

_SURVEYS = Path(__file__).resolve().parent.parent / "templates" / "surveys"
DEFAULT_CHANNELS = ["wechat", "sms", "outbox"]


class SurveyQuestion(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    text: LocalizedText


class Scale(BaseModel):
    min: int
    max: int


class Survey(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    name: LocalizedText
    scale: Scale
    questions: list[SurveyQuestion]
    message: LocalizedText


@functools.lru_cache(maxsize=8)
def load_survey(survey_id: str) -> Survey:
    path = _SURVEYS / f"{survey_id}.yaml"
    known = sorted(p.stem for p in _SURVEYS.glob("*.yaml"))
    if survey_id not in known:
        raise ValidationFailed(f"survey: unknown survey {survey_id!r} (known: {', '.join(known)})")
    return Survey.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))


class CampaignIn(BaseModel):
    """A campaign: who (discharged when, from which department), which survey, how often."""

    name: str = Field(min_length=1, max_length=128)
    survey: str = Field("inpatient-satisfaction", max_length=64)
    department: str | None = Field(None, max_length=64, description="Omitted: every department.")
    discharged_from: dt.date
    discharged_to: dt.date
    rounds: int = Field(1, ge=1, le=120, description="1: once; more: periodic.")
    every_days: int | None = Field(
        None, ge=1, le=366, description="Days between rounds; each round's period moves on by it."
    )
    channels: list[str] = Field(default_factory=lambda: list(DEFAULT_CHANNELS), max_length=8)

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "心内科11月出院患者满意度",
                    "department": "cardiology",
                    "discharged_from": "2026-11-01",
                    "discharged_to": "2026-11-30",
                    "rounds": 3,
                    "every_days": 30,
                    "channels": ["wechat", "sms"],
                }
            ]
        }
    )


class AnswersIn(BaseModel):
    answers: dict[str, int] = Field(description="Question id → score on the survey's scale.")
    comment: str | None = Field(
        None, max_length=2000, description="Free text: triaged as feedback."
    )

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "answers": {
                        "doctor_communication": 5,
                        "nurse_care": 5,
                        "ward_environment": 4,
                        "food": 2,
                        "costs": 4,
                        "overall": 4,
                        "recommend": 5,
                    },
                    "comment": "饭菜太咸了，其他都很好",
                }
            ]
        }
    )


class RoundInput(BaseModel):
    campaign_id: int
    round: int


class CampaignInput(BaseModel):
    campaign_id: int
    rounds: int
    every_days: int | None


class SurveyActivities:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def all(self) -> list[Any]:
        return [self.send_survey_round, self.finish_campaign]

    @activity.defn(name="send_survey_round")
    async def send_survey_round(self, request: RoundInput) -> int:
        """Invite every patient of the round's cohort (once each: a retry sends nothing twice)."""
        invitations = await in_thread(_invite, self.runtime, request.campaign_id, request.round)
        for invitation_id in invitations:
            await _send(self.runtime, invitation_id)
            activity.heartbeat()
        return len(invitations)

    @activity.defn(name="finish_campaign")
    def finish_campaign(self, campaign_id: int) -> None:
        with Session(self.runtime.engine) as session:
            campaign = session.get(SurveyCampaign, campaign_id)
            if campaign is not None and campaign.status == "running":
                campaign.status = "finished"
                session.add(campaign)
                session.commit()


def _round_window(campaign: SurveyCampaign, number: int) -> tuple[dt.date, dt.date]:
    shift = dt.timedelta(days=(campaign.every_days or 0) * number)
    return campaign.discharged_from + shift, campaign.discharged_to + shift


def _invite(runtime: Runtime, campaign_id: int, number: int) -> list[int]:
    """The round's invitations, created once (ids of those not yet sent)."""
    zone = ZoneInfo(runtime.settings.timezone)
    with Session(runtime.engine) as session:
        campaign = session.get(SurveyCampaign, campaign_id)
        if campaign is None:
            return []
        first, last = _round_window(campaign, number)
        lo = dt.datetime.combine(first, dt.time(), zone).astimezone(dt.UTC)
        hi = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), zone).astimezone(dt.UTC)
        query = select(Encounter).where(
            col(Encounter.discharged_at) >= lo, col(Encounter.discharged_at) < hi
        )
        if campaign.department_code:
            query = query.where(Encounter.department_code == campaign.department_code)
        existing = {
            row.encounter_id
            for row in session.exec(
                select(SurveyInvitation).where(
                    SurveyInvitation.campaign_id == campaign_id, SurveyInvitation.round == number
                )
            )
        }
        for encounter in session.exec(query):
            if encounter.id in existing:
                continue
            session.add(
                SurveyInvitation(
                    campaign_id=campaign_id,
                    round=number,
                    patient_id=encounter.patient_id,
                    encounter_id=encounter.id,
                    department_code=encounter.department_code,
                    ward=encounter.ward,
                    doctor=encounter.attending_doctor,
                )
            )
        session.commit()
        pending = session.exec(
            select(SurveyInvitation.id).where(
                SurveyInvitation.campaign_id == campaign_id,
                SurveyInvitation.round == number,
                SurveyInvitation.status == "pending",
            )
        ).all()
    return [i for i in pending if i is not None]


async def _send(runtime: Runtime, invitation_id: int) -> None:
    request = await in_thread(_delivery_request, runtime, invitation_id)
    if request is None:
        return
    outcome = await deliver(runtime.engine, runtime.channels, request)
    await in_thread(_mark_sent, runtime, invitation_id, outcome.delivered, outcome.channel)


def _delivery_request(runtime: Runtime, invitation_id: int) -> DeliveryRequest | None:
    with Session(runtime.engine) as session:
        invitation = session.get(SurveyInvitation, invitation_id)
        campaign = session.get(SurveyCampaign, invitation.campaign_id) if invitation else None
        patient = session.get(Patient, invitation.patient_id) if invitation else None
        if invitation is None or campaign is None or patient is None:
            return None  # deleted meanwhile (the patient's data erased): nothing to send
        department = session.get(Department, invitation.department_code)
        survey = load_survey(campaign.survey_id)
        locale = patient.locale if patient.locale in ("zh-CN", "en") else "zh-CN"
        body = jinja2.Template(survey.message.get(locale)).render(
            name=address_patient(
                patient.name,
                sex=patient.sex,
                birth_date=patient.birth_date,
                locale=locale,
                today=utcnow().date(),
            ),
            department=(department.name_en if locale == "en" else department.name_zh)
            if department
            else invitation.department_code,
            invitation=invitation.id,
        )
        return DeliveryRequest(
            idempotency_key=f"survey-{campaign.id}-{invitation.round}-{invitation.encounter_id}",
            patient_id=patient.id,  # type: ignore[arg-type]
            kind="survey",
            subject=survey.name.get(locale),
            body=body,
            locale=locale,
            channels=list(campaign.channels or DEFAULT_CHANNELS),
        )


def _mark_sent(runtime: Runtime, invitation_id: int, delivered: bool, channel: str | None) -> None:
    with Session(runtime.engine) as session:
        invitation = session.get(SurveyInvitation, invitation_id)
        if invitation is None:
            return
        invitation.status = "sent" if delivered else "undeliverable"
        invitation.channel = channel
        invitation.sent_at = utcnow()
        session.add(invitation)
        session.commit()


# --------------------------------------------------------------------------- starting


async def start_campaign(runtime: Runtime, data: CampaignIn, *, actor: str) -> SurveyCampaign:
    """Check the campaign, record it and start its workflow."""
    load_survey(data.survey)
    if data.discharged_from > data.discharged_to:
        raise ValidationFailed(
            f"discharged_from ({data.discharged_from}) is after "
            f"discharged_to ({data.discharged_to})"
        )
    if data.rounds > 1 and data.every_days is None:
        raise ValidationFailed("every_days: required when rounds is more than 1")
    unknown = [c for c in data.channels if c not in runtime.plugins.channel_classes()]
    if unknown:
        raise ValidationFailed(f"channels: not installed: {', '.join(unknown)}")
    campaign = await in_thread(_record_campaign, runtime, data, actor)
    client = await runtime.client()
    await client.start_workflow(
        "SurveyCampaign",
        CampaignInput(
            campaign_id=campaign.id,  # type: ignore[arg-type]
            rounds=campaign.rounds,
            every_days=campaign.every_days,
        ),
        id=campaign.workflow_id,
        task_queue=runtime.settings.task_queue,
    )
    return campaign


def _record_campaign(runtime: Runtime, data: CampaignIn, actor: str) -> SurveyCampaign:
    with Session(runtime.engine, expire_on_commit=False) as session:
        if data.department and session.get(Department, data.department) is None:
            raise ValidationFailed(f"department: unknown department {data.department!r}")
        campaign = SurveyCampaign(
            name=data.name,
            survey_id=data.survey,
            department_code=data.department,
            discharged_from=data.discharged_from,
            discharged_to=data.discharged_to,
            rounds=data.rounds,
            every_days=data.every_days,
            channels=data.channels,
            workflow_id=f"survey-campaign-{uuid.uuid4().hex}",
            created_by=actor,
        )
        session.add(campaign)
        session.commit()
        return campaign


# --------------------------------------------------------------------------- answers


async def record_answers(
    runtime: Runtime, invitation_id: int, data: AnswersIn, *, actor: str
) -> SurveyInvitation:
    """Keep the patient's scores (each on the survey's scale); a comment opens a ticket that
    the triage routes as feedback. A second answer to the same invitation is refused."""
    invitation, low = await in_thread(_keep_answers, runtime, invitation_id, data)
    if invitation.comment:
        ticket = await open_ticket(
            runtime,
            TicketIn(
                patient_id=invitation.patient_id,
                text=invitation.comment,
                source=TicketSource.LOW_SATISFACTION if low else TicketSource.PATIENT_MESSAGE,
                idempotency_key=f"survey-invitation-{invitation.id}",
            ),
            actor=actor,
        )
        invitation = await in_thread(_link_ticket, runtime, invitation_id, ticket.id)
    return invitation


def _keep_answers(
    runtime: Runtime, invitation_id: int, data: AnswersIn
) -> tuple[SurveyInvitation, bool]:
    """The invitation answered, and whether any score is low (the bottom two of the scale)."""
    with Session(runtime.engine, expire_on_commit=False) as session:
        invitation = session.get(SurveyInvitation, invitation_id)
        if invitation is None:
            raise NotFoundError(f"no survey invitation {invitation_id}")
        if invitation.answered_at is not None:
            raise ValidationFailed(f"invitation {invitation_id} was answered already")
        campaign = session.get(SurveyCampaign, invitation.campaign_id)
        assert campaign is not None
        survey = load_survey(campaign.survey_id)
        questions = {q.id for q in survey.questions}
        problems = [
            f"answers.{k}: not a question of {survey.id}"
            for k in data.answers
            if k not in questions
        ]
        problems += [
            f"answers.{k}: {v} is not from {survey.scale.min} to {survey.scale.max}"
            for k, v in data.answers.items()
            if k in questions and not survey.scale.min <= v <= survey.scale.max
        ]
        if not data.answers and not data.comment:
            problems.append("answers: give at least one score or a comment")
        if problems:
            raise ValidationFailed("; ".join(problems))
        invitation.answers = dict(data.answers)
        invitation.comment = (data.comment or "").strip() or None
        invitation.answered_at = utcnow()
        invitation.status = "answered"
        session.add(invitation)
        session.commit()
        low = any(v <= survey.scale.min + 1 for v in data.answers.values())
        return invitation, low


def _link_ticket(runtime: Runtime, invitation_id: int, ticket_id: int) -> SurveyInvitation:
    with Session(runtime.engine, expire_on_commit=False) as session:
        row = session.get(SurveyInvitation, invitation_id)
        assert row is not None
        row.ticket_id = ticket_id
        session.add(row)
        session.commit()
        return row


# --------------------------------------------------------------------------- results


class GroupResult(BaseModel):
    group: str
    invited: int
    answered: int
    response_rate: float | None
    mean_by_question: dict[str, float]
    overall: float | None = Field(description="Mean of every score given.")


class SurveyResults(BaseModel):
    campaign_id: int
    name: str
    survey: str
    status: str
    invited: int
    delivered: int
    answered: int
    response_rate: float | None
    mean_by_question: dict[str, float]
    by_department: list[GroupResult]
    by_ward: list[GroupResult]
    by_doctor: list[GroupResult]
    comments_ticketed: int


def _group(name: str, rows: list[SurveyInvitation]) -> GroupResult:
    answered = [r for r in rows if r.answers]
    scores: dict[str, list[int]] = defaultdict(list)
    for row in answered:
        for question, value in (row.answers or {}).items():
            scores[question].append(value)
    every = [v for values in scores.values() for v in values]
    return GroupResult(
        group=name,
        invited=len(rows),
        answered=len(answered),
        response_rate=round(len(answered) / len(rows), 3) if rows else None,
        mean_by_question={q: round(statistics.fmean(v), 2) for q, v in sorted(scores.items())},
        overall=round(statistics.fmean(every), 2) if every else None,
    )


def campaign_results(
    session: Session, campaign_id: int, *, scope: list[str] | None = None
) -> SurveyResults:
    """Response rates and mean scores, overall and by department, ward and doctor (only the
    caller's departments' invitations when ``scope`` is given)."""
    campaign = session.get(SurveyCampaign, campaign_id)
    if campaign is None:
        raise NotFoundError(f"no survey campaign {campaign_id}")
    query = select(SurveyInvitation).where(SurveyInvitation.campaign_id == campaign_id)
    if scope is not None:
        query = query.where(col(SurveyInvitation.department_code).in_(scope))
    rows = list(session.exec(query.order_by(col(SurveyInvitation.id))))
    whole = _group("all", rows)

    def by(key: Any) -> list[GroupResult]:
        groups: dict[str, list[SurveyInvitation]] = defaultdict(list)
        for row in rows:
            groups[key(row) or "-"].append(row)
        return [_group(name, members) for name, members in sorted(groups.items())]

    return SurveyResults(
        campaign_id=campaign_id,
        name=campaign.name,
        survey=campaign.survey_id,
        status=campaign.status,
        invited=whole.invited,
        delivered=sum(1 for r in rows if r.status in ("sent", "answered")),
        answered=whole.answered,
        response_rate=whole.response_rate,
        mean_by_question=whole.mean_by_question,
        by_department=by(lambda r: r.department_code),
        by_ward=by(lambda r: r.ward),
        by_doctor=by(lambda r: r.doctor),
        comments_ticketed=sum(1 for r in rows if r.ticket_id is not None),
    )
