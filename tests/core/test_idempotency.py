"""Issue 19, findings 1 and 2, tried the way the attacker did: an Idempotency-Key is the
caller's own and bound to its body, and opening a ticket never widens who may see a patient."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlmodel import Session, col, select
from temporalio.testing import WorkflowEnvironment

from suifang.core.api import create_app
from suifang.core.models import AuditLog, Enrollment, IdempotencyRecord, Ticket
from suifang.core.runtime import Runtime
from suifang.core.security.auth import Role
from tests.core.test_security import bearer, enroll, token_for

pytestmark = pytest.mark.usefixtures("journey_worker")


@pytest.fixture
async def hospital(runtime: Runtime, journey_worker: WorkflowEnvironment) -> AsyncIterator[Any]:
    """A cardiology patient and an orthopaedics patient, staff of both, two integrators."""
    cardiology_journey = await enroll(runtime, journey_worker, 1, "cardiology")
    orthopaedics_journey = await enroll(runtime, journey_worker, 2, "orthopaedics")
    with Session(runtime.engine) as session:
        patients = {
            "cardiology": session.get(Enrollment, cardiology_journey).patient_id,  # type: ignore[union-attr]
            "orthopaedics": session.get(Enrollment, orthopaedics_journey).patient_id,  # type: ignore[union-attr]
        }
    tokens = {
        "cardiology": token_for(runtime, "nurse.wang", Role.NURSE, ["cardiology"]),
        "orthopaedics": token_for(runtime, "nurse.zhao", Role.NURSE, ["orthopaedics"]),
        "his": token_for(runtime, "his", Role.INTEGRATOR, ["cardiology"], scopes=["intake"]),
        "app": token_for(runtime, "his2", Role.INTEGRATOR, ["cardiology"], scopes=["intake"]),
    }
    transport = httpx.ASGITransport(app=create_app(runtime))
    async with httpx.AsyncClient(transport=transport, base_url="http://suifang.test") as client:
        yield {"client": client, "tokens": tokens, "patients": patients, "runtime": runtime}


async def open_ticket(hospital: Any, who: str, body: dict[str, Any], key: str | None = None):
    headers = bearer(hospital["tokens"][who])
    if key is not None:
        headers["Idempotency-Key"] = key
    return await hospital["client"].post("/tickets", json=body, headers=headers)


def tickets(runtime: Runtime) -> list[Ticket]:
    with Session(runtime.engine) as session:
        return list(session.exec(select(Ticket).order_by(col(Ticket.id))).all())


async def test_another_callers_key_never_returns_their_ticket(hospital: Any) -> None:
    cardiology = {"patient_id": hospital["patients"]["cardiology"], "text": "药吃完了,还要继续吃吗"}
    first = await open_ticket(hospital, "cardiology", cardiology, key="ticket-1")
    assert first.status_code == 201, first.text

    # The orthopaedics nurse replays the key with the same body: not their patient.
    stolen = await open_ticket(hospital, "orthopaedics", cardiology, key="ticket-1")
    assert stolen.status_code == 404
    assert "药吃完了" not in stolen.text

    # With a body of their own, the same string is simply their own new key.
    own = {"patient_id": hospital["patients"]["orthopaedics"], "text": "拐杖要用多久"}
    theirs = await open_ticket(hospital, "orthopaedics", own, key="ticket-1")
    assert theirs.status_code == 201
    assert theirs.json()["id"] != first.json()["id"]
    assert theirs.json()["patient_id"] == hospital["patients"]["orthopaedics"]
    assert "药吃完了" not in theirs.text


async def test_inbound_style_keys_reach_nothing(hospital: Any) -> None:
    """The old inbound key pattern is not a way into the tickets the webhooks opened."""
    own = {"patient_id": hospital["patients"]["orthopaedics"], "text": "复查要空腹吗"}
    for key in ("inbound:sms:gw-1", "inbound:wechat:1", "api:1"):
        answer = await open_ticket(hospital, "orthopaedics", own, key=key)
        assert answer.status_code == 201
        assert answer.json()["patient_id"] == hospital["patients"]["orthopaedics"]
    assert len({t.id for t in tickets(hospital["runtime"])}) == 3


async def test_a_retry_gets_the_first_answer_and_a_different_body_is_refused(
    hospital: Any,
) -> None:
    body = {"patient_id": hospital["patients"]["cardiology"], "text": "伤口有点痒,正常吗"}
    first = await open_ticket(hospital, "cardiology", body, key="k-42")
    again = await open_ticket(hospital, "cardiology", body, key="k-42")
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json()["id"] == first.json()["id"]
    assert len(tickets(hospital["runtime"])) == 1

    changed = await open_ticket(hospital, "cardiology", {**body, "text": "别的事"}, key="k-42")
    assert changed.status_code == 422
    assert changed.json()["error"]["code"] == "idempotency_key_reused"
    assert "Idempotency-Key" in changed.json()["error"]["message"]
    assert len(tickets(hospital["runtime"])) == 1

    # The key in the body is the same key as the header.
    in_body = await open_ticket(hospital, "cardiology", {**body, "idempotency_key": "k-42"})
    assert in_body.json()["id"] == first.json()["id"]


async def test_keys_are_forgotten_after_their_time(hospital: Any) -> None:
    runtime: Runtime = hospital["runtime"]
    body = {"patient_id": hospital["patients"]["cardiology"], "text": "可以喝茶吗"}
    first = await open_ticket(hospital, "cardiology", body, key="daily")
    with Session(runtime.engine) as session:
        record = session.exec(select(IdempotencyRecord)).one()
        assert record.expires_at - record.created_at == dt.timedelta(hours=24)
        record.expires_at = record.created_at  # a day has passed
        session.add(record)
        session.commit()
    later = await open_ticket(hospital, "cardiology", body, key="daily")
    assert later.status_code == 201
    assert later.json()["id"] != first.json()["id"]


async def test_an_integrators_intake_key_is_its_own(hospital: Any) -> None:
    client: httpx.AsyncClient = hospital["client"]

    def discharge(mrn: str, diagnosis: str) -> dict[str, Any]:
        return {
            "pathway": "pci",
            "patient": {"external_id": mrn, "name": "李雷", "phone": "13700000001"},
            "encounter": {
                "external_id": f"V-{mrn}",
                "department": "cardiology",
                "discharged_at": "2026-12-01T09:00:00+08:00",
                "diagnoses": [{"code": "I21.9", "text": diagnosis}],
            },
        }

    his = {**bearer(hospital["tokens"]["his"]), "Idempotency-Key": "adt-1"}
    app = {**bearer(hospital["tokens"]["app"]), "Idempotency-Key": "adt-1"}
    first = await client.post(
        "/intake/discharges", json=discharge("MRN-A", "急性心梗"), headers=his
    )
    assert first.status_code == 201, first.text
    replay = await client.post(
        "/intake/discharges", json=discharge("MRN-A", "急性心梗"), headers=his
    )
    assert (replay.status_code, replay.json()["enrollment_id"]) == (
        201,
        first.json()["enrollment_id"],
    )

    other = await client.post("/intake/discharges", json=discharge("MRN-B", "心衰"), headers=app)
    assert other.status_code == 201
    assert other.json()["patient_id"] != first.json()["patient_id"]
    assert "急性心梗" not in other.text

    reused = await client.post("/intake/discharges", json=discharge("MRN-C", "心衰"), headers=his)
    assert reused.status_code == 422
    assert reused.json()["error"]["code"] == "idempotency_key_reused"


async def test_a_ticket_never_widens_who_sees_a_patient(hospital: Any) -> None:
    client: httpx.AsyncClient = hospital["client"]
    runtime: Runtime = hospital["runtime"]
    theirs = hospital["patients"]["cardiology"]
    orthopaedics = bearer(hospital["tokens"]["orthopaedics"])

    missing = await open_ticket(hospital, "orthopaedics", {"patient_id": 999_999, "text": "x"})
    foreign = await open_ticket(
        hospital,
        "orthopaedics",
        {"patient_id": theirs, "text": "想问问", "department": "orthopaedics"},
    )
    # "Not yours" and "no such patient" look the same: nothing tells them apart.
    assert (missing.status_code, foreign.status_code) == (404, 404)
    assert missing.json()["error"]["message"].replace("999999", "N") == foreign.json()["error"][
        "message"
    ].replace(str(theirs), "N")
    assert tickets(runtime) == []
    assert (await client.get(f"/patients/{theirs}", headers=orthopaedics)).status_code == 404
    observations = await client.get(f"/patients/{theirs}/observations", headers=orthopaedics)
    assert observations.status_code == 404

    # Their own patient, but sent to another department: a transfer is how that is done.
    own = hospital["patients"]["orthopaedics"]
    elsewhere = await open_ticket(
        hospital,
        "orthopaedics",
        {"patient_id": own, "text": "心脏不舒服", "department": "cardiology"},
    )
    assert elsewhere.status_code == 403
    assert "transfer" in elsewhere.json()["error"]["message"]
    assert tickets(runtime) == []


async def test_the_audit_names_the_patients_a_probe_and_a_replay_touched(hospital: Any) -> None:
    runtime: Runtime = hospital["runtime"]
    theirs = hospital["patients"]["cardiology"]
    client: httpx.AsyncClient = hospital["client"]
    probe = await client.get(
        f"/patients/{theirs}", headers=bearer(hospital["tokens"]["orthopaedics"])
    )
    assert probe.status_code == 404
    body = {"patient_id": theirs, "text": "能开个证明吗"}
    await open_ticket(hospital, "cardiology", body, key="proof")
    await open_ticket(hospital, "cardiology", body, key="proof")
    await client.get(
        "/pathways/<script>%E6%AC%A7%E9%98%B3", headers=bearer(hospital["tokens"]["cardiology"])
    )
    with Session(runtime.engine) as session:
        rows = session.exec(select(AuditLog).order_by(col(AuditLog.id))).all()
    probed = [
        r for r in rows if r.actor == "nurse.zhao" and r.action == "GET /patients/{patient_id}"
    ]
    assert [(r.patient_id, r.outcome) for r in probed] == [(theirs, "not_found")]
    replays = [r for r in rows if r.action == "POST /tickets"]
    assert [r.patient_id for r in replays] == [theirs, theirs]
    # Audit rows carry ids, never text a refused request put in its path.
    refused = [r for r in rows if r.action == "GET /pathways/{pathway_id}"]
    assert [(r.status_code, r.resource_id) for r in refused] == [(404, None)]
