"""HL7 v2 intake over a real MLLP socket: the HIS's ADT feed starts, updates and stops follow-up.

Real listener (workflows/mllp.py) on a loopback port, real database (SQLite and PostgreSQL),
the session's real worker on the time-skipping server; messages are sent as an integration
engine sends them, framed, one connection carrying several.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import random
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from hl7.mllp import open_hl7_connection
from sqlmodel import Session, col, select
from temporalio.testing import WorkflowEnvironment

from suifang.core.api import create_app
from suifang.core.models import (
    ContactPoint,
    Encounter,
    Enrollment,
    Hl7Message,
    Message,
    Observation,
    Patient,
)
from suifang.core.runtime import Runtime
from suifang.core.security.auth import Role, create_user, issue_token
from suifang.core.security.crypto import identifier_index
from suifang.workflows.hl7_intake import map_department, receive, reprocess
from suifang.workflows.mllp import frame, serve_mllp


def hl7_time(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y%m%d%H%M%S+0000")


def adt(
    event: str,
    *,
    control_id: str,
    mrn: str,
    visit: str,
    discharged: dt.datetime,
    name: str = "张^伟",
    department: str = "XNK",
    charset: str = "UNICODE UTF-8",
    birth: str = "19580312",
    phone: str = "13800138000",
    diagnosis: str = "I21.9^急性心肌梗死^I10",
    extra: str = "",
) -> str:
    """An ADT message as a Chinese HIS writes it (CR-separated, PV1-44/45 the stay)."""
    admitted = discharged - dt.timedelta(days=6)
    pv1 = ["PV1", "1", "I", "XNK^12^3", "", "", "", "D01^李^明", "", "", department]
    pv1 += [""] * (19 - len(pv1)) + [visit]
    pv1 += [""] * (44 - len(pv1)) + [hl7_time(admitted), hl7_time(discharged)]
    segments = [
        f"MSH|^~\\&|HIS|HOSP|SUIFANG|HOSP|{hl7_time(discharged)}||ADT^{event}^ADT_A01|"
        f"{control_id}|P|2.5|||||CHN|{charset}",
        f"EVN|{event}|{hl7_time(discharged)}",
        f"PID|1||{mrn}^^^HOSP^MR||{name}||{birth}|M|||人民路1号^^广州^广东||{phone}",
        "|".join(pv1),
        f"DG1|1||{diagnosis}",
        "PR1|1||36.06^经皮冠状动脉支架置入术^ICD9CM3",
    ]
    if extra:
        segments.append(extra)
    return "\r".join(segments) + "\r"


class Sender:
    """An integration engine's connection: framed messages out, ACKs back, in order."""

    def __init__(self, port: int) -> None:
        self.port = port

    async def __aenter__(self) -> Sender:
        self.reader, self.writer = await open_hl7_connection("127.0.0.1", self.port)
        return self

    async def __aexit__(self, *_: object) -> None:
        self.writer.close()

    async def send(self, message: str | bytes, encoding: str = "utf-8") -> str:
        data = message.encode(encoding) if isinstance(message, str) else message
        self.writer.writeblock(data)
        await self.writer.drain()
        ack = await asyncio.wait_for(self.reader.readblock(), 30)
        return ack.decode(encoding)


def msa(ack: str) -> list[str]:
    line = next(s for s in ack.split("\r") if s.startswith("MSA"))
    return line.split("|")


def err(ack: str) -> list[str]:
    line = next(s for s in ack.split("\r") if s.startswith("ERR"))
    return line.split("|")


@pytest.fixture
async def listener(runtime: Runtime, journey_worker: WorkflowEnvironment) -> AsyncIterator[int]:
    server = await serve_mllp(runtime, "127.0.0.1", 0, idle_timeout=5)
    port = server.sockets[0].getsockname()[1]
    try:
        yield port
    finally:
        server.close()
        await server.wait_closed()


