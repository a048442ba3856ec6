"""Scoped integrator tokens (issue 19, finding 9): a feed's token reaches its departments and
the routes its feed needs, nothing more; a hospital-wide token is an explicit, visible choice."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlmodel import Session, select
from temporalio.testing import WorkflowEnvironment

from suifang.core.api import create_app
from suifang.core.db import UTCDateTime, create_db_engine, migrate
from suifang.core.models import ApiToken, Observation, Patient, StaffUser, Ticket
from suifang.core.runtime import Runtime
from suifang.core.security.auth import Role, Scope, create_user, issue_token
from suifang.workflows.intake import DischargeIn, register_discharge

BASE = "http://suifang.test"


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def account(
    runtime: Runtime, username: str, role: Role, departments: list[str] | None = None
) -> int:
    with Session(runtime.engine) as session:
        user = create_user(
            session, username=username, display_name=username, role=role, departments=departments
        )
        return user.id  # type: ignore[return-value]


def integrator_token(runtime: Runtime, username: str, **limits: Any) -> str:
    """A new integrator account's token, limited by ``limits`` (departments, scopes, unscoped)."""
    user_id = account(runtime, username, Role.INTEGRATOR)
    with Session(runtime.engine) as session:
        user = session.get(StaffUser, user_id)
        assert user is not None
        value, _ = issue_token(session, user, name="feed", **limits)
        return value


def discharge(
    external_id: str, department: str, pathway: str, discharged: dt.datetime
) -> dict[str, Any]:
    return {
        "pathway": pathway,
        "patient": {"external_id": external_id, "name": "冯晓梅", "preferred_channels": ["outbox"]},
        "encounter": {
            "external_id": f"V-{external_id}",
            "department": department,
            "discharged_at": discharged.isoformat(),
        },
    }


async def settle(check: Callable[[], Any], *, seconds: float = 10) -> Any:
    for _ in range(int(seconds / 0.05)):
        if value := check():
            return value
        await asyncio.sleep(0.05)
    raise AssertionError("the condition never held")


@pytest.fixture
async def hospital(
    runtime: Runtime, journey_worker: WorkflowEnvironment
) -> AsyncIterator[dict[str, Any]]:
    """A cardiology journey, an orthopaedics journey with an orthopaedics ticket, an API."""
    now = await journey_worker.get_current_time()
    ids: dict[str, Any] = {}
    for label, department, pathway in (
        ("cardiology", "cardiology", "pci"),
        ("orthopaedics", "orthopaedics", "hip-replacement"),
    ):
        out = await register_discharge(
            runtime,
            DischargeIn.model_validate(discharge(f"SCOPE-{label}", department, pathway, now)),
        )
        assert out.department == department
        ids[label] = {"enrollment": out.enrollment_id, "patient": out.patient_id}
    app = create_app(runtime)
    admin_id = account(runtime, "root", Role.ADMIN)
    with Session(runtime.engine) as session:
        admin = session.get(StaffUser, admin_id)
        assert admin is not None
        admin_token, _ = issue_token(session, admin, name="root")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as client:
        opened = await client.post(
            "/tickets",
            json={
                "patient_id": ids["orthopaedics"]["patient"],
                "text": "伤口换药要预约吗",
                "enrollment_id": ids["orthopaedics"]["enrollment"],
                "department": "orthopaedics",
            },
            headers=bearer(admin_token),
        )
        assert opened.status_code == 201, opened.text
        ticket_id = opened.json()["id"]

        def routed() -> bool:
            with Session(runtime.engine) as session:
                ticket = session.get(Ticket, ticket_id)
                return ticket is not None and ticket.department_code == "orthopaedics"

        await settle(routed)
        yield {**ids, "ticket": ticket_id, "client": client, "admin": admin_token}


