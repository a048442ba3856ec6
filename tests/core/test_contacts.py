"""Issue 19, finding 7: a new number takes effect at once, old ones are kept as history, and
staff can list, prefer and retire contacts (API and CLI), audited."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any, ClassVar

import httpx
import pytest
from sqlmodel import Session, col, select
from temporalio.testing import WorkflowEnvironment

from suifang.core.api import create_app
from suifang.core.channels import AddressKind, Channel, DeliveryReceipt, OutboundMessage
from suifang.core.contacts import ADDRESS_SYSTEM, BUILTIN_SYSTEMS, contact_system, known_systems
from suifang.core.delivery import deliver
from suifang.core.hooks import hookimpl
from suifang.core.models import AuditLog
from suifang.core.runtime import Runtime
from suifang.core.security.auth import Role
from suifang.core.security.crypto import Keyring, configure_keyring, generate_key
from suifang.plugins.channels.sms import SmsGatewayChannel
from suifang.workflows.intake import DischargeIn, register_discharge
from tests.core.test_security import bearer, token_for
from tests.workflows.test_delivery import Provider, directory, request

OLD_PHONE, NEW_PHONE = "13900000001", "13600000002"
ENCRYPTION_KEY = generate_key()
INDEX_KEY = "contacts-test-blind-index-key-0123"


@pytest.fixture
def shared_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """The API, the workers and the CLI of one hospital share its keys."""
    configure_keyring(Keyring.from_strings(ENCRYPTION_KEY, INDEX_KEY))
    monkeypatch.setenv("SUIFANG_ENCRYPTION_KEYS", ENCRYPTION_KEY)
    monkeypatch.setenv("SUIFANG_BLIND_INDEX_KEY", INDEX_KEY)


async def discharge(runtime: Runtime, env: WorkflowEnvironment, visit: str, phone: str) -> int:
    now = await env.get_current_time()
    out = await register_discharge(
        runtime,
        DischargeIn.model_validate(
            {
                "pathway": "pci",
                "patient": {"external_id": "MRN-77", "name": "韩梅梅", "phone": phone},
                "encounter": {
                    "external_id": visit,
                    "department": "cardiology",
                    "discharged_at": now.isoformat(),
                },
            }
        ),
    )
    return out.patient_id


async def texted_number(runtime: Runtime, patient_id: int, key: str) -> str | None:
    gateway = Provider((200, {"message_id": f"gw-{key}", "status": "accepted"}))
    config = SmsGatewayChannel.load_config(url="https://gw.example/send", api_key="k" * 20)
    sms = SmsGatewayChannel(config, http=gateway.client())
    await deliver(
        runtime.engine, directory(runtime, sms=sms), request(patient_id, key=key, channels=["sms"])
    )
    return json.loads(gateway.requests[0].content)["to"] if gateway.requests else None


@pytest.fixture
async def readmitted(
    runtime: Runtime, journey_worker: WorkflowEnvironment, shared_keys: None
) -> AsyncIterator[dict[str, Any]]:
    """A patient discharged twice from cardiology, with a new phone the second time."""
    patient_id = await discharge(runtime, journey_worker, "V-1", OLD_PHONE)
    assert await discharge(runtime, journey_worker, "V-2", NEW_PHONE) == patient_id
    transport = httpx.ASGITransport(app=create_app(runtime))
    async with httpx.AsyncClient(transport=transport, base_url="http://suifang.test") as client:
        yield {
            "client": client,
            "patient_id": patient_id,
            "nurse": bearer(token_for(runtime, "nurse.wang", Role.NURSE, ["cardiology"])),
            "stranger": bearer(token_for(runtime, "nurse.zhao", Role.NURSE, ["orthopaedics"])),
        }


async def test_the_newest_number_is_used_and_staff_can_retire_and_prefer(
    runtime: Runtime, readmitted: dict[str, Any]
) -> None:
    client: httpx.AsyncClient = readmitted["client"]
    patient_id = readmitted["patient_id"]
    assert await texted_number(runtime, patient_id, "a") == f"+86{NEW_PHONE}"

    listed = await client.get(f"/patients/{patient_id}/contacts", headers=readmitted["nurse"])
    assert listed.status_code == 200
    phones = [(c["value"], c["in_use"]) for c in listed.json()]
    assert phones == [("136****0002", True), ("139****0001", False)]
    assert OLD_PHONE not in listed.text
    assert NEW_PHONE not in listed.text

    new_id = listed.json()[0]["id"]
    retired = await client.post(
        f"/patients/{patient_id}/contacts/{new_id}/retire", headers=readmitted["nurse"]
    )
    assert retired.status_code == 200
    assert (retired.json()["in_use"], retired.json()["retired_by"]) == (False, "nurse.wang")
    assert await texted_number(runtime, patient_id, "b") == f"+86{OLD_PHONE}"
    again = await client.post(
        f"/patients/{patient_id}/contacts/{new_id}/retire", headers=readmitted["nurse"]
    )
    assert again.status_code == 422
    assert "already retired" in again.json()["error"]["message"]

    preferred = await client.post(
        f"/patients/{patient_id}/contacts/{new_id}/prefer", headers=readmitted["nurse"]
    )
    assert preferred.json()["in_use"] is True
    assert await texted_number(runtime, patient_id, "c") == f"+86{NEW_PHONE}"

    with Session(runtime.engine) as session:
        audited = session.exec(
            select(AuditLog.action, AuditLog.patient_id).where(AuditLog.actor == "nurse.wang")
        ).all()
    assert ("POST /patients/{patient_id}/contacts/{contact_id}/retire", patient_id) in audited
    assert ("POST /patients/{patient_id}/contacts/{contact_id}/prefer", patient_id) in audited


async def test_a_discharge_repeating_a_retired_number_leaves_it_retired(
    runtime: Runtime, journey_worker: WorkflowEnvironment, readmitted: dict[str, Any]
) -> None:
    client: httpx.AsyncClient = readmitted["client"]
    patient_id = readmitted["patient_id"]
    listed = (
        await client.get(f"/patients/{patient_id}/contacts", headers=readmitted["nurse"])
    ).json()
    await client.post(
        f"/patients/{patient_id}/contacts/{listed[0]['id']}/retire", headers=readmitted["nurse"]
    )
    await discharge(runtime, journey_worker, "V-3", NEW_PHONE)
    assert await texted_number(runtime, patient_id, "d") == f"+86{OLD_PHONE}"
    # A discharge restating the older number makes it the newest in use again.
    await discharge(runtime, journey_worker, "V-4", OLD_PHONE)
    listed = (
        await client.get(f"/patients/{patient_id}/contacts", headers=readmitted["nurse"])
    ).json()
    assert [(c["value"], c["in_use"], c["retired_by"]) for c in listed] == [
        ("139****0001", True, None),
        ("136****0002", False, "nurse.wang"),
    ]


async def test_other_departments_cannot_see_or_change_contacts(readmitted: dict[str, Any]) -> None:
    client: httpx.AsyncClient = readmitted["client"]
    patient_id = readmitted["patient_id"]
    stranger = readmitted["stranger"]
    assert (
        await client.get(f"/patients/{patient_id}/contacts", headers=stranger)
    ).status_code == 404
    listed = (
        await client.get(f"/patients/{patient_id}/contacts", headers=readmitted["nurse"])
    ).json()
    retire = f"/patients/{patient_id}/contacts/{listed[0]['id']}/retire"
    assert (await client.post(retire, headers=stranger)).status_code == 404
    wrong_patient = await client.post(
        f"/patients/{patient_id + 1}/contacts/{listed[0]['id']}/retire", headers=readmitted["nurse"]
    )
    assert wrong_patient.status_code == 404


async def test_the_cli_lists_retires_and_prefers(
    runtime: Runtime, readmitted: dict[str, Any], cli: Callable[..., tuple[int, str, str]]
) -> None:
    patient_id = readmitted["patient_id"]
    code, out, err = cli("contacts", "list", str(patient_id), "--json")
    assert code == 0, err
    views = json.loads(out)
    new_id, old_id = views[0]["id"], views[1]["id"]
    assert [v["in_use"] for v in views] == [True, False]

    code, out, _ = cli("contacts", "retire", str(patient_id), str(new_id))
    assert code == 0
    assert f"contact {new_id} (phone) of patient {patient_id} retired" in out
    code, out, _ = cli("contacts", "list", str(patient_id))
    assert "retired" in out
    assert "in use" in out
    assert await texted_number(runtime, patient_id, "e") == f"+86{OLD_PHONE}"

    code, _, err = cli("contacts", "prefer", str(patient_id), "999999")
    assert code != 0
    assert f"patient {patient_id} has no contact 999999" in err
    code, _, err = cli("contacts", "list", "nope")
    assert code != 0
    assert "Traceback" not in err

    with Session(runtime.engine) as session:
        actions = session.exec(
            select(AuditLog.action).where(col(AuditLog.actor).startswith("cli:"))
        ).all()
    assert "cli contacts retire" in actions
    assert old_id != new_id


def test_every_channel_address_is_a_contact_system_a_patient_can_have() -> None:
    """Delivery and reply matching read one function (core/contacts.py): every address kind
    but none has its built-in system, and a channel's own system wins."""
    assert set(ADDRESS_SYSTEM) == set(AddressKind) - {AddressKind.NONE}
    assert sorted(ADDRESS_SYSTEM.values()) == sorted(BUILTIN_SYSTEMS)
    assert contact_system(SmsGatewayChannel) == "phone"
    assert contact_system(DingTalkChannel) == "dingtalk_userid"
    assert known_systems([DingTalkChannel]) == BUILTIN_SYSTEMS | {"dingtalk_userid"}