def enrollments_of(runtime: Runtime, mrn: str) -> list[Enrollment]:
    with Session(runtime.engine) as session:
        patient = session.exec(
            select(Patient).where(Patient.external_id_hash == identifier_index("mrn", mrn))
        ).first()
        if patient is None:
            return []
        return list(
            session.exec(select(Enrollment).where(Enrollment.patient_id == patient.id)).all()
        )


def ids() -> tuple[str, str, str]:
    tag = uuid.uuid4().hex[:8].upper()
    return f"MSG{tag}", f"MRN{tag}", f"V{tag}"


async def test_a_chinese_discharge_over_mllp_starts_a_pci_journey_once(
    runtime: Runtime, journey_worker: WorkflowEnvironment, listener: int
) -> None:
    now = await journey_worker.get_current_time()
    control, mrn, visit = ids()
    message = adt("A03", control_id=control, mrn=mrn, visit=visit, discharged=now)
    async with Sender(listener) as engine:
        ack = await engine.send(message)
        again = await engine.send(message)  # the engine resends: it never saw our ACK

    assert msa(ack)[1:3] == ["AA", control]
    assert again == ack  # the same ACK, from the store
    [enrollment] = enrollments_of(runtime, mrn)
    assert enrollment.pathway_id == "pci"
    assert enrollment.status == "active"
    with Session(runtime.engine) as session:
        patient = session.get(Patient, enrollment.patient_id)
        encounter = session.get(Encounter, enrollment.encounter_id)
        stored = session.exec(select(Hl7Message).where(Hl7Message.control_id == control)).one()
        phones = session.exec(
            select(ContactPoint.value).where(ContactPoint.patient_id == enrollment.patient_id)
        ).all()
    assert patient is not None
    assert encounter is not None
    assert (patient.name, patient.sex, patient.birth_date) == ("张伟", "male", dt.date(1958, 3, 12))
    assert phones == ["13800138000"]
    assert encounter.department_code == "cardiology"  # XNK, through the HIS code table
    assert encounter.diagnosis_codes == ["I21.9"]
    assert encounter.procedure_codes == ["36.06"]
    assert encounter.attending_doctor == "李明"
    assert encounter.discharged_at == now.replace(microsecond=0)
    assert (stored.status, stored.ack_code, stored.attempts) == ("processed", "AA", 2)
    assert stored.enrollment_id == enrollment.id
    assert stored.raw != message  # encrypted at rest, like every PHI column
    description = await journey_worker.client.get_workflow_handle(enrollment.workflow_id).describe()
    assert description.status is not None
    assert description.status.name == "RUNNING"


async def test_content_errors_get_ae_naming_the_field_and_garbage_gets_ar(
    runtime: Runtime, journey_worker: WorkflowEnvironment, listener: int
) -> None:
    now = await journey_worker.get_current_time()
    control, mrn, visit = ids()
    no_mrn = adt("A03", control_id=control + "a", mrn="", visit=visit, discharged=now)
    # PV1-45 only: the MSH and EVN times stay good.
    bad_date = adt("A03", control_id=control + "b", mrn=mrn, visit=visit, discharged=now)
    segments = bad_date.split("\r")
    pv1 = segments[3].split("|")
    pv1[45] = "2026-12-01"
    segments[3] = "|".join(pv1)
    bad_date = "\r".join(segments)
    unmapped = adt(
        "A03", control_id=control + "c", mrn=mrn, visit=visit, discharged=now, department="ZZK"
    )
    unsupported = adt("A03", control_id=control + "d", mrn=mrn, visit=visit, discharged=now)
    unsupported = unsupported.replace("ADT^A03^ADT_A01", "ADT^A99^ADT_A01")
    async with Sender(listener) as engine:
        missing = await engine.send(no_mrn)
        dated = await engine.send(bad_date)
        unknown = await engine.send(unmapped)
        garbage = await engine.send(b"\x00\xff this is not HL7 at all")
        odd = await engine.send(unsupported)

    assert msa(missing)[1] == "AE"
    assert err(missing)[2] == "PID^1^3^1^1"
    assert err(missing)[3].startswith("101^Required field missing")
    assert "patient identifier (MRN) missing" in err(missing)[8]
    assert msa(dated)[1] == "AE"
    assert err(dated)[2] == "PV1^1^45^1"
    assert "'2026-12-01' is not an HL7 date/time" in err(dated)[8]
    assert msa(unknown)[1] == "AE"
    assert err(unknown)[2] == "PV1^1^10^1"
    assert "department code 'ZZK' is not mapped" in err(unknown)[8]
    assert msa(garbage)[1] == "AR"
    assert "must begin with an MSH segment" in garbage
    assert msa(odd)[1] == "AR"
    assert "ADT event A99 is not taken" in odd
    assert enrollments_of(runtime, mrn) == []

    # The mapping is fixed; the stored message is acted on again: nothing was lost.
    map_department(runtime, "ZZK", "cardiology")
    with Session(runtime.engine) as session:
        stored = session.exec(
            select(Hl7Message).where(Hl7Message.control_id == control + "c")
        ).one()
    assert stored.status == "error"
    receipt = await reprocess(runtime, stored.id)  # type: ignore[arg-type]
    assert receipt.code == "AA"
    [enrollment] = enrollments_of(runtime, mrn)
    assert enrollment.pathway_id == "pci"