async def test_a_scoped_integrator_token_cannot_reach_another_department_s_patients(
    runtime: Runtime, hospital: dict[str, Any]
) -> None:
    """The attack: a cardiology feed's token posting answers and observations to an
    orthopaedics journey, stopping contact with an orthopaedics patient, relaying events on
    an orthopaedics ticket, opening tickets for that patient. Each looks like "no such
    thing", and changes nothing."""
    client: httpx.AsyncClient = hospital["client"]
    feed = bearer(
        integrator_token(runtime, "cardio-app", departments=["cardiology"], scopes=list(Scope))
    )
    theirs, mine = hospital["orthopaedics"], hospital["cardiology"]
    attacks = [
        ("POST", f"/journeys/{theirs['enrollment']}/answers", {"answers": {"pain": 2}}),
        (
            "POST",
            f"/journeys/{theirs['enrollment']}/observations",
            {"observations": [{"indicator": "pain_score", "value": 9}]},
        ),
        ("POST", f"/patients/{theirs['patient']}/do-not-contact", {"source": "app"}),
        (
            "POST",
            f"/tickets/{hospital['ticket']}/patient-events",
            {"kind": "satisfaction", "score": 1},
        ),
        ("POST", "/tickets", {"patient_id": theirs["patient"], "text": "我要投诉"}),
        # Its own patient, but another department's journey.
        (
            "POST",
            "/tickets",
            {"patient_id": mine["patient"], "text": "复查", "enrollment_id": theirs["enrollment"]},
        ),
    ]
    for method, path, body in attacks:
        refused = await client.request(method, path, json=body, headers=feed)
        assert refused.status_code == 404, (path, refused.status_code, refused.text)
    with Session(runtime.engine) as session:
        patient = session.get(Patient, theirs["patient"])
        assert patient is not None
        assert not patient.do_not_contact
        assert (
            session.exec(
                select(Observation).where(Observation.patient_id == theirs["patient"])
            ).all()
            == []
        )
        assert len(session.exec(select(Ticket)).all()) == 1  # only the admin's

    # The same token does its job in its own department.
    answered = await client.post(
        f"/journeys/{mine['enrollment']}/observations",
        json={"observations": [{"indicator": "systolic_bp", "value": 128, "unit": "mmHg"}]},
        headers=feed,
    )
    assert answered.status_code == 202, answered.text
    stopped = await client.post(
        f"/patients/{mine['patient']}/do-not-contact", json={"source": "app"}, headers=feed
    )
    assert stopped.status_code == 200, stopped.text
    assert stopped.json()["stopped_journeys"] == [mine["enrollment"]]


async def test_a_scoped_integrator_token_cannot_enroll_or_route_into_another_department(
    runtime: Runtime, hospital: dict[str, Any], journey_worker: WorkflowEnvironment
) -> None:
    client: httpx.AsyncClient = hospital["client"]
    feed = bearer(
        integrator_token(runtime, "cardio-his", departments=["cardiology"], scopes=list(Scope))
    )
    now = await journey_worker.get_current_time()
    enrolled = await client.post(
        "/intake/discharges",
        json=discharge("SCOPE-NEW", "orthopaedics", "hip-replacement", now),
        headers=feed,
    )
    assert enrolled.status_code == 403, enrolled.text
    assert "encounter.department" in enrolled.text
    assert "cardiology" in enrolled.text
    with Session(runtime.engine) as session:
        assert (
            session.exec(select(Patient).where(Patient.external_id == "SCOPE-NEW")).first() is None
        )
    # A cardiology discharge onto an orthopaedics pathway: its journey would be orthopaedics'.
    rerouted = await client.post(
        "/intake/discharges",
        json=discharge("SCOPE-NEW", "cardiology", "hip-replacement", now),
        headers=feed,
    )
    assert rerouted.status_code == 403, rerouted.text
    assert "pathway 'hip-replacement'" in rerouted.json()["error"]["message"]
    with Session(runtime.engine) as session:
        assert (
            session.exec(select(Patient).where(Patient.external_id == "SCOPE-NEW")).first() is None
        )
    routed = await client.post(
        "/tickets",
        json={
            "patient_id": hospital["cardiology"]["patient"],
            "text": "想换个骨科医生",
            "department": "orthopaedics",
        },
        headers=feed,
    )
    assert routed.status_code == 403, routed.text
    assert "department" in routed.json()["error"]["message"]
    ok = await client.post(
        "/intake/discharges",
        json=discharge("SCOPE-NEW", "cardiology", "pci", now),
        headers=feed,
    )
    assert ok.status_code == 201, ok.text


