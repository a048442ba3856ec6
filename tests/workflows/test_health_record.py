"""Issue 24: a patient's health record and indicator trends, from a real journey: readings sent
through the API reach the workflow, an alert opens a ticket, and the record, the trend and its
chart show it all — to the patient's department only, every read audited."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pymupdf
import pypdf
import pytest
from sqlmodel import Session, select
from temporalio.testing import WorkflowEnvironment

from suifang.core.api import create_app
from suifang.core.channel_directory import ChannelDirectory
from suifang.core.contacts import add_contact
from suifang.core.delivery import DeliveryRequest, deliver
from suifang.core.errors import ValidationFailed
from suifang.core.hooks import hookimpl
from suifang.core.models import AuditLog, Observation, Patient
from suifang.core.pathway_catalogue import add_draft, publish
from suifang.core.runtime import Runtime
from suifang.core.security.auth import Role, create_user, issue_token
from suifang.core.triage import RoutingRequest
from suifang.plugins.channels.voice import TwilioVoiceChannel as VoiceChannel
from suifang.plugins.channels.voice import twilio_signature
from suifang.workflows.intake import DischargeIn, register_discharge
from suifang.workflows.tags import load_tag_rules

from .test_journey_workflow import advance_to_next_touchpoint, handle_of, settle

BASE = "http://suifang.test"
#: Systolic readings a month apart: falling, but only the last two are below 140.
READINGS = [(150, 95), (146, 92), (141, 90), (134, 86), (128, 82)]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def discharge(discharged: dt.datetime) -> dict[str, Any]:
    return {
        "pathway": "pci",
        "patient": {"external_id": "R-1", "name": "冯晓梅", "preferred_channels": ["outbox"]},
        "encounter": {
            "external_id": "V-R-1",
            "department": "cardiology",
            "discharged_at": discharged.isoformat(),
        },
    }


def publish_pathway(runtime: Runtime, text: str, origin: str) -> None:
    """Add ``text`` as a draft and publish it, as an administrator would."""
    with Session(runtime.engine) as session:
        change = add_draft(
            session,
            text,
            origin=origin,
            actor="test",
            vocabulary=runtime.vocabulary(),
            registered=runtime.catalog,
        )
        publish(session, change.pathway_id, change.version, vocabulary=runtime.vocabulary())


def staff(runtime: Runtime, username: str, role: Role, departments: list[str] | None) -> dict:
    with Session(runtime.engine) as session:
        user = create_user(
            session, username=username, display_name=username, role=role, departments=departments
        )
        token, _ = issue_token(session, user, name="t")
    return bearer(token)


@pytest.fixture
async def followed(runtime: Runtime, journey_worker: WorkflowEnvironment) -> dict[str, Any]:
    """A PCI patient with five monthly BP readings and one crisis reading (an alert, a ticket)."""
    now = await journey_worker.get_current_time()
    enrolled = await register_discharge(
        runtime,
        DischargeIn.model_validate(discharge(now - dt.timedelta(days=1))),
    )
    assert await advance_to_next_touchpoint(journey_worker, handle_of(journey_worker, enrolled))
    nurse = staff(runtime, "wang", Role.NURSE, ["cardiology"])
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(runtime)), base_url=BASE
    ) as api:
        for month, (sbp, dbp) in enumerate(READINGS):
            sent = await api.post(
                f"/journeys/{enrolled.enrollment_id}/observations",
                json={
                    "observations": [
                        {"indicator": "sbp", "value": sbp, "unit": "mmHg"},
                        {"indicator": "dbp", "value": dbp, "unit": "mmHg"},
                    ],
                    "observed_at": (now - dt.timedelta(days=150 - 30 * month)).isoformat(),
                    "source": "home_device",
                },
                headers=nurse,
            )
            assert sent.status_code == 202, sent.text
        crisis = await api.post(
            f"/journeys/{enrolled.enrollment_id}/observations",
            json={"observations": [{"indicator": "sbp", "value": 186, "unit": "mmHg"}]},
            headers=nurse,
        )
        assert crisis.status_code == 202, crisis.text

    def recorded() -> bool:
        with Session(runtime.engine) as session:
            return len(session.exec(select(Observation)).all()) == 2 * len(READINGS) + 1

    await settle(recorded)
    # The readings are dated by the test server's clock, which a long session has moved on
    # from the wall clock: periods below are counted from it.
    return {"enrollment": enrolled, "nurse": nurse, "today": now.date()}


async def test_the_record_holds_the_whole_follow_up_for_the_patient_s_department_only(
    runtime: Runtime, followed: dict[str, Any]
) -> None:
    enrolled = followed["enrollment"]
    patient = enrolled.patient_id
    outsider = staff(runtime, "li", Role.NURSE, ["orthopaedics"])
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(runtime)), base_url=BASE
    ) as api:

        async def alert_handled() -> dict[str, Any] | None:
            answer = await api.get(f"/patients/{patient}/record", headers=followed["nurse"])
            assert answer.status_code == 200, answer.text
            record = answer.json()
            return record if record["alerts"] and record["tickets"] else None

        record = await settle(alert_handled)
        hidden = await api.get(f"/patients/{patient}/record", headers=outsider)
        english = await api.get(
            f"/patients/{patient}/record", params={"locale": "en"}, headers=followed["nurse"]
        )

    assert record["patient"]["id"] == patient
    assert record["patient"]["name"] == "冯晓梅"
    assert [e["department"] for e in record["encounters"]] == ["cardiology"]
    (journey,) = record["journeys"]
    assert journey["pathway_id"] == "pci"
    assert journey["touchpoints"], "the journey's schedule is in the record"
    readings = [(o["indicator"], o["value"]) for o in record["observations"]]
    assert readings[0] == ("sbp", 186.0), "newest first"
    assert ("dbp", 95.0) in readings
    assert len(readings) == 11
    alert = record["alerts"][0]
    assert alert["ticket_id"] == record["tickets"][0]["id"]
    assert alert["handled"] == record["tickets"][0]["status"]
    assert re.search(r"[\u4e00-\u9fff]", alert["summary"])
    assert not re.search(r"[\u4e00-\u9fff]", english.json()["alerts"][0]["summary"])
    assert record["tickets"][0]["priority"] == alert["priority"] == "urgent"  # the pathway says so
    assert hidden.status_code == 404, "another department's nurse cannot even see it exists"
    with Session(runtime.engine) as session:
        reads = session.exec(
            select(AuditLog).where(AuditLog.action == "GET /patients/{patient_id}/record")
        ).all()
    assert {(r.actor, r.patient_id, r.status_code) for r in reads} >= {
        ("wang", patient, 200),
        ("li", patient, 404),
    }, "each read of a record, and each refused one, is in the audit log"


async def test_a_trend_has_its_direction_control_and_a_chart(
    runtime: Runtime, followed: dict[str, Any]
) -> None:
    patient = followed["enrollment"].patient_id
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(runtime)), base_url=BASE
    ) as api:
        monthly = await api.get(
            f"/patients/{patient}/trends",
            params={
                "indicator": "sbp",
                "until": (followed["today"] - dt.timedelta(days=1)).isoformat(),
            },
            headers=followed["nurse"],
        )
        chart = await api.get(
            f"/patients/{patient}/trends",
            params={"indicator": "sbp", "format": "svg"},
            headers=followed["nurse"],
        )
        unknown = await api.get(
            f"/patients/{patient}/trends", params={"indicator": "bp"}, headers=followed["nurse"]
        )
    assert monthly.status_code == 200, monthly.text
    trend = monthly.json()
    assert [p["value"] for p in trend["points"]] == [r[0] for r in READINGS]
    assert trend["direction"] == "falling"
    assert trend["change_per_30_days"] == pytest.approx(-5.6, abs=0.5)
    assert trend["control"]["target"] == {"at_least": None, "below": 140.0}
    assert trend["control"]["in_target_share"] == 0.4  # 134 and 128 of five
    assert trend["control"]["controlled"] is False  # 70 % needed
    assert [p["in_target"] for p in trend["points"]] == [False, False, False, True, True]
    assert chart.status_code == 200
    assert chart.headers["content-type"].startswith("image/svg+xml")
    assert "<svg" in chart.text
    assert "收缩压" in chart.text, "the title is text the viewer's CJK font renders"
    assert chart.text.count("<path") > 3, "a line, its markers and the target band"
    assert unknown.status_code == 422
    assert "sbp" in unknown.json()["error"]["message"], "the error names the known indicators"


async def test_the_cli_shows_the_record_and_writes_the_chart(
    runtime: Runtime, followed: dict[str, Any], tmp_path: Path, cli: Any
) -> None:
    patient = followed["enrollment"].patient_id
    code, shown, _ = cli("patients", "show", str(patient), "--record")
    assert code == 0, shown
    for section in ("Encounters", "Journeys", "Observations", "Alerts", "Tickets", "Messages"):
        assert section in shown
    assert "186" in shown
    chart = tmp_path / "sbp.svg"
    code, trend, _ = cli(
        "patients", "trend", str(patient), "dbp", "--svg", str(chart), "--locale", "en"
    )
    assert code == 0, trend
    assert "falling" in trend
    assert "Diastolic blood pressure" in chart.read_text(encoding="utf-8")
    for args, complaint in [
        (["patients", "trend", str(patient), "pulse"], "not a known indicator"),
        (["patients", "show", "999999"], "not found"),
        (["patients", "show", str(patient), "--locale", "fr"], "not zh-CN or en"),
    ]:
        code, out, err = cli(*args)
        assert code != 0, args
        assert complaint in out + err, out + err
        assert "Traceback" not in out + err


TWILIO_SID, TWILIO_TOKEN = "AC00000000000000000000000000000009", "twilio-token-for-record-tests"
CALLBACK = f"{BASE}/channels/voice/inbound"


def twilio(request: httpx.Request) -> httpx.Response:
    """Twilio's Calls.json: a queued call with its sid."""
    assert request.url.path == f"/2010-04-01/Accounts/{TWILIO_SID}/Calls.json"
    return httpx.Response(
        201, json={"sid": "CA0000000000000000000000000000abcd", "status": "queued"}
    )