async def test_a_gb18030_message_is_read_in_its_declared_charset(
    runtime: Runtime, journey_worker: WorkflowEnvironment, listener: int
) -> None:
    now = await journey_worker.get_current_time()
    control, mrn, visit = ids()
    message = adt(
        "A03",
        control_id=control,
        mrn=mrn,
        visit=visit,
        discharged=now,
        name="欧阳^娜娜",
        charset="GB 18030-2000",
    )
    async with Sender(listener) as engine:
        ack = await engine.send(message, encoding="gb18030")
    assert msa(ack)[1] == "AA"
    assert "GB 18030-2000" in ack.split("\r")[0]  # answered in the charset it was sent in
    [enrollment] = enrollments_of(runtime, mrn)
    with Session(runtime.engine) as session:
        patient = session.get(Patient, enrollment.patient_id)
        encounter = session.get(Encounter, enrollment.encounter_id)
    assert patient is not None
    assert patient.name == "欧阳娜娜"
    assert encounter is not None
    assert encounter.diagnosis_text == "急性心肌梗死"

    # The same bytes declared UTF-8 are not UTF-8: AR, saying so.
    wrong = message.replace("GB 18030-2000", "UNICODE UTF-8").replace(control, control + "x")
    async with Sender(listener) as engine:
        refused = await engine.send(wrong.encode("gb18030"))
    assert msa(refused)[1] == "AR"
    assert "not valid UNICODE UTF-8" in refused


async def test_a13_cancelled_discharge_stops_the_journey_and_a08_updates_contacts(
    runtime: Runtime, journey_worker: WorkflowEnvironment, listener: int
) -> None:
    now = await journey_worker.get_current_time()
    control, mrn, visit = ids()
    async with Sender(listener) as engine:
        assert (
            msa(
                await engine.send(
                    adt("A03", control_id=control, mrn=mrn, visit=visit, discharged=now)
                )
            )[1]
            == "AA"
        )
        update = adt(
            "A08",
            control_id=control + "u",
            mrn=mrn,
            visit=visit,
            discharged=now,
            phone="13900139000",
        )
        assert msa(await engine.send(update))[1] == "AA"
        cancel = adt("A13", control_id=control + "c", mrn=mrn, visit=visit, discharged=now)
        assert msa(await engine.send(cancel))[1] == "AA"

    [enrollment] = enrollments_of(runtime, mrn)
    handle = journey_worker.client.get_workflow_handle(enrollment.workflow_id)
    await handle.result()  # the journey ends
    with Session(runtime.engine) as session:
        stopped = session.get(Enrollment, enrollment.id)
        phones = session.exec(
            select(ContactPoint.value)
            .where(ContactPoint.patient_id == enrollment.patient_id)
            .order_by(col(ContactPoint.preferred_at).desc())
        ).all()
    assert stopped is not None
    assert stopped.status == "stopped"
    assert "HIS cancelled the discharge (A13)" in (stopped.stop_reason or "")
    assert phones[0] == "13900139000"  # the newest number is the one in use