async def test_a_scoped_integrator_token_calls_only_the_routes_of_its_scopes(
    runtime: Runtime, hospital: dict[str, Any]
) -> None:
    client: httpx.AsyncClient = hospital["client"]
    answers_only = bearer(
        integrator_token(runtime, "device-feed", departments=["cardiology"], scopes=["answers"])
    )
    mine = hospital["cardiology"]
    refused = await client.post(
        f"/patients/{mine['patient']}/do-not-contact",
        json={"source": "device"},
        headers=answers_only,
    )
    assert refused.status_code == 403
    assert "contacts" in refused.json()["error"]["message"]
    for path in ("/intake/discharges", "/tickets", "/pathways"):
        method = "GET" if path == "/pathways" else "POST"
        response = await client.request(method, path, json={}, headers=answers_only)
        assert response.status_code == 403, (path, response.status_code)
    with Session(runtime.engine) as session:
        patient = session.get(Patient, mine["patient"])
        assert patient is not None
        assert not patient.do_not_contact
    accepted = await client.post(
        f"/journeys/{mine['enrollment']}/answers",
        json={"answers": {"chest_pain": "no"}, "source": "patient"},
        headers=answers_only,
    )
    assert accepted.status_code == 202, accepted.text
    me = (await client.get("/whoami", headers=answers_only)).json()
    assert (me["scopes"], me["departments"], me["unscoped"]) == (["answers"], ["cardiology"], False)
    assert me["permissions"] == ["journeys:answer"]


async def test_an_unscoped_integrator_token_is_an_explicit_choice_shown_in_the_listing(
    runtime: Runtime, hospital: dict[str, Any]
) -> None:
    client: httpx.AsyncClient = hospital["client"]
    admin = bearer(hospital["admin"])
    his = account(runtime, "his", Role.INTEGRATOR)
    nurse = account(runtime, "nurse.li", Role.NURSE, ["cardiology"])
    for body, complaint in (
        ({"name": "his"}, "unscoped"),
        ({"name": "his", "scopes": ["intake"]}, "departments"),
        ({"name": "his", "departments": ["cardiology"]}, "scopes"),
        (
            {"name": "his", "departments": ["cardiology"], "unscoped": True, "scopes": ["intake"]},
            "not both",
        ),
        ({"name": "his", "departments": ["cardiologie"], "scopes": ["intake"]}, "cardiologie"),
    ):
        refused = await client.post(f"/users/{his}/tokens", json=body, headers=admin)
        assert refused.status_code == 422, (body, refused.text)
        assert complaint in refused.text, (body, refused.text)
    unknown_scope = await client.post(
        f"/users/{his}/tokens",
        json={"name": "his", "departments": ["cardiology"], "scopes": ["everything"]},
        headers=admin,
    )
    assert unknown_scope.status_code == 422
    assert "scopes" in unknown_scope.text
    staff = await client.post(
        f"/users/{nurse}/tokens", json={"name": "n", "scopes": ["answers"]}, headers=admin
    )
    assert staff.status_code == 422
    assert "integrator tokens" in staff.text
    with Session(runtime.engine) as session:
        assert session.exec(select(ApiToken).where(ApiToken.user_id == his)).all() == []

    scoped = await client.post(
        f"/users/{his}/tokens",
        json={"name": "discharges", "departments": ["cardiology"], "scopes": ["intake"]},
        headers=admin,
    )
    wide = await client.post(
        f"/users/{his}/tokens", json={"name": "everything", "unscoped": True}, headers=admin
    )
    assert (scoped.status_code, wide.status_code) == (201, 201), (scoped.text, wide.text)
    listed = {
        t["name"]: (t["departments"], t["scopes"], t["unscoped"])
        for t in (await client.get("/tokens", params={"user_id": his}, headers=admin)).json()
    }
    assert listed == {
        "discharges": (["cardiology"], ["intake"], False),
        "everything": ([], [], True),
    }
    # The hospital-wide token reaches every department's journeys, as chosen.
    wide_token = bearer(wide.json()["token"])
    theirs = hospital["orthopaedics"]
    answered = await client.post(
        f"/journeys/{theirs['enrollment']}/answers",
        json={"answers": {"pain": 2}},
        headers=wide_token,
    )
    assert answered.status_code == 202, answered.text
    me = (await client.get("/whoami", headers=wide_token)).json()
    assert (me["scopes"], me["unscoped"]) == (None, True)