async def test_a_follow_up_call_s_recording_is_in_the_record_to_play(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {
        "ACCOUNT_SID": TWILIO_SID,
        "AUTH_TOKEN": TWILIO_TOKEN,
        "FROM_NUMBER": "+861088886666",
        "CALLBACK_URL": CALLBACK,
    }.items():
        monkeypatch.setenv(f"SUIFANG_CHANNEL_VOICE_{name}", value)
    with Session(runtime.engine) as session:
        patient = Patient(external_id="R-2", name="赵敏", preferred_channels=["voice"])
        session.add(patient)
        session.commit()
        add_contact(session, patient.id, "phone", "+8613800138001", known=frozenset({"phone"}))  # type: ignore[arg-type]
        patient_id = patient.id
    voice = VoiceChannel(
        VoiceChannel.load_config(), http=httpx.AsyncClient(transport=httpx.MockTransport(twilio))
    )
    outcome = await deliver(
        runtime.engine,
        ChannelDirectory(runtime.plugins, instances={"voice": voice}),
        DeliveryRequest(
            idempotency_key="record-call-1",
            patient_id=patient_id,  # type: ignore[arg-type]
            kind="touchpoint",
            subject="随访",
            body="赵女士您好，这里是仁心医院随访中心。",
            locale="zh-CN",
            channels=["voice"],
        ),
    )
    assert outcome.delivered
    recording = "https://api.twilio.com/2010-04-01/Accounts/AC9/Recordings/RE77"
    params = {
        "AccountSid": TWILIO_SID,
        "CallSid": "CA0000000000000000000000000000abcd",
        "RecordingSid": "RE77",
        "RecordingUrl": recording,
        "RecordingStatus": "completed",
        "RecordingDuration": "95",
    }
    url = f"{CALLBACK}?{urlencode({'event': 'recording', 'key': 'record-call-1'})}"
    admin = staff(runtime, "root", Role.ADMIN, None)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(runtime)), base_url=BASE
    ) as api:
        called_back = await api.post(
            url,
            content=urlencode(params).encode(),
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Twilio-Signature": twilio_signature(url, list(params.items()), TWILIO_TOKEN),
            },
        )
        assert called_back.status_code == 200, called_back.text
        record = (await api.get(f"/patients/{patient_id}/record", headers=admin)).json()
    (played,) = record["recordings"]
    assert played["url"] == recording
    assert played["duration_seconds"] == 95
    assert played["channel"] == "voice"
    assert [m["channel"] for m in record["messages"]] == ["voice"]