class DingTalkChannel(Channel):
    """An integrator's channel with its own address system (DingTalk work notifications)."""

    name: ClassVar[str] = "dingtalk"
    address_kind: ClassVar[AddressKind] = AddressKind.APP_USER
    contact_system: ClassVar[str | None] = "dingtalk_userid"

    async def send(self, message: OutboundMessage) -> DeliveryReceipt:
        response = await self.http.post(
            "https://oapi.dingtalk.example/topapi/message/corpconversation/asyncsend_v2",
            json={"userid_list": message.address, "msg": {"msgtype": "text", "text": message.body}},
        )
        return DeliveryReceipt(
            status="accepted", provider_message_id=str(response.json()["task_id"])
        )


class DingTalkPlugin:
    @hookimpl
    def suifang_register_channels(self, register: Callable[[type[Channel]], None]) -> None:
        register(DingTalkChannel)


async def test_a_channel_s_own_contact_system_is_taken_at_intake_and_delivered_to(
    runtime: Runtime, journey_worker: WorkflowEnvironment, cli: Callable[..., tuple[int, str, str]]
) -> None:
    runtime.plugins.pm.register(DingTalkPlugin(), name="dingtalk")
    now = await journey_worker.get_current_time()
    app = create_app(runtime)
    admin = bearer(token_for(runtime, "root", Role.ADMIN))
    body = {
        "pathway": "pci",
        "patient": {
            "external_id": "MRN-DT1",
            "name": "韩梅梅",
            "contacts": [{"system": "dingtalk_userid", "value": "manager4521"}],
        },
        "encounter": {
            "external_id": "V-DT1",
            "department": "cardiology",
            "discharged_at": now.isoformat(),
        },
    }
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://suifang.test"
    ) as api:
        refused = await api.post(
            "/intake/discharges",
            json={
                **body,
                "patient": {**body["patient"], "contacts": [{"system": "qq_number", "value": "1"}]},
            },
            headers=admin,
        )
        assert refused.status_code == 422
        message = refused.json()["error"]["message"]
        assert "patient.contacts[0].system: no channel delivers to 'qq_number'" in message
        assert "dingtalk_userid" in message  # the known ones are listed
        enrolled = await api.post("/intake/discharges", json=body, headers=admin)
        assert enrolled.status_code == 201, enrolled.text
        patient_id = enrolled.json()["patient_id"]

        provider = Provider((200, {"errcode": 0, "task_id": 2519}))
        channels = directory(
            runtime, dingtalk=DingTalkChannel(DingTalkChannel.load_config(), http=provider.client())
        )
        outcome = await deliver(
            runtime.engine, channels, request(patient_id, "dt:day1", channels=["dingtalk"])
        )
        assert (outcome.delivered, outcome.channel) == (True, "dingtalk")
        assert json.loads(provider.requests[0].content)["userid_list"] == "manager4521"

        # Staff (or a contact system) give a new id: in use from now on, the old one history.
        added = await api.post(
            f"/patients/{patient_id}/contacts",
            json={"system": "dingtalk_userid", "value": "boss77"},
            headers=admin,
        )
        assert added.status_code == 201, added.text
        assert added.json()["in_use"] is True
        unknown = await api.post(
            f"/patients/{patient_id}/contacts", json={"system": "qq", "value": "1"}, headers=admin
        )
        assert unknown.status_code == 422
        assert "no channel delivers to 'qq'" in unknown.json()["error"]["message"]
        listed = (await api.get(f"/patients/{patient_id}/contacts", headers=admin)).json()
        assert [(c["system"], c["in_use"]) for c in listed] == [
            ("dingtalk_userid", True),
            ("dingtalk_userid", False),
        ]
    await deliver(runtime.engine, channels, request(patient_id, "dt:day3", channels=["dingtalk"]))
    assert json.loads(provider.requests[1].content)["userid_list"] == "boss77"
    code, _, err = cli("contacts", "add", str(patient_id), "wecom_userid", "x")
    assert code != 0
    assert "no channel delivers to 'wecom_userid'" in err