async def test_an_inpatient_admission_tells_the_open_journey_of_the_readmission(
    runtime: Runtime, journey_worker: WorkflowEnvironment, listener: int
) -> None:
    now = await journey_worker.get_current_time()
    control, mrn, visit = ids()
    async with Sender(listener) as engine:
        first = adt(
            "A03", control_id=control, mrn=mrn, visit=visit, discharged=now - dt.timedelta(days=2)
        )
        assert msa(await engine.send(first))[1] == "AA"
        admit = adt(
            "A01",
            control_id=control + "r",
            mrn=mrn,
            visit=visit + "R",
            discharged=now + dt.timedelta(days=6),
        )
        assert msa(await engine.send(admit))[1] == "AA"
    [enrollment] = enrollments_of(runtime, mrn)
    await journey_worker.client.get_workflow_handle(enrollment.workflow_id).result()
    with Session(runtime.engine) as session:
        readmitted = session.get(Enrollment, enrollment.id)
    assert readmitted is not None
    assert readmitted.readmitted_at is not None
    assert readmitted.status == "stopped"


async def test_a40_merges_the_prior_patient_into_the_surviving_one(
    runtime: Runtime, journey_worker: WorkflowEnvironment, listener: int
) -> None:
    now = await journey_worker.get_current_time()
    control, old_mrn, visit = ids()
    _, new_mrn, other_visit = ids()
    async with Sender(listener) as engine:
        assert (
            msa(
                await engine.send(
                    adt("A03", control_id=control, mrn=old_mrn, visit=visit, discharged=now)
                )
            )[1]
            == "AA"
        )
        other = adt("A08", control_id=control + "n", mrn=new_mrn, visit=other_visit, discharged=now)
        assert msa(await engine.send(other))[1] == "AA"
        merge = adt(
            "A40",
            control_id=control + "m",
            mrn=new_mrn,
            visit=other_visit,
            discharged=now,
            extra=f"MRG|{old_mrn}^^^HOSP^MR",
        )
        assert msa(await engine.send(merge))[1] == "AA"
        missing = adt(
            "A40",
            control_id=control + "x",
            mrn=new_mrn,
            visit=other_visit,
            discharged=now,
            extra="MRG|NOSUCHMRN^^^HOSP^MR",
        )
        refused = await engine.send(missing)
    assert enrollments_of(runtime, old_mrn) == []  # the old MRN no longer finds anyone
    [enrollment] = enrollments_of(runtime, new_mrn)
    assert enrollment.pathway_id == "pci"
    assert msa(refused)[1] == "AE"
    assert "no patient with MRN 'NOSUCHMRN'" in refused


async def test_the_listener_survives_random_bytes_partial_and_oversized_frames(
    runtime: Runtime, journey_worker: WorkflowEnvironment, listener: int
) -> None:
    rng = random.Random(20)
    for _ in range(40):
        reader, writer = await asyncio.open_connection("127.0.0.1", listener)
        kind = rng.choice(["random", "framed-random", "partial", "no-start", "oversized"])
        if kind == "random":
            writer.write(os.urandom(rng.randint(1, 4000)))
        elif kind == "framed-random":
            writer.write(frame(os.urandom(rng.randint(1, 4000))))
        elif kind == "partial":
            writer.write(b"\x0bMSH|^~\\&|HIS|HOSP" + os.urandom(rng.randint(0, 200)))
        elif kind == "no-start":
            writer.write(b"PID|1||x\x1c\r")
        else:
            writer.write(b"\x0b" + b"A" * (runtime.settings.hl7_max_message_bytes + 10) + b"\x1c\r")
        await writer.drain()
        writer.write_eof()
        await asyncio.wait_for(reader.read(), 10)  # whatever it answers, it hangs up
        writer.close()
    # Still serving: a real message on a new connection is taken.
    now = await journey_worker.get_current_time()
    control, mrn, visit = ids()
    async with Sender(listener) as engine:
        ack = await engine.send(
            adt("A03", control_id=control, mrn=mrn, visit=visit, discharged=now)
        )
    assert msa(ack)[1] == "AA"