async def test_readings_give_a_tag_that_is_kept_as_history_and_chooses_a_variant(
    runtime: Runtime, followed: dict[str, Any], journey_worker: WorkflowEnvironment, tmp_path: Path
) -> None:
    """Issue 24: blood pressure not controlled over the first follow-up (3 of 5 readings at
    140 or above) tags the patient 血压控制不佳; at the next discharge a pathway's
    ``tag:bp_uncontrolled`` variant gives them an early BP check."""
    patient = followed["enrollment"].patient_id
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(runtime)), base_url=BASE
    ) as api:
        record = (await api.get(f"/patients/{patient}/record", headers=followed["nurse"])).json()
    assert "bp_uncontrolled" in [t["tag"] for t in record["tags"]]
    added = [c for c in record["tag_history"] if c["tag"] == "bp_uncontrolled"]
    assert [c["change"] for c in added] == ["added"]
    assert "observations" in added[0]["reason"], "given when the readings were recorded"

    shipped = (
        Path(__file__).parents[2] / "templates" / "pathways" / "hypertension.yaml"
    ).read_text(encoding="utf-8")
    tagged = shipped.replace("id: hypertension\n", "id: hypertension-tagged\n", 1) + (
        "  tag:bp_uncontrolled:\n"
        "    reminders: 2\n"
        "    add_touchpoints:\n"
        "      - id: bp_early\n"
        "        day: 2\n"
        "        questionnaire: bp_weekly\n"
        "        message:\n"
        '          zh-CN: "{{ name }}您好，上次随访时您的血压控制得不太理想，'
        '请今天量一次血压告诉我们。"\n'
        '          en: "Hello {{ name }}, your blood pressure was not well controlled last time: '
        'please measure it today and tell us."\n'
    )
    publish_pathway(runtime, tagged, "hypertension-tagged.yaml")
    now = await journey_worker.get_current_time()
    again = discharge(now)
    again["pathway"] = "hypertension-tagged"
    again["encounter"]["external_id"] = "V-R-1-second"
    second = await register_discharge(runtime, DischargeIn.model_validate(again))
    assert "tag:bp_uncontrolled" in second.variants
    assert "bp_early" in [s.key for s in second.schedule]

    untagged = discharge(now)
    untagged["pathway"] = "hypertension-tagged"
    untagged["patient"]["external_id"] = "R-9"
    untagged["encounter"]["external_id"] = "V-R-9"
    other = await register_discharge(runtime, DischargeIn.model_validate(untagged))
    assert "tag:bp_uncontrolled" not in other.variants
    assert "bp_early" not in [s.key for s in other.schedule]

    # A pathway can be *for* tagged patients: matched by the tag the record gave them.
    watch = shipped.replace("id: hypertension\n", "id: hypertension-watch\n", 1).replace(
        "  priority: 5\n", "  priority: 5\n  tags: [bp_uncontrolled]\n", 1
    )
    assert "tags: [bp_uncontrolled]" in watch
    publish_pathway(runtime, watch, "hypertension-watch.yaml")
    for mrn, visit, expected in (
        ("R-1", "V-R-1-third", "hypertension-watch"),
        ("R-8", "V-R-8", "hypertension"),
    ):
        unnamed = discharge(now)
        del unnamed["pathway"]
        unnamed["patient"]["external_id"] = mrn
        unnamed["encounter"] |= {"external_id": visit, "diagnosis_codes": ["I10"]}
        chosen = await register_discharge(runtime, DischargeIn.model_validate(unnamed))
        assert chosen.pathway_id == expected, mrn


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        (
            "version: 1\ntags:\n  shaky:\n    name: {zh-CN: 不稳, en: Shaky}\n"
            "    when: {falls_at_least: 2}\n",
            "tags.yaml:5: tags.shaky.when.falls_at_least",
        ),
        (
            "version: 1\ntags:\n  both:\n    name: {zh-CN: 两个, en: Both}\n"
            "    when: {age_at_least: 70, risk_tier: high}\n",
            "exactly one of",
        ),
        (
            "version: 1\ntags:\n  heavy:\n    name: {zh-CN: 重, en: Heavy}\n"
            "    when: {uncontrolled: weight}\n",
            "'weight' is not an indicator with a target",
        ),
        ("version: 1\ntags: [oops\n", "not valid YAML"),
    ],
)
def test_a_hospital_s_bad_tag_rule_is_refused_saying_where(
    tmp_path: Path, text: str, complaint: str
) -> None:
    rules = tmp_path / "tags.yaml"
    rules.write_text(text, encoding="utf-8")
    with pytest.raises(ValidationFailed) as refused:
        load_tag_rules(rules)
    assert complaint in str(refused.value)


