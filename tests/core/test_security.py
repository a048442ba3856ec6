"""Security and privacy: every route guarded, department scope, the audit log, encryption at rest
and in Temporal histories, no PHI in logs or traces, consent withdrawal, token lifecycle."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from google.protobuf import json_format
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session, select
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.testing import WorkflowEnvironment

from suifang.core.api import create_app
from suifang.core.api.security import (
    PUBLIC_ROUTES,
    _dependencies,
    api_routes,
    check_routes_are_guarded,
)
from suifang.core.config import Settings
from suifang.core.db import utcnow
from suifang.core.models import ApiToken, AuditLog, Enrollment, Patient, Ticket, metadata
from suifang.core.runtime import Runtime
from suifang.core.security.auth import (
    PERMISSIONS,
    Permission,
    Role,
    Scope,
    create_user,
    issue_token,
)
from suifang.core.security.codec import (
    ENCODING,
    PayloadEncryptionCodec,
    UndecryptablePayload,
)
from suifang.core.security.crypto import (
    Keyring,
    configure_keyring,
    generate_key,
    get_keyring,
    identifier_index,
)
from suifang.core.security.keys import rotate_encrypted_columns
from suifang.core.telemetry import setup_tracing
from suifang.workflows.intake import DischargeIn, register_discharge
from suifang.workflows.journey import PatientJourneyWorkflow
from suifang.workflows.journey_commands import AnswerEvent

PHONE = "13912345678"
ID_NUMBER = "110101199003077777"
NAME = "欧阳娜娜"
ADDRESS = "北京市东城区银杏胡同17号"
FREE_TEXT = "晚上伤口有一点渗液,银杏胡同附近的诊所能换药吗"


def token_for(
    runtime: Runtime, username: str, role: Role, departments: list[str] | None = None, **kw: Any
) -> str:
    """A token for a new account. An integrator's ``departments`` are its token's, given with
    ``scopes`` (or ``unscoped=True`` instead)."""
    if role == Role.INTEGRATOR:
        kw.setdefault("departments", departments)
        departments = None
    with Session(runtime.engine) as session:
        user = create_user(
            session, username=username, display_name=username, role=role, departments=departments
        )
        value, _ = issue_token(session, user, name="test", **kw)
        return value


async def enroll(
    runtime: Runtime, env: WorkflowEnvironment, number: int = 1, department: str = "cardiology"
) -> int:
    now = await env.get_current_time()
    out = await register_discharge(
        runtime,
        DischargeIn.model_validate(
            {
                "pathway": "pci",
                "patient": {
                    "external_id": f"SEC-{number}",
                    "name": NAME,
                    "sex": "female",
                    "birth_date": "1990-03-07",
                    "phone": PHONE,
                    "id_number": ID_NUMBER,
                    "address": ADDRESS,
                    "preferred_channels": ["outbox"],
                },
                "encounter": {
                    "external_id": f"SEC-V{number}",
                    "department": department,
                    "discharged_at": now.isoformat(),
                },
            }
        ),
    )
    return out.enrollment_id


@pytest.fixture
async def world(
    runtime: Runtime, journey_worker: WorkflowEnvironment
) -> AsyncIterator[dict[str, Any]]:
    """A cardiology journey with a ticket, and tokens for several roles."""
    enrollment_id = await enroll(runtime, journey_worker)
    with Session(runtime.engine) as session:
        enrollment = session.get(Enrollment, enrollment_id)
        assert enrollment is not None
        patient_id = enrollment.patient_id
    app = create_app(runtime)
    tokens = {
        "admin": token_for(runtime, "root", Role.ADMIN),
        "cardiology": token_for(runtime, "dr.li", Role.DOCTOR, ["cardiology"]),
        "orthopaedics": token_for(runtime, "dr.zhao", Role.DOCTOR, ["orthopaedics"]),
        "integrator": token_for(
            runtime, "his", Role.INTEGRATOR, ["cardiology"], scopes=list(Scope)
        ),
        "auditor": token_for(runtime, "audit", Role.AUDITOR),
        "expired": token_for(runtime, "old", Role.ADMIN, expires_in=dt.timedelta(seconds=-1)),
        "revoked": token_for(runtime, "gone", Role.ADMIN),
    }
    with Session(runtime.engine) as session:
        record = session.exec(select(ApiToken).order_by(ApiToken.id.desc())).first()  # type: ignore[attr-defined]
        assert record is not None
        record.revoked_at = utcnow()
        session.add(record)
        session.commit()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://suifang.test"
    ) as client:
        created = await client.post(
            "/tickets",
            json={
                "patient_id": patient_id,
                "text": "吃药后胃不舒服,要不要停药",
                "enrollment_id": enrollment_id,
            },
            headers=bearer(tokens["cardiology"]),
        )
        assert created.status_code == 201, created.text
        ticket_id = created.json()["id"]
        for _ in range(200):  # routing happens in the ticket's workflow
            with Session(runtime.engine) as session:
                ticket = session.get(Ticket, ticket_id)
                if ticket is not None and ticket.department_code:
                    break
            await asyncio.sleep(0.05)
        yield {
            "app": app,
            "client": client,
            "tokens": tokens,
            "enrollment_id": enrollment_id,
            "patient_id": patient_id,
            "ticket_id": ticket_id,
            "env": journey_worker,
        }


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def permission_of(route: Any) -> Permission | None:
    for call in _dependencies(route):
        name = getattr(call, "__name__", "")
        if name.startswith("require_"):
            return Permission(name.removeprefix("require_").replace("_", ":", 1))
    return None


def concrete(path: str, world: dict[str, Any]) -> str:
    values = {
        "enrollment_id": world["enrollment_id"],
        "ticket_id": world["ticket_id"],
        "patient_id": world["patient_id"],
        "user_id": 1,
        "token_id": 1,
        "contact_id": 1,
        "invitation_id": 1,
        "campaign_id": 1,
        "category": "parking",
        "message_id": 1,
        "resource_type": "CarePlan",
        "resource_id": world["enrollment_id"],
        "his_code": "XNK",
        "pathway_id": "pci",
        "version": 1,
        "action": "pause",
        "name": "sms",
        "department": "cardiology",
    }
    return re.sub(r"\{(\w+)\}", lambda m: str(values[m.group(1)]), path)


def test_only_health_docs_and_signed_webhooks_are_public_and_a_leak_stops_start_up(
    settings: Settings,
) -> None:
    expected = {
        "/healthz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc",
        "/docs/assets/redoc.offline.js", "/channels/{name}/inbound",
    }  # fmt: skip
    assert expected == PUBLIC_ROUTES
    app = create_app(settings=settings)

    @app.get("/leak")
    def leak() -> dict[str, str]:
        return {"patients": "all of them"}

    with pytest.raises(RuntimeError, match=r"\['GET'\] /leak has no authentication"):
        check_routes_are_guarded(app)


async def test_every_protected_route_refuses_missing_wrong_expired_revoked_and_out_of_scope_tokens(
    world: dict[str, Any],
) -> None:
    app: FastAPI = world["app"]
    client: httpx.AsyncClient = world["client"]
    tokens = world["tokens"]
    checked = 0
    for path, methods, route in api_routes(app):
        if path in PUBLIC_ROUTES:
            continue
        url = concrete(path, world)
        permission = permission_of(route)
        for method in methods - {"HEAD", "OPTIONS"}:
            for label, headers in (
                ("missing", {}),
                ("wrong", bearer("sf_" + "x" * 43)),
                ("malformed", {"Authorization": "Basic cm9vdDpyb290"}),
                ("expired", bearer(tokens["expired"])),
                ("revoked", bearer(tokens["revoked"])),
            ):
                response = await client.request(method, url, headers=headers, json={})
                assert response.status_code == 401, (method, path, label, response.status_code)
                assert response.headers["WWW-Authenticate"] == "Bearer"
            if permission is None:
                continue
            lacking = next((role for role in Role if permission not in PERMISSIONS[role]), None)
            if lacking is None:
                continue  # every role may (e.g. read the pathway catalogue): nothing to refuse
            other = token_for(
                world_runtime(world),
                f"{lacking.value}-{checked}",
                lacking,
                ["catering"] if lacking in (Role.AGENT, Role.NURSE, Role.DOCTOR) else None,
                unscoped=lacking == Role.INTEGRATOR,  # refused by its role, whatever its reach
            )
            refused = await client.request(method, url, headers=bearer(other), json={})
            assert refused.status_code == 403, (method, path, lacking, refused.status_code)
            checked += 1
    assert checked > 25  # the loop really went through the guarded routes


def world_runtime(world: dict[str, Any]) -> Runtime:
    return world["app"].state.runtime


async def test_departments_see_only_their_own_patients_journeys_and_tickets(
    world: dict[str, Any],
) -> None:
    client: httpx.AsyncClient = world["client"]
    mine, theirs = bearer(world["tokens"]["cardiology"]), bearer(world["tokens"]["orthopaedics"])
    for path in (
        f"/journeys/{world['enrollment_id']}",
        f"/tickets/{world['ticket_id']}",
        f"/patients/{world['patient_id']}",
    ):
        assert (await client.get(path, headers=mine)).status_code == 200, path
        hidden = await client.get(path, headers=theirs)
        assert hidden.status_code == 404, path  # not 403: existence is not revealed
    for path in ("/journeys", "/tickets", "/outbox"):
        assert (await client.get(path, headers=theirs)).json() == [], path
        assert (await client.get(path, headers=mine)).json() != [], path
    patient = (await client.get(f"/patients/{world['patient_id']}", headers=mine)).json()
    contacts = [(c["system"], c["value"], c["in_use"]) for c in patient["contact_points"]]
    assert contacts == [("phone", "139****5678", True)]
    assert "id_number" not in patient
    assert (await client.get("/journeys", headers=bearer(world["tokens"]["auditor"]))).json() != []
    assert (
        await client.get("/journeys", headers=bearer(world["tokens"]["integrator"]))
    ).status_code == 403


async def test_every_access_to_patient_data_is_audited(world: dict[str, Any]) -> None:
    client: httpx.AsyncClient = world["client"]
    runtime = world_runtime(world)
    await client.get(
        f"/journeys/{world['enrollment_id']}",
        headers=bearer(world["tokens"]["cardiology"]) | {"X-Request-ID": "req-42"},
    )
    await client.get(
        f"/tickets/{world['ticket_id']}", headers=bearer(world["tokens"]["orthopaedics"])
    )
    await client.get("/tickets", headers={})
    with Session(runtime.engine) as session:
        rows = session.exec(select(AuditLog).order_by(AuditLog.id)).all()  # type: ignore[arg-type]
    read = next(r for r in rows if r.request_id == "req-42")
    assert (read.actor, read.role, read.action, read.patient_id, read.outcome) == (
        "dr.li",
        "doctor",
        "GET /journeys/{enrollment_id}",
        world["patient_id"],
        "ok",
    )
    denied = [r for r in rows if r.actor == "dr.zhao"]
    assert denied[-1].outcome == "not_found"
    assert any(r.actor == "anonymous" and r.outcome == "denied" for r in rows)
    created = next(r for r in rows if r.action == "POST /tickets")
    assert created.patient_id == world["patient_id"]
    audit = (
        await client.get(
            "/audit",
            params={"patient_id": world["patient_id"]},
            headers=bearer(world["tokens"]["auditor"]),
        )
    ).json()
    assert {a["request_id"] for a in audit} >= {"req-42"}


async def test_the_audit_log_is_append_only_in_the_database(world: dict[str, Any]) -> None:
    runtime = world_runtime(world)
    await world["client"].get("/whoami", headers=bearer(world["tokens"]["admin"]))
    for statement in ("UPDATE audit_log SET actor = 'nobody'", "DELETE FROM audit_log"):
        with pytest.raises(DBAPIError, match="append-only"), runtime.engine.begin() as connection:
            connection.execute(text(statement))
    with Session(runtime.engine) as session:
        assert session.exec(select(AuditLog).where(AuditLog.actor == "nobody")).first() is None
        assert session.exec(select(AuditLog)).first() is not None


def _dump(runtime: Runtime) -> str:
    """Every value in every table, as the database stores it."""
    with runtime.engine.connect() as connection:
        return "\n".join(
            repr(row)
            for table in metadata.sorted_tables
            for row in connection.execute(text(f'SELECT * FROM "{table.name}"'))  # noqa: S608
        )


async def test_no_plaintext_phone_or_id_number_in_the_database_or_temporal_history(
    world: dict[str, Any],
) -> None:
    runtime = world_runtime(world)
    env: WorkflowEnvironment = world["env"]
    with Session(runtime.engine) as session:
        enrollment = session.get(Enrollment, world["enrollment_id"])
        assert enrollment is not None
        ticket = session.get(Ticket, world["ticket_id"])
        assert ticket is not None
        patient = session.get(Patient, world["patient_id"])
        assert patient is not None
        assert (patient.id_number, patient.address) == (
            ID_NUMBER,
            ADDRESS,
        )  # readable through suifang
    handle = env.client.get_workflow_handle(enrollment.workflow_id)
    await env.sleep(dt.timedelta(days=3, hours=12))
    await handle.signal(PatientJourneyWorkflow.answer, AnswerEvent(text=FREE_TEXT))
    dump = _dump(runtime)
    for secret in (PHONE, PHONE[-8:], ID_NUMBER, NAME, ADDRESS, FREE_TEXT, "胃不舒服"):
        assert secret not in dump, secret
    for workflow_id in (enrollment.workflow_id, ticket.workflow_id):
        history = (await env.client.get_workflow_handle(workflow_id).fetch_history()).to_json()
        for secret in (PHONE, ID_NUMBER, NAME, FREE_TEXT, "胃不舒服", "wechat"):
            assert secret not in history, (workflow_id, secret)


async def test_no_phi_in_logs_or_traces_of_a_full_journey(
    runtime: Runtime, journey_worker: WorkflowEnvironment, caplog: pytest.LogCaptureFixture
) -> None:
    spans = InMemorySpanExporter()
    setup_tracing(runtime.settings, processors=(SimpleSpanProcessor(spans),))
    caplog.set_level(logging.DEBUG)
    env = journey_worker
    enrollment_id = await enroll(runtime, env, number=7)
    app = create_app(runtime)
    admin = token_for(runtime, "ops", Role.ADMIN)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://suifang.test"
    ) as client:
        with Session(runtime.engine) as session:
            enrollment = session.get(Enrollment, enrollment_id)
            assert enrollment is not None
        handle = env.client.get_workflow_handle(enrollment.workflow_id)
        await env.sleep(dt.timedelta(days=3, hours=1))
        await handle.signal(
            PatientJourneyWorkflow.answer,
            AnswerEvent(answers={"chest_pain": "yes"}, text=FREE_TEXT),
        )
        await env.sleep(dt.timedelta(hours=1))
        await client.get(f"/journeys/{enrollment_id}", headers=bearer(admin))
        await client.get(f"/patients/{enrollment.patient_id}", headers=bearer(admin))
        bad = await client.post(
            "/intake/discharges",
            json={"patient": {"name": NAME, "phone": "x" + PHONE}},
            headers=bearer(admin),
        )
        assert bad.status_code == 422
        assert PHONE not in bad.text
    trace.get_tracer_provider().force_flush()  # type: ignore[attr-defined]
    logs = "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    span_text = "\n".join(
        f"{s.name} {dict(s.attributes or {})} {[e.attributes for e in s.events]}"
        for s in spans.get_finished_spans()
    )
    assert spans.get_finished_spans(), "tracing recorded nothing: the check would be empty"
    for secret in (PHONE, ID_NUMBER, NAME, ADDRESS, FREE_TEXT):
        assert secret not in logs, secret
        assert secret not in span_text, secret


async def test_consent_withdrawal_stops_contact_everywhere_at_once(world: dict[str, Any]) -> None:
    client: httpx.AsyncClient = world["client"]
    runtime = world_runtime(world)
    response = await client.post(
        f"/patients/{world['patient_id']}/do-not-contact",
        json={"source": "phone call", "reason": "does not want follow-up"},
        headers=bearer(world["tokens"]["integrator"]),
    )
    assert response.status_code == 200, response.text
    assert response.json()["stopped_journeys"] == [world["enrollment_id"]]
    with Session(runtime.engine) as session:
        patient = session.get(Patient, world["patient_id"])
        assert patient is not None
        assert patient.do_not_contact
        assert patient.do_not_contact_at is not None
        assert patient.do_not_contact_source == "phone call (his)"
        assert patient.contact_consent is False


def test_keys_rotate_without_losing_data(runtime: Runtime) -> None:
    old = get_keyring()
    with Session(runtime.engine) as session:
        session.add(Patient(external_id="K1", name="钱七", id_number=ID_NUMBER, address=ADDRESS))
        session.commit()
    new_key = generate_key()
    configure_keyring(Keyring((new_key, *old.encryption_keys), old.blind_index_key))
    try:
        counts = rotate_encrypted_columns(runtime.engine)
        assert counts["patient"] >= 1
        configure_keyring(Keyring((new_key,), old.blind_index_key))  # the old key is retired
        with Session(runtime.engine) as session:
            mrn_hash = identifier_index("mrn", "K1")
            patient = session.exec(select(Patient).where(Patient.external_id_hash == mrn_hash))
            patient = patient.one()
            assert (patient.id_number, patient.address) == (ID_NUMBER, ADDRESS)
    finally:
        configure_keyring(old)


def _payload(text: str) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=json.dumps(text).encode())


async def test_temporal_payloads_are_sealed_and_keys_rotate_like_the_database_s() -> None:
    old = Keyring((generate_key(),), b"b" * 32)
    rotated = Keyring((generate_key(), *old.encryption_keys), old.blind_index_key)
    [sealed] = await PayloadEncryptionCodec(old).encode([_payload(FREE_TEXT)])
    assert sealed.metadata["encoding"] == ENCODING
    assert FREE_TEXT.encode() not in sealed.data
    # After rotation new payloads use the new key and old ones still open.
    codec = PayloadEncryptionCodec(rotated)
    [fresh] = await codec.encode([_payload(NAME)])
    assert fresh.metadata["encryption-key-id"] != sealed.metadata["encryption-key-id"]
    opened = await codec.decode([sealed, fresh])
    assert [json.loads(p.data) for p in opened] == [FREE_TEXT, NAME]
    # With the old key retired, its payloads fail with a reason, not a stack of crypto.
    with pytest.raises(UndecryptablePayload, match="not among SUIFANG_ENCRYPTION_KEYS"):
        await PayloadEncryptionCodec(Keyring(rotated.encryption_keys[:1], b"b" * 32)).decode(
            [sealed]
        )
    tampered = Payload()
    tampered.CopyFrom(sealed)
    tampered.data = sealed.data[:-1] + bytes([sealed.data[-1] ^ 1])
    with pytest.raises(UndecryptablePayload, match="altered"):
        await codec.decode([tampered])
    relabelled = Payload()
    relabelled.CopyFrom(fresh)
    relabelled.metadata["encryption-key-id"] = sealed.metadata["encryption-key-id"]
    with pytest.raises(UndecryptablePayload, match="altered"):
        await codec.decode([relabelled])


async def test_operators_read_a_history_through_the_codec_endpoint_and_no_one_else(
    world: dict[str, Any],
) -> None:
    runtime = world_runtime(world)
    client: httpx.AsyncClient = world["client"]
    env: WorkflowEnvironment = world["env"]
    with Session(runtime.engine) as session:
        ticket = session.get(Ticket, world["ticket_id"])
        assert ticket is not None
    history = await env.client.get_workflow_handle(ticket.workflow_id).fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes.input
    assert started.payloads[0].metadata["encoding"] == ENCODING
    body = json_format.MessageToJson(started)
    decoded = await client.post(
        "/codec/decode", content=body, headers=bearer(world["tokens"]["admin"])
    )
    assert decoded.status_code == 200, decoded.text
    [payload] = json_format.Parse(decoded.text, Payloads()).payloads
    assert "胃不舒服" in payload.data.decode()  # the ticket's text, readable to the operator
    refused = await client.post(
        "/codec/decode", content=body, headers=bearer(world["tokens"]["cardiology"])
    )
    assert refused.status_code == 403
    garbled = started.payloads[0].data[:-4]
    broken = Payloads(payloads=[Payload(metadata=started.payloads[0].metadata, data=garbled)])
    rejected = await client.post(
        "/codec/decode",
        content=json_format.MessageToJson(broken),
        headers=bearer(world["tokens"]["admin"]),
    )
    assert rejected.status_code == 422
    assert "cannot decode" in rejected.text