async def test_engines_that_post_http_get_the_same_intake(
    runtime: Runtime, journey_worker: WorkflowEnvironment
) -> None:
    with Session(runtime.engine) as session:
        admin = create_user(session, username="hie", display_name="HIE", role=Role.ADMIN)
        token = issue_token(session, admin, name="hie")[0]
    now = await journey_worker.get_current_time()
    control, mrn, visit = ids()
    message = adt("A03", control_id=control, mrn=mrn, visit=visit, discharged=now)
    auth = {"Authorization": f"Bearer {token}"}
    headers = {**auth, "Content-Type": "application/hl7-v2"}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(runtime)), base_url="http://suifang.test"
    ) as client:
        posted = await client.post("/intake/hl7v2", content=message.encode(), headers=headers)
        as_json = await client.post(
            "/intake/hl7v2",
            content=message.encode(),
            headers={**headers, "Content-Type": "application/json"},
        )
        anonymous = await client.post("/intake/hl7v2", content=message.encode())
        listed = await client.get("/hl7/messages", headers=auth)
        mapped = await client.put(
            "/departments/his-codes/XXK", json={"department": "cardiology"}, headers=auth
        )
        wrong = await client.put(
            "/departments/his-codes/XXK", json={"department": "cardiolgy"}, headers=auth
        )
        table = await client.get("/departments/his-codes", headers=auth)
        removed = await client.delete("/departments/his-codes/XXK", headers=auth)
    assert posted.status_code == 200
    assert posted.headers["x-hl7-ack-code"] == "AA"
    assert msa(posted.text)[1:3] == ["AA", control]
    assert as_json.status_code == 415
    assert anonymous.status_code == 401
    assert listed.json()[0]["control_id"] == control
    assert listed.json()[0]["transport"] == "http"
    assert "raw" not in listed.json()[0]
    assert mapped.json() == {"his_code": "XXK", "department": "cardiology", "previous": None}
    assert wrong.status_code == 422
    assert "unknown department 'cardiolgy'" in wrong.text
    assert table.json()["XXK"] == "cardiology"
    assert table.json()["XNK"] == "cardiology"  # seeded from templates/his_departments.yaml
    assert removed.json()["previous"] == "cardiology"
    [enrollment] = enrollments_of(runtime, mrn)
    assert enrollment.pathway_id == "pci"


async def test_the_cli_sends_lists_and_maps(
    runtime: Runtime, journey_worker: WorkflowEnvironment, listener: int, cli, tmp_path: Path
) -> None:
    now = await journey_worker.get_current_time()
    control, mrn, visit = ids()
    file = tmp_path / "a03.hl7"
    # Saved by an editor: LF line ends, as people keep sample messages.
    file.write_text(
        adt("A03", control_id=control, mrn=mrn, visit=visit, discharged=now).replace("\r", "\n"),
        "utf-8",
    )
    code, out, err_text = await asyncio.to_thread(
        cli, "hl7", "send", str(file), "--port", str(listener)
    )
    assert code == 0, err_text
    assert f"MSA|AA|{control}" in out
    code, out, _ = await asyncio.to_thread(cli, "hl7", "messages")
    assert code == 0
    assert control[:20] in out
    assert "processed" in out
    code, out, err_text = await asyncio.to_thread(cli, "departments", "map", "NK01", "cardiology")
    assert code == 0
    assert "NK01 → cardiology" in out
    code, _, err_text = await asyncio.to_thread(cli, "departments", "map", "NK02", "nowhere")
    assert code != 0
    assert "unknown department 'nowhere'" in err_text
    code, _, err_text = await asyncio.to_thread(
        cli, "hl7", "send", str(tmp_path / "missing.hl7"), "--port", str(listener)
    )
    assert code != 0
    assert "missing.hl7" in err_text
    assert (await receive(runtime, b"", transport="http")).code == "AR"