async def test_kpis_can_be_narrowed_to_the_patients_with_a_tag(
    runtime: Runtime, followed: dict[str, Any]
) -> None:
    admin = staff(runtime, "root", Role.ADMIN, None)
    today = followed["today"]
    # The test server's clock ran ahead to the first touchpoint: the period reaches past today.
    period = {
        "from": (today - dt.timedelta(days=30)).isoformat(),
        "to": (today + dt.timedelta(days=30)).isoformat(),
    }
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(runtime)), base_url=BASE
    ) as api:

        async def tickets(tag: str | None) -> int:
            params = {**period, **({"tag": tag} if tag else {})}
            answer = await api.get("/reports/kpis", params=params, headers=admin)
            assert answer.status_code == 200, answer.text
            assert answer.json()["tag"] == tag
            return sum(answer.json()["tickets_by_category"].values())

        everyone = await settle_async(lambda: tickets(None))
        assert await tickets("bp_uncontrolled") == everyone  # the one patient has the tag
        assert await tickets("elderly") == 0  # nobody here is 65
        unknown = await api.get("/reports/kpis", params={**period, "tag": "tall"}, headers=admin)
    assert unknown.status_code == 422
    assert "bp_uncontrolled" in unknown.json()["error"]["message"]


async def settle_async(count: Any) -> int:
    """The count once it is above zero (the alert's ticket is opened by its workflow)."""
    for _ in range(100):
        if found := await count():
            return found
        await asyncio.sleep(0.1)
    raise AssertionError("no ticket was opened")