def test_the_cli_refuses_an_unscoped_integrator_token_unless_asked_and_lists_its_reach(
    runtime: Runtime, cli: Callable[..., tuple[int, str, str]]
) -> None:
    account(runtime, "his", Role.INTEGRATOR)
    code, out, err = cli("tokens", "create", "his")
    assert code == 2, (out, err)
    assert "--unscoped" in err
    assert "--department" in err
    assert "sf_" not in out
    code, out, err = cli(
        "tokens", "create", "his", "--name", "discharges", "--department", "cardiology",
        "--scope", "intake",
    )  # fmt: skip
    assert code == 0, err
    assert out.strip().startswith("sf_")
    assert len(out.strip().splitlines()) == 1  # $(suifang tokens create …) captures the token
    assert "intake in cardiology" in err
    code, out, err = cli("tokens", "create", "his", "--name", "wide", "--unscoped")
    assert code == 0, err
    assert "UNSCOPED" in err
    code, out, err = cli("tokens", "create", "his", "--scope", "everything", "--department", "x")
    assert code == 2
    assert "everything" in err
    code, out, err = cli("tokens", "list", "--username", "his")
    assert code == 0, err
    rows = {line.split()[2]: line for line in out.splitlines()[1:]}
    assert "intake in cardiology" in rows["discharges"]
    assert "UNSCOPED (hospital-wide)" in rows["wide"]


def test_integrator_tokens_issued_before_scopes_are_recorded_as_unscoped(db_url: str) -> None:
    """Migration 0010: tokens that were hospital-wide keep working, and say so."""
    engine = create_db_engine(db_url)
    try:
        migrate(engine, "0005")
        # The tables as revision 0005 had them: only the columns that existed then.
        users = sa.table(
            "staff_user",
            *(sa.column(c) for c in ("id", "username", "display_name", "role", "active")),
            sa.column("departments", sa.JSON()),
            sa.column("created_at", UTCDateTime()),
        )
        tokens = sa.table(
            "api_token",
            *(sa.column(c) for c in ("user_id", "name", "token_hash", "prefix")),
            sa.column("created_at", UTCDateTime()),
        )
        now = dt.datetime.now(dt.UTC)
        with engine.begin() as connection:
            for user_id, username, role in ((1, "his", "integrator"), (2, "dr.li", "doctor")):
                connection.execute(
                    sa.insert(users).values(
                        id=user_id,
                        username=username,
                        display_name=username,
                        role=role,
                        active=True,
                        departments=[],
                        created_at=now,
                    )
                )
                connection.execute(
                    sa.insert(tokens).values(
                        user_id=user_id,
                        name="old",
                        token_hash=f"{user_id:064d}",
                        prefix="sf_old",
                        created_at=now,
                    )
                )
        migrate(engine)
        with Session(engine) as session:
            tokens = {t.user_id: t for t in session.exec(select(ApiToken)).all()}
        assert (tokens[1].unscoped, tokens[1].departments, tokens[1].scopes) == (True, [], [])
        assert tokens[2].unscoped is False
    finally:
        engine.dispose()