def oru(
    *,
    control_id: str,
    mrn: str,
    order: str,
    taken: dt.datetime,
    results: list[str],
    pv1: str = "PV1|1|O|TJZX||||||||TJZX",
) -> str:
    """A check-up centre's results as its LIS/HIS sends them."""
    segments = [
        f"MSH|^~\\&|LIS|HOSP|SUIFANG|HOSP|{hl7_time(taken)}||ORU^R01^ORU_R01|{control_id}|P|2.5"
        "|||||CHN|UNICODE UTF-8",
        f"PID|1||{mrn}^^^HOSP^MR||王^芳||19700505|F|||||13700137000",
        pv1,
        f"OBR|1|P-{order}|{order}|TJ^体检套餐|||{hl7_time(taken)}",
        *results,
    ]
    return "\r".join(segment for segment in segments if segment) + "\r"


HBA1C_HIGH = "OBX|1|NM|4548-4^糖化血红蛋白^LN||8.2|%|4.0-6.0|H|||F"
GLUCOSE_MG_DL = "OBX|2|NM|14771-0^空腹血糖^LN||126|mg/dL|70-110|H|||F"
URINE_PROTEIN = "OBX|3|ST|URPRO^尿蛋白||阴性||阴性|N|||F"


def observations_of(runtime: Runtime, mrn: str) -> list[tuple[str, float]]:
    with Session(runtime.engine) as session:
        patient = session.exec(
            select(Patient).where(Patient.external_id_hash == identifier_index("mrn", mrn))
        ).one()
        rows = session.exec(select(Observation).where(Observation.patient_id == patient.id)).all()
    return sorted((row.indicator, row.value) for row in rows)


async def test_abnormal_results_are_recorded_and_start_post_checkup_follow_up_naming_them(
    runtime: Runtime, journey_worker: WorkflowEnvironment, listener: int
) -> None:
    now = await journey_worker.get_current_time()
    control, mrn, order = ids()
    message = oru(
        control_id=control,
        mrn=mrn,
        order=order,
        taken=now - dt.timedelta(hours=2),
        results=[HBA1C_HIGH, GLUCOSE_MG_DL, URINE_PROTEIN],
    )
    async with Sender(listener) as engine:
        ack = await engine.send(message)
        again = await engine.send(message)
    assert msa(ack)[1] == "AA", ack
    assert again == ack
    # Trend data: the two numeric results, glucose converted from mg/dL to mmol/L.
    assert observations_of(runtime, mrn) == [("glucose_fasting", 6.99), ("hba1c", 8.2)]
    [enrollment] = enrollments_of(runtime, mrn)
    assert enrollment.pathway_id == "post-checkup"
    assert enrollment.department_code == "health_checkup"
    with Session(runtime.engine) as session:
        encounter = session.get(Encounter, enrollment.encounter_id)
    assert encounter is not None
    assert encounter.kind == "checkup"
    assert encounter.diagnosis_text == (
        "糖化血红蛋白 8.2 %(偏高,参考 4.0-6.0)；空腹血糖 126 mg/dL(偏高,参考 70-110)"
    )
    # Day 1: the first message names the findings.
    await journey_worker.sleep(dt.timedelta(days=2))
    with Session(runtime.engine) as session:
        bodies = session.exec(
            select(Message.body).where(
                Message.enrollment_id == enrollment.id, Message.touchpoint_key == "day1"
            )
        ).all()
    assert bodies, "the day-1 message was not sent"
    assert "有几项结果需要留意:糖化血红蛋白 8.2 %(偏高" in bodies[0]


