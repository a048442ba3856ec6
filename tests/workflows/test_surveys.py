"""Issue 24: a satisfaction campaign runs end to end on the real workflow — invitations over
the channels, answers recorded, a comment triaged to its department, results by department,
ward and doctor with response rates, the next round a period later."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import httpx
from sqlmodel import Session, select
from temporalio.testing import WorkflowEnvironment

from suifang.core.api import create_app
from suifang.core.models import Message, SurveyCampaign, SurveyInvitation, Ticket
from suifang.core.runtime import Runtime
from suifang.core.security.auth import Role, create_user, issue_token
from suifang.workflows.intake import DischargeIn, register_discharge

BASE = "http://suifang.test"
SCORES = {
    "doctor_communication": 5,
    "nurse_care": 5,
    "ward_environment": 4,
    "food": 1,
    "costs": 4,
    "overall": 4,
    "recommend": 5,
}


def token(runtime: Runtime, username: str, role: Role, departments: list[str] | None) -> dict:
    with Session(runtime.engine) as session:
        user = create_user(
            session, username=username, display_name=username, role=role, departments=departments
        )
        value, _ = issue_token(session, user, name="t")
    return {"Authorization": f"Bearer {value}"}


def discharge(number: str, department: str, pathway: str, at: dt.datetime) -> DischargeIn:
    return DischargeIn.model_validate(
        {
            "pathway": pathway,
            "patient": {
                "external_id": f"S-{number}",
                "name": "孙丽",
                "preferred_channels": ["outbox"],
            },
            "encounter": {
                "external_id": f"V-S-{number}",
                "department": department,
                "ward": f"{department}-5A",
                "attending_doctor": f"{department}-李医生",
                "discharged_at": at.isoformat(),
            },
        }
    )


async def until(check: Any, seconds: float = 15.0) -> Any:
    for _ in range(int(seconds / 0.1)):
        if found := check():
            return found
        await asyncio.sleep(0.1)
    raise AssertionError("the condition never held")


def rows(runtime: Runtime, model: Any) -> list[Any]:
    with Session(runtime.engine) as session:
        return list(session.exec(select(model)).all())


async def test_a_campaign_invites_records_triages_and_reports_round_after_round(
    runtime: Runtime, journey_worker: WorkflowEnvironment, cli: Any
) -> None:
    now = await journey_worker.get_current_time()
    for number, department, pathway in (
        ("1", "cardiology", "pci"),
        ("2", "orthopaedics", "hip-replacement"),
    ):
        await register_discharge(
            runtime, discharge(number, department, pathway, now - dt.timedelta(days=2))
        )
    admin = token(runtime, "root", Role.ADMIN, None)
    nurse = token(runtime, "wang", Role.NURSE, ["cardiology"])
    day = now.date()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(runtime)), base_url=BASE
    ) as api:
        started = await api.post(
            "/surveys/campaigns",
            json={
                "name": "出院患者满意度",
                "discharged_from": (day - dt.timedelta(days=7)).isoformat(),
                "discharged_to": day.isoformat(),
                "rounds": 2,
                "every_days": 30,
                "channels": ["outbox"],
            },
            headers=admin,
        )
        assert started.status_code == 201, started.text
        campaign = started.json()

        def sent() -> list[SurveyInvitation]:
            found = [i for i in rows(runtime, SurveyInvitation) if i.status == "sent"]
            return found if len(found) == 2 else []

        invitations = {i.department_code: i for i in await until(sent)}
        surveys = [m for m in rows(runtime, Message) if m.kind == "survey"]
        assert len(surveys) == 2
        assert all("1-5" in m.body or "1 to 5" in m.body for m in surveys)

        cardiology = invitations["cardiology"]
        answered = await api.post(
            f"/surveys/invitations/{cardiology.id}/answers",
            json={"answers": SCORES, "comment": "食堂的饭菜太咸了，老人吃不了"},
            headers=admin,
        )
        assert answered.status_code == 200, answered.text
        again = await api.post(
            f"/surveys/invitations/{cardiology.id}/answers", json={"answers": SCORES}, headers=admin
        )
        off_scale = await api.post(
            f"/surveys/invitations/{invitations['orthopaedics'].id}/answers",
            json={"answers": {"overall": 7, "parking": 3}},
            headers=admin,
        )
        results = (
            await api.get(f"/surveys/campaigns/{campaign['id']}/results", headers=admin)
        ).json()
        mine = (await api.get(f"/surveys/campaigns/{campaign['id']}/results", headers=nurse)).json()
        once_without_period = await api.post(
            "/surveys/campaigns",
            json={
                "name": "x",
                "discharged_from": "2026-11-01",
                "discharged_to": "2026-11-30",
                "rounds": 3,
            },
            headers=admin,
        )

    assert again.status_code == 422
    assert "answered already" in again.json()["error"]["message"]
    assert off_scale.status_code == 422
    assert "7 is not from 1 to 5" in off_scale.json()["error"]["message"]
    assert "parking: not a question" in off_scale.json()["error"]["message"]
    assert once_without_period.status_code == 422

    ticket_id = answered.json()["ticket_id"]
    assert ticket_id is not None

    def routed() -> Ticket | None:
        ticket = next(t for t in rows(runtime, Ticket) if t.id == ticket_id)
        return ticket if ticket.department_code else None

    ticket = await until(routed)
    assert ticket.department_code == "catering", "the comment is triaged as food feedback"
    assert ticket.source == "low_satisfaction"

    assert (results["invited"], results["delivered"], results["answered"]) == (2, 2, 1)
    assert results["response_rate"] == 0.5
    assert results["mean_by_question"]["food"] == 1.0
    departments = {g["group"]: g for g in results["by_department"]}
    assert departments["cardiology"]["response_rate"] == 1.0
    assert departments["orthopaedics"]["response_rate"] == 0.0
    assert departments["cardiology"]["overall"] == round(sum(SCORES.values()) / 7, 2)
    assert {g["group"] for g in results["by_ward"]} == {"cardiology-5A", "orthopaedics-5A"}
    assert {g["group"] for g in results["by_doctor"]} == {
        "cardiology-李医生",
        "orthopaedics-李医生",
    }
    assert results["comments_ticketed"] == 1
    assert mine["invited"] == 1, "a cardiology nurse sees cardiology's patients only"

    # The second round, a month on, surveys the period a month later: nobody was discharged then.
    await journey_worker.sleep(dt.timedelta(days=31))

    def finished() -> bool:
        return rows(runtime, SurveyCampaign)[0].status == "finished"

    await until(finished)
    assert {i.round for i in rows(runtime, SurveyInvitation)} == {0}

    code, out, err = cli("surveys", "results", str(campaign["id"]))
    assert code == 0, out + err
    assert "50%" in out
    assert "cardiology" in out