async def test_the_printable_report_has_the_chinese_text_charts_and_advice(
    runtime: Runtime, followed: dict[str, Any], tmp_path: Path, cli: Any
) -> None:
    """Issue 24: the PDF embeds its Chinese font — the text reads back — and draws each
    indicator's chart; the HTML is the same content on one page."""
    patient = followed["enrollment"].patient_id
    today = followed["today"]
    period = {
        "from": (today - dt.timedelta(days=200)).isoformat(),
        "to": (today + dt.timedelta(days=30)).isoformat(),
    }
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(runtime)), base_url=BASE
    ) as api:
        pdf = await api.get(
            f"/patients/{patient}/report.pdf", params=period, headers=followed["nurse"]
        )
        html = await api.get(
            f"/patients/{patient}/report.html", params=period, headers=followed["nurse"]
        )
        backwards = await api.get(
            f"/patients/{patient}/report.pdf",
            params={"from": "2026-12-01", "to": "2026-11-01"},
            headers=followed["nurse"],
        )
    assert pdf.status_code == 200, pdf.text
    assert pdf.headers["content-type"] == "application/pdf"
    document = pymupdf.open(stream=pdf.content, filetype="pdf")
    text = "".join(page.get_text() for page in document)
    for heading in (
        "健康阶段总结",
        "基本信息",
        "随访进展",
        "指标趋势",
        "预警及处理",
        "健康建议",
        "下一步",
    ):
        assert heading in text, heading
    assert "冯晓梅" in text
    assert "血压控制不佳" in text, "tags by name"
    assert "收缩压" in text
    assert "舒张压" in text
    assert "每天食盐不超过5克" in text, "bp_uncontrolled chose the low-salt advice"
    assert "抗血小板药不要自行停用" in text, "the PCI pathway chose its exercise advice"
    fonts = {font[3] for page in document for font in page.get_fonts()}
    assert any("NotoSansCJK" in name for name in fonts), fonts
    charts = [image for page in document for image in page.get_images()]
    assert len(charts) >= 2, "a chart for each indicator read in the period"
    first = document[0].get_pixmap(dpi=60)
    assert len(set(first.samples)) > 10, "the first page is not blank"
    (tmp_path / "report.pdf").write_bytes(pdf.content)
    assert pypdf.PdfReader(io.BytesIO(pdf.content)).pages[0].extract_text()

    assert html.status_code == 200
    assert "<svg" in html.text
    assert "健康阶段总结" in html.text
    assert "冯晓梅" in html.text
    assert backwards.status_code == 422

    out = tmp_path / "report-en.pdf"
    code, said, err = cli(
        "patients",
        "report",
        str(patient),
        "--out",
        str(out),
        "--locale",
        "en",
        "--from",
        period["from"],
        "--to",
        period["to"],
    )
    assert code == 0, said + err
    english = "".join(p.get_text() for p in pymupdf.open(out))
    assert "Health summary" in english
    assert "Indicator trends" in english
    code, said, err = cli("patients", "report", str(patient), "--out", str(tmp_path / "r.doc"))
    assert code != 0
    assert "must end in .pdf or .html" in said + err