async def test_normal_results_are_recorded_only_and_wrong_units_get_ae(
    runtime: Runtime, journey_worker: WorkflowEnvironment, listener: int
) -> None:
    now = await journey_worker.get_current_time()
    control, mrn, order = ids()
    normal = oru(
        control_id=control,
        mrn=mrn,
        order=order,
        taken=now,
        results=["OBX|1|NM|4548-4^糖化血红蛋白^LN||5.4|%|4.0-6.0|N|||F", URINE_PROTEIN],
        pv1="",
    )
    wrong_unit = oru(
        control_id=control + "u",
        mrn=mrn,
        order=order + "U",
        taken=now,
        results=["OBX|1|NM|4548-4^糖化血红蛋白^LN||54|mmol/mol|20-42|H|||F"],
        pv1="",
    )
    inpatient = oru(
        control_id=control + "i",
        mrn=mrn,
        order=order + "I",
        taken=now,
        results=[HBA1C_HIGH],
        pv1="PV1|1|I|XNK^12^3||||||||XNK",
    )
    async with Sender(listener) as engine:
        assert msa(await engine.send(normal))[1] == "AA"
        refused = await engine.send(wrong_unit)
        assert msa(await engine.send(inpatient))[1] == "AA"
    assert observations_of(runtime, mrn) == [("hba1c", 5.4), ("hba1c", 8.2)]
    assert enrollments_of(runtime, mrn) == []  # nothing abnormal outside a stay: no follow-up
    assert msa(refused)[1] == "AE"
    assert err(refused)[2] == "OBX^1^6^1"
    assert "unit 'mmol/mol' for hba1c (expected %)" in refused


async def test_review_findings_consent_redischarge_two_patients_and_report_resends(
    runtime: Runtime, journey_worker: WorkflowEnvironment, listener: int
) -> None:
    now = await journey_worker.get_current_time()
    control, mrn, visit = ids()
    async with Sender(listener) as engine:
        first = adt("A03", control_id=control, mrn=mrn, visit=visit, discharged=now)
        assert msa(await engine.send(first))[1] == "AA"
        # The patient withdraws consent; the HIS's next update carries no consent: it stays.
        [enrollment] = enrollments_of(runtime, mrn)
        with Session(runtime.engine) as session:
            patient = session.get(Patient, enrollment.patient_id)
            assert patient is not None
            patient.contact_consent = False
            session.add(patient)
            session.commit()
        update = adt("A08", control_id=control + "u", mrn=mrn, visit=visit, discharged=now)
        assert msa(await engine.send(update))[1] == "AA"
        # Cancel the discharge, then discharge again: follow-up starts again.
        cancel = adt("A13", control_id=control + "c", mrn=mrn, visit=visit, discharged=now)
        assert msa(await engine.send(cancel))[1] == "AA"
        redo = adt("A03", control_id=control + "r", mrn=mrn, visit=visit, discharged=now)
        assert msa(await engine.send(redo))[1] == "AA"
        # One message about two patients is refused, not put on the first.
        two = oru(
            control_id=control + "2",
            mrn=mrn,
            order="TWO",
            taken=now,
            results=[HBA1C_HIGH, "PID|2||OTHER^^^HOSP^MR||李^四", HBA1C_HIGH],
        )
        refused = await engine.send(two)
        # The same report sent again under a new control id records nothing twice.
        report = oru(
            control_id=control + "o1", mrn=mrn, order="REP1", taken=now, results=[HBA1C_HIGH]
        )
        again = report.replace(control + "o1", control + "o2")
        assert msa(await engine.send(report))[1] == "AA"
        assert msa(await engine.send(again))[1] == "AA"
    with Session(runtime.engine) as session:
        patient = session.get(Patient, enrollment.patient_id)
    assert patient is not None
    assert patient.contact_consent is False
    statuses = sorted(e.status for e in enrollments_of(runtime, mrn) if e.pathway_id == "pci")
    assert statuses == ["active", "stopped"]
    assert msa(refused)[1] == "AE"
    assert "more than one patient" in refused
    assert observations_of(runtime, mrn) == [("hba1c", 8.2)]