class _RouteByTag:
    """A hospital's routing plugin: medication questions from patients whose blood pressure is
    not controlled go to the hypertension nurses (here: nursing)."""

    @hookimpl
    def suifang_route_ticket(self, request: RoutingRequest) -> str | None:
        if "bp_uncontrolled" in request.patient_tags and request.category == "medication":
            return "nursing"
        return None


async def test_a_routing_plugin_sees_the_patient_s_tags(
    runtime: Runtime, followed: dict[str, Any]
) -> None:
    runtime.plugins.pm.register(_RouteByTag(), name="route-by-tag")
    patient = followed["enrollment"].patient_id
    admin = staff(runtime, "root", Role.ADMIN, None)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(runtime)), base_url=BASE
    ) as api:
        opened = await api.post(
            "/tickets",
            json={"patient_id": patient, "text": "降压药可以饭后吃吗？吃了有点头晕"},
            headers=admin,
        )
        assert opened.status_code == 201, opened.text

        async def routed() -> str | None:
            answer = await api.get(f"/tickets/{opened.json()['id']}", headers=admin)
            return answer.json()["department"]

        for _ in range(100):
            if department := await routed():
                break
            await asyncio.sleep(0.1)
    assert department == "nursing"


async def test_bad_input_to_the_record_trend_report_and_survey_doors_is_named_not_crashed(
    runtime: Runtime, followed: dict[str, Any], tmp_path: Path, cli: Any
) -> None:
    """Issue 24: each new route and command answers bad input with what is wrong and where."""
    patient = followed["enrollment"].patient_id
    nurse = followed["nurse"]
    cases = [
        (f"/patients/{patient}/trends", {}, 422, "indicator: required"),
        (f"/patients/{patient}/trends", {"indicator": "pulse"}, 422, "pulse"),
        (f"/patients/{patient}/trends", {"indicator": "sbp", "format": "gif"}, 422, "format"),
        (f"/patients/{patient}/report.pdf", {"locale": "fr"}, 422, "locale"),
        (f"/patients/{patient}/report.pdf", {"from": "2026-02-30"}, 422, "from"),
        (f"/patients/{patient}/report.html", {"to": "yesterday"}, 422, "to"),
        ("/patients/abc/record", {}, 422, "patient_id"),
        ("/patients/999999/record", {}, 404, "no patient 999999"),
        ("/reports/monthly.html", {"month": "11/2026"}, 422, "month"),
        ("/reports/monthly.pdf", {}, 422, "month"),
        ("/reports/feedback", {"from": "2026-11-01", "to": "2026-11-30", "top": 0}, 422, "top"),
        ("/surveys/campaigns/999999/results", {}, 404, "999999"),
    ]
    admin = staff(runtime, "records-admin", Role.ADMIN, None)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(runtime)), base_url=BASE
    ) as api:
        for path, params, status, named in cases:
            headers = admin if path.startswith(("/reports", "/surveys")) else nurse
            response = await api.get(path, params=params, headers=headers)
            assert response.status_code == status, (path, params, response.text)
            message = response.json()["error"]["message"]
            assert named in message, (path, params, message)
        bad_campaign = await api.post(
            "/surveys/campaigns",
            json={"name": "x", "from": "2026-11-01", "to": "2026-10-01", "survey": "nope"},
            headers=admin,
        )
    assert bad_campaign.status_code == 422, bad_campaign.text
    assert "Traceback" not in bad_campaign.text

    pdf, doc = str(tmp_path / "r.pdf"), str(tmp_path / "m.doc")
    for args, complaint in [
        (["patients", "report", "999999", "--out", pdf], "999999"),
        (["patients", "report", str(patient), "--from", "2026-13-01", "--out", pdf], "2026-13-01"),
        (["report", "monthly", "--month", "2026-11", "--out", doc], ".pdf or .html"),
        (["report", "monthly", "--month", "2026-11", "--department", "x9", "--out", pdf], "x9"),
        (["surveys", "results", "999999"], "999999"),
    ]:  # fmt: skip
        code, out, err = cli(*args)
        assert code != 0, args
        assert complaint in out + err, (args, out + err)
        assert "Traceback" not in out + err
    assert not (tmp_path / "r.pdf").exists(), "nothing half-written"
