"""Record the golden workflow histories that ``tests/workflows/test_replay.py`` replays.

Runs the real workflows with the real worker and activities on the time-skipping Temporal
test server and a throw-away SQLite database, drives every main path of every workflow type
(the same way the API and the tests do) and writes each finished execution's history as
``WorkflowHistory.to_json()`` (the format of ``temporal workflow show --output json``), plus a
``manifest.json`` naming the workflow id and scenario of each file.

Payloads are encrypted with the TEST-ONLY keys in ``test-keys.json`` (never a real key), which
the replay test uses too. Run from the repository root::

    .venv/bin/python -m tests.histories.record                  # → tests/histories/<today>/
    .venv/bin/python -m tests.histories.record --into v2        # → tests/histories/v2/
    .venv/bin/python tests/histories/record.py --only ticket-transferred --replace

A generation directory that exists is never overwritten without ``--replace``: after a change
to workflow code, record into a new directory and keep the old one for as long as runs it
recorded can still be open (see ``docs/workflow-changes.md``).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import itertools
import json
import sys
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sqlmodel import Session, col, select
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle, WorkflowHistory
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.testing import WorkflowEnvironment

from suifang.core.binaries import find_binary
from suifang.core.config import load_settings
from suifang.core.db import create_db_engine
from suifang.core.enums import Priority, TicketSource, Tier
from suifang.core.models import Patient, Ticket
from suifang.core.plugins import Plugins
from suifang.core.runtime import Runtime
from suifang.core.security.codec import PayloadEncryptionCodec
from suifang.core.security.crypto import Keyring, configure_keyring
from suifang.core.seed import prepare_database
from suifang.core.temporal import data_converter
from suifang.core.triage import TriageResult
from suifang.tickets.core import ActorAction, PatientEvent
from suifang.tickets.opening import build_ticket
from suifang.tickets.service import (
    TicketIn,
    act_on_ticket,
    open_ticket,
    patient_event,
)
from suifang.tickets.workflow import FeedbackTicketWorkflow, TicketInput
from suifang.workflows.intake import DischargeIn, EnrollmentOut, register_discharge
from suifang.workflows.journey import PatientJourneyWorkflow
from suifang.workflows.journey_commands import AnswerEvent, ControlEvent
from suifang.workflows.surveys import CampaignIn, start_campaign
from suifang.workflows.worker import build_worker

HISTORIES = Path(__file__).resolve().parent
TEST_KEYS = HISTORIES / "test-keys.json"
MANIFEST = "manifest.json"
_patient_numbers = itertools.count(1)  # one database for every scenario

PCI_NORMAL = {
    "chest_pain": "no",
    "breathless": "none",
    "antiplatelet": "every_dose",
    "bleeding": "no",
    "puncture_site": "fine",
    "activity": "normal",
    "sbp": "126",
    "heart_rate": "72",
}


def history_keyring() -> Keyring:
    """The fixed, test-only keys the golden histories are encrypted with."""
    content = json.loads(TEST_KEYS.read_text())
    return Keyring(tuple(content["encryption_keys"]), content["blind_index_key"].encode())


@dataclasses.dataclass
class Recorded:
    name: str
    scenario: str
    history: WorkflowHistory

    @property
    def workflow_type(self) -> str:
        return self.history.events[0].workflow_execution_started_event_attributes.workflow_type.name


@dataclasses.dataclass
class Recorder:
    env: WorkflowEnvironment
    runtime: Runtime
    recorded: list[Recorded] = dataclasses.field(default_factory=list)

    # ------------------------------------------------------------------ keeping histories

    async def keep(
        self, name: str, scenario: str, workflow_id: str, run_id: str | None = None
    ) -> None:
        handle = self.env.client.get_workflow_handle(workflow_id, run_id=run_id)
        description = await handle.describe()
        if description.status == WorkflowExecutionStatus.RUNNING:
            raise RuntimeError(f"{name}: {workflow_id} is still running; record finished runs")
        self.recorded.append(Recorded(name, scenario, await handle.fetch_history()))
        print(f"  recorded {name} ({workflow_id})", file=sys.stderr)

    # ------------------------------------------------------------------ journeys

    def discharge(self, pathway: str, department: str) -> DischargeIn:
        number = next(_patient_numbers)
        return DischargeIn.model_validate(
            {
                "pathway": pathway,
                "patient": {
                    "external_id": f"P-{pathway}-{number}",
                    "name": "李建国",
                    "sex": "male",
                    "birth_date": "1962-03-14",
                    "phone": f"1390000{number:04d}",
                },
                "encounter": {
                    "external_id": f"V-{pathway}-{number}",
                    "department": department,
                    "discharged_at": "2000-01-01T00:00:00+00:00",  # replaced below
                    "length_of_stay_days": 3,
                },
            }
        )

    async def enroll(self, pathway: str, department: str) -> tuple[EnrollmentOut, WorkflowHandle]:
        data = self.discharge(pathway, department)
        data.encounter.discharged_at = await self.env.get_current_time()
        enrollment = await register_discharge(self.runtime, data)
        handle = self.env.client.get_workflow_handle_for(
            PatientJourneyWorkflow.run, enrollment.workflow_id
        )
        return enrollment, handle

    async def next_touchpoint(self, handle: WorkflowHandle) -> str:
        """Skip time to the next touchpoint and wait until it is open; its key."""
        progress = await handle.query(PatientJourneyWorkflow.progress)
        if progress.next_due_at is None:
            raise RuntimeError("the journey has no next touchpoint")
        now = await self.env.get_current_time()
        await self.env.sleep(
            max(progress.next_due_at - now, dt.timedelta(0)) + dt.timedelta(minutes=1)
        )
        key = progress.next_touchpoint

        async def opened() -> bool:
            state = await handle.query(PatientJourneyWorkflow.progress)
            return key in state.open_touchpoints

        await settle(opened)
        return key

    def fine_answers(self, enrollment: EnrollmentOut, key: str) -> dict[str, Any]:
        """An answer to every question of touchpoint ``key`` that trips no alert rule."""
        from suifang.core.pathways import resolve_plan
        from tests.workflows.test_journey_workflow import normal_answers

        template = self.runtime.catalog.get(enrollment.pathway_id)
        plan = resolve_plan(template, enrollment.risk_tier, enrollment.groups)
        questionnaire = plan.touchpoint(key.split("#")[0]).questionnaire
        return normal_answers(questionnaire, plan.alert_rules) if questionnaire else {}

    async def answer(self, handle: WorkflowHandle, answers: dict[str, Any], **extra: Any) -> None:
        before = (await handle.query(PatientJourneyWorkflow.progress)).answered
        await handle.signal(PatientJourneyWorkflow.answer, AnswerEvent(answers=answers, **extra))

        async def recorded() -> bool:
            return (await handle.query(PatientJourneyWorkflow.progress)).answered > before

        await settle(recorded)

    async def run_to_end(self, handle: WorkflowHandle, days: int = 120) -> Any:
        """Skip time a week at a time until the journey ends (a handle by id does not skip)."""
        for _ in range(days // 7 + 1):
            if (await handle.describe()).status != WorkflowExecutionStatus.RUNNING:
                break
            await self.env.sleep(dt.timedelta(days=7))
        return await asyncio.wait_for(handle.result(), timeout=30)

    # ------------------------------------------------------------------ tickets

    def patient(self, name: str) -> int:
        number = next(_patient_numbers)
        with Session(self.runtime.engine) as session:
            row = Patient(
                external_id=f"P-ticket-{number}",
                name=name,
                sex="female",
                preferred_channels=["outbox"],
            )
            session.add(row)
            session.commit()
            return row.id  # type: ignore[return-value]

    def ticket(self, ticket_id: int) -> Ticket:
        with Session(self.runtime.engine) as session:
            row = session.get(Ticket, ticket_id)
            assert row is not None
            return row

    def tickets_of(self, enrollment_id: int) -> list[Ticket]:
        with Session(self.runtime.engine) as session:
            query = select(Ticket).where(Ticket.enrollment_id == enrollment_id)
            return list(session.exec(query.order_by(col(Ticket.id))).all())

    async def routed(self, ticket_id: int) -> Ticket:
        return await settle(
            lambda: self.ticket(ticket_id).department_code and self.ticket(ticket_id)
        )

    async def act(self, ticket_id: int, action: str, actor: str, **fields: Any) -> None:
        with Session(self.runtime.engine) as session:
            await act_on_ticket(
                self.runtime, session, ticket_id, ActorAction(action=action, actor=actor, **fields)
            )

    async def patient_says(self, ticket_id: int, **fields: Any) -> None:
        with Session(self.runtime.engine) as session:
            await patient_event(self.runtime, session, ticket_id, PatientEvent(**fields))

    async def closed(self, ticket_id: int) -> str:
        handle = self.env.client.get_workflow_handle(self.ticket(ticket_id).workflow_id)
        await asyncio.wait_for(handle.result(), timeout=30)
        return handle.id

    async def work_and_close(self, ticket_id: int, actor: str, reply: str, score: int) -> str:
        """Claim, reply, resolve, then the patient's satisfaction score closes it."""
        await self.routed(ticket_id)
        await self.act(ticket_id, "claim", actor)
        await self.act(ticket_id, "reply", actor, text=reply)
        await self.act(ticket_id, "resolve", actor, text="已处理")
        await self.patient_says(ticket_id, kind="satisfaction", score=score)
        return await self.closed(ticket_id)

    async def start_ticket(
        self, summary: str, triage: TriageResult, department: str
    ) -> tuple[int, WorkflowHandle]:
        """A ticket opened with a known triage result (as an integrator or the simulator does)."""
        with Session(self.runtime.engine) as session:
            start = build_ticket(
                session,
                patient_id=self.patient("张伟"),
                source=TicketSource.PATIENT_MESSAGE,
                summary=summary,
                triage=triage,
                opened_at=await self.env.get_current_time(),
                department=department,
            )
        handle = await self.env.client.start_workflow(
            FeedbackTicketWorkflow.run,
            TicketInput(setup=start.setup),
            id=start.workflow_id,
            task_queue=self.runtime.settings.task_queue,
        )
        return start.ticket_id, handle


async def settle(check: Callable[[], Any], timeout: float = 15.0) -> Any:
    """Poll ``check`` in real time until it returns something truthy (workflows are async)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if loop.time() > deadline:
            raise RuntimeError(f"condition not reached within {timeout}s")
        await asyncio.sleep(0.05)


# ---------------------------------------------------------------------------- scenarios


async def journey_pci_answered(rec: Recorder) -> None:
    enrollment, handle = await rec.enroll("pci", "cardiology")
    for _ in enrollment.schedule:
        await rec.next_touchpoint(handle)
        await rec.answer(handle, PCI_NORMAL)
    await asyncio.wait_for(handle.result(), timeout=30)
    await rec.keep(
        "journey-pci-answered",
        "PCI journey: all four check-ins answered normally, points credited, completed",
        handle.id,
    )


async def journey_pci_abnormal_answer(rec: Recorder) -> None:
    enrollment, handle = await rec.enroll("pci", "cardiology")
    await rec.next_touchpoint(handle)
    await rec.answer(handle, {**PCI_NORMAL, "chest_pain": "yes"})
    (alert_ticket,) = await settle(lambda: rec.tickets_of(enrollment.enrollment_id))
    # The doctor calls back the same day, while the journey goes on.
    alert_workflow = await rec.work_and_close(
        alert_ticket.id, "dr.zhao", "我是赵医生,请您现在到急诊来复查心电图。", score=5
    )
    for _ in enrollment.schedule[1:]:
        await rec.next_touchpoint(handle)
        await rec.answer(handle, PCI_NORMAL)
    await asyncio.wait_for(handle.result(), timeout=30)
    await rec.keep(
        "journey-pci-abnormal-answer",
        "PCI journey: chest pain on day 3 raises an L3 alert, sends advice and starts a child "
        "ticket workflow; later check-ins answered, completed",
        handle.id,
    )
    await rec.keep(
        "ticket-journey-alert",
        "L3 emergency ticket a journey started (child workflow): claimed, replied, resolved "
        "and closed by a satisfaction score the same day",
        alert_workflow,
    )


async def journey_pci_missed(rec: Recorder) -> None:
    enrollment, handle = await rec.enroll("pci", "cardiology")
    await rec.run_to_end(handle)
    await rec.keep(
        "journey-pci-missed",
        "PCI journey never answered: reminders, missed check-ins, lost to follow-up, a call "
        "task opened as a child ticket",
        handle.id,
    )
    (call_task,) = await settle(lambda: rec.tickets_of(enrollment.enrollment_id))
    ticket_workflow = await rec.work_and_close(
        call_task.id, "nurse.sun", "已电话联系,患者一切正常。", score=4
    )
    await rec.keep(
        "ticket-call-task",
        "Call task a lost journey started (child workflow): left past its SLA (warning and "
        "breach notices), then worked and closed",
        ticket_workflow,
    )


async def journey_pci_stopped(rec: Recorder) -> None:
    _, handle = await rec.enroll("pci", "cardiology")
    await rec.next_touchpoint(handle)
    await rec.answer(handle, PCI_NORMAL, text="挺好的,谢谢")
    await handle.execute_update(
        PatientJourneyWorkflow.control, ControlEvent(action="stop", reason="transferred care")
    )
    await asyncio.wait_for(handle.result(), timeout=30)
    await rec.keep(
        "journey-pci-stopped",
        "PCI journey: day 3 answered with a word of thanks, then stopped by the control update",
        handle.id,
    )


async def journey_diabetes_continue_as_new(rec: Recorder) -> None:
    usual = rec.runtime.settings.journey_run_length
    rec.runtime.settings.journey_run_length = 2  # so a few check-ins make a run
    try:
        enrollment, handle = await rec.enroll("diabetes", "endocrinology")
    finally:
        rec.runtime.settings.journey_run_length = usual
    first_run = (await handle.describe()).run_id
    for _ in range(3):
        key = await rec.next_touchpoint(handle)
        await rec.answer(handle, rec.fine_answers(enrollment, key), text="血糖还可以")
    await handle.execute_update(
        PatientJourneyWorkflow.control, ControlEvent(action="stop", reason="recorded")
    )
    await asyncio.wait_for(handle.result(), timeout=30)
    last_run = (await handle.describe()).run_id
    if last_run == first_run:
        raise RuntimeError("the diabetes journey did not continue as new")
    await rec.keep(
        "journey-diabetes-first-run",
        "Open-ended diabetes journey, first run: two weekly check-ins, then continue-as-new",
        handle.id,
        first_run,
    )
    await rec.keep(
        "journey-diabetes-continued-run",
        "Open-ended diabetes journey, the last run (started from the carried-over state), "
        "stopped by the control update",
        handle.id,
        last_run,
    )


async def ticket_complaint_resolved(rec: Recorder) -> None:
    summary = await open_ticket(
        rec.runtime,
        TicketIn(
            patient_id=rec.patient("王秀英"),
            text="停车场收费太贵了,而且排队很久才能进去",
            source=TicketSource.COMPLAINT,
        ),
    )
    workflow_id = await rec.work_and_close(
        summary.id, "zhang.logistics", "已反馈给停车场管理方,周一起增加一个入口。", score=5
    )
    await rec.keep(
        "ticket-complaint-resolved",
        "Complaint routed to logistics and acknowledged: claim, reply, resolve, satisfaction 5 "
        "closes it",
        workflow_id,
    )


async def ticket_red_flag_l3(rec: Recorder) -> None:
    summary = await open_ticket(
        rec.runtime,
        TicketIn(patient_id=rec.patient("刘芳"), text="胸口压着疼,一直出冷汗,喘不上气"),
    )
    if (summary.tier, summary.priority) != ("L3", "emergency"):
        raise RuntimeError(f"red-flag text was triaged {summary.tier}/{summary.priority}")
    await rec.routed(summary.id)
    await rec.act(summary.id, "claim", "dr.zhao")
    await rec.act(summary.id, "reply", "dr.zhao", text="已电话联系,患者已到急诊。")
    await rec.act(summary.id, "resolve", "dr.zhao", text="急诊处理完毕")
    await rec.env.sleep(dt.timedelta(days=3, minutes=1))  # no satisfaction answer: it closes
    await rec.keep(
        "ticket-red-flag-l3",
        "Red-flag message: L3 emergency, the 120 advice sent first, resolved, closed when the "
        "satisfaction wait ran out",
        await rec.closed(summary.id),
    )


async def ticket_transferred(rec: Recorder) -> None:
    ticket_id, handle = await rec.start_ticket(
        "出院带的药吃完了,要去哪里开?",
        TriageResult(
            category="medication", urgency=Priority.ROUTINE, confidence=0.9, suggested_tier=Tier.L2
        ),
        "cardiology",
    )
    await rec.routed(ticket_id)
    await rec.act(ticket_id, "wait_on_patient", "nurse.chen", text="请告诉我们您正在吃哪几种药")
    await rec.env.sleep(dt.timedelta(hours=5))
    await rec.patient_says(ticket_id, kind="reply", text="阿司匹林和他汀")
    await settle(lambda: rec.ticket(ticket_id).status == "in_progress")
    await rec.act(ticket_id, "transfer", "nurse.chen", department="pharmacy", text="药物咨询")
    await rec.act(ticket_id, "claim", "pharmacist.he")
    await rec.act(ticket_id, "reply", "pharmacist.he", text="可在药学门诊续方。")
    await rec.act(ticket_id, "resolve", "pharmacist.he")
    await rec.patient_says(ticket_id, kind="satisfaction", score=4)
    await asyncio.wait_for(handle.result(), timeout=30)
    await rec.keep(
        "ticket-transferred",
        "Medication question: waits on the patient (SLA paused), patient replies, transferred "
        "from cardiology to pharmacy, worked and closed",
        handle.id,
    )


async def ticket_sla_escalated(rec: Recorder) -> None:
    ticket_id, handle = await rec.start_ticket(
        "伤口周围发红,有点渗液",
        TriageResult(
            category="wound_care", urgency=Priority.URGENT, confidence=0.8, suggested_tier=Tier.L2
        ),
        "cardiology",
    )
    await rec.routed(ticket_id)
    # L2 urgent: 30 minutes to a first response, round the clock; nobody answers in time.
    await rec.env.sleep(dt.timedelta(minutes=35))
    await settle(lambda: rec.ticket(ticket_id).tier == "L3")
    # Now L3 urgent (2 h to a first response): breached again, while claimed.
    await rec.act(ticket_id, "claim", "nurse.chen")
    await rec.env.sleep(dt.timedelta(hours=2, minutes=5))
    await settle(lambda: rec.ticket(ticket_id).assignee is None)
    await rec.act(ticket_id, "reply", "dr.zhao", text="请今天下午来换药门诊。")
    await rec.act(ticket_id, "resolve", "dr.zhao")
    await rec.patient_says(ticket_id, kind="satisfaction", score=3)
    await asyncio.wait_for(handle.result(), timeout=30)
    await rec.keep(
        "ticket-sla-escalated",
        "Urgent wound question: SLA warning and breach bump it from L2 to L3, a second breach "
        "unassigns the claimant, then it is answered, resolved and closed",
        handle.id,
    )


async def journey_pci_free_text(rec: Recorder) -> None:
    enrollment, handle = await rec.enroll("pci", "cardiology")
    await rec.next_touchpoint(handle)
    # Three answers and a sentence: the sentence is triaged, the rest asked again.
    await handle.signal(
        PatientJourneyWorkflow.answer, AnswerEvent(text="否,1,1 就是这两天穿刺的地方有点痒")
    )
    await settle(lambda: rec.tickets_of(enrollment.enrollment_id))
    await rec.answer(handle, {}, text="1.否 2.1 3.1")
    for _ in enrollment.schedule[1:]:
        await rec.next_touchpoint(handle)
        await rec.answer(handle, PCI_NORMAL)
    await asyncio.wait_for(handle.result(), timeout=30)
    await rec.keep(
        "journey-pci-free-text",
        "PCI journey: a reply with three answers and a sentence — the sentence "
        "triaged into a ticket, the other questions asked again and answered; then completed",
        handle.id,
    )


async def ticket_emergency_paged(rec: Recorder) -> None:
    from suifang.tickets.oncall import RosterFile, import_roster

    with Session(rec.runtime.engine) as session:
        import_roster(
            session,
            RosterFile.model_validate(
                {
                    "staff": [
                        {
                            "username": "dr.wang",
                            "display_name": "王医生",
                            "departments": ["cardiology"],
                        },
                        {
                            "username": "nurse.li",
                            "display_name": "李护士",
                            "role": "nurse",
                            "departments": ["cardiology"],
                        },
                    ],
                    "departments": {
                        "cardiology": {
                            "paging": {"channels": ["outbox"], "escalate_after": ["5m", "10m"]},
                            "primary": "dr.wang",
                            "backup": "nurse.li",
                        }
                    },
                }
            ),
        )
    summary = await open_ticket(
        rec.runtime,
        TicketIn(
            patient_id=rec.patient("周敏"),
            text="我爸胸口特别闷，一直冒冷汗",
            department="cardiology",
        ),
    )
    await rec.routed(summary.id)
    await rec.env.sleep(dt.timedelta(minutes=6))  # no answer from the primary: the backup
    await settle(lambda: rec.ticket(summary.id).paging == "paging")
    await rec.act(summary.id, "acknowledge", "nurse.li", text="马上打电话")
    await rec.act(summary.id, "reply", "nurse.li", text="已电话联系,已叫120。")
    await rec.act(summary.id, "resolve", "nurse.li")
    await rec.env.sleep(dt.timedelta(days=3, minutes=1))
    await rec.keep(
        "ticket-emergency-paged",
        "Emergency: the on-call doctor paged, no acknowledgement for 5 minutes, the "
        "backup paged and acknowledges, the patient told, resolved and closed",
        await rec.closed(summary.id),
    )


async def survey_campaign_two_rounds(rec: Recorder) -> None:
    await rec.enroll("pci", "cardiology")  # the discharge the campaign surveys
    now = await rec.env.get_current_time()
    campaign = await start_campaign(
        rec.runtime,
        CampaignIn(
            name="心内科出院患者满意度",
            department="cardiology",
            discharged_from=(now - dt.timedelta(days=3)).date(),
            discharged_to=now.date(),
            rounds=2,
            every_days=30,
            channels=["outbox"],
        ),
        actor="admin",
    )
    handle = rec.env.client.get_workflow_handle(campaign.workflow_id)
    await rec.env.sleep(dt.timedelta(days=31))
    await handle.result()
    await rec.keep(
        "survey-campaign-two-rounds",
        "Satisfaction campaign: round one invites cardiology's discharge over the outbox, "
        "a month later round two finds nobody discharged in its period, then finished",
        campaign.workflow_id,
    )


SCENARIOS: dict[str, Callable[[Recorder], Awaitable[None]]] = {
    "journey-pci-answered": journey_pci_answered,
    "journey-pci-abnormal-answer": journey_pci_abnormal_answer,
    "journey-pci-missed": journey_pci_missed,
    "journey-pci-stopped": journey_pci_stopped,
    "journey-diabetes-continue-as-new": journey_diabetes_continue_as_new,
    "ticket-complaint-resolved": ticket_complaint_resolved,
    "ticket-red-flag-l3": ticket_red_flag_l3,
    "ticket-transferred": ticket_transferred,
    "ticket-sla-escalated": ticket_sla_escalated,
    "journey-pci-free-text": journey_pci_free_text,
    "ticket-emergency-paged": ticket_emergency_paged,
    "survey-campaign-two-rounds": survey_campaign_two_rounds,
}


# ---------------------------------------------------------------------------- running


async def record(names: list[str], work_dir: Path) -> list[Recorded]:
    keyring = history_keyring()
    configure_keyring(keyring)  # the database's encrypted columns use the test keys too
    database_url = f"sqlite:///{work_dir / 'app.db'}"
    settings = load_settings(
        data_dir=work_dir / "var",
        database_url=database_url,
        task_queue=f"record-{uuid.uuid4().hex[:8]}",
    )
    runtime = Runtime(
        settings=settings,
        engine=create_db_engine(database_url),
        plugins=Plugins.load(entrypoints=False, disabled=settings.disabled_plugins),
    )
    prepare_database(runtime.engine)
    recorded: list[Recorded] = []
    try:
        for name in names:
            print(f"{name}:", file=sys.stderr)
            recorded += await record_one(name, runtime, keyring)
    finally:
        runtime.close()
    return recorded


async def record_one(name: str, runtime: Runtime, keyring: Keyring) -> list[Recorded]:
    """One scenario on a fresh time-skipping server with its own worker.

    A fresh server per scenario keeps them independent: on the test server, a child ticket
    that completes after its journey has ended freezes the clock for whatever runs next.
    """
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(find_binary("temporal-test-server")),
        data_converter=data_converter(PayloadEncryptionCodec(keyring)),
        interceptors=[TracingInterceptor()],  # as production clients and workers have
    )
    try:
        runtime.with_client(env.client)
        recorder = Recorder(env, runtime)
        async with build_worker(env.client, runtime, task_queue=runtime.settings.task_queue):
            await SCENARIOS[name](recorder)
        return recorder.recorded
    finally:
        await env.shutdown()


def write(recorded: list[Recorded], into: Path) -> None:
    into.mkdir(parents=True, exist_ok=True)
    manifest_path = into / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    entries = {entry["file"]: entry for entry in manifest.get("histories", [])}
    for item in recorded:
        file = f"{item.name}.json"
        (into / file).write_text(item.history.to_json() + "\n")
        entries[file] = {
            "file": file,
            "workflow_type": item.workflow_type,
            "workflow_id": item.history.workflow_id,
            "scenario": item.scenario,
            "events": len(item.history.events),
        }
    manifest = {
        "recorded": dt.date.today().isoformat(),
        "keys": "../test-keys.json (test-only)",
        "histories": sorted(entries.values(), key=lambda entry: entry["file"]),
    }
    manifest_path.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.histories.record", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--into",
        default=dt.date.today().isoformat(),
        help="generation directory under tests/histories/ (default: today's date)",
    )
    parser.add_argument(
        "--only", action="append", choices=sorted(SCENARIOS), help="record just this scenario"
    )
    parser.add_argument(
        "--replace", action="store_true", help="write into an existing generation directory"
    )
    args = parser.parse_args(argv)
    into = Path(args.into) if Path(args.into).is_absolute() else HISTORIES / args.into
    if into.exists() and any(into.iterdir()) and not args.replace:
        print(
            f"{into} already holds histories; keep them (record into a new --into directory) "
            "or pass --replace to overwrite",
            file=sys.stderr,
        )
        return 2
    names = [name for name in SCENARIOS if not args.only or name in args.only]
    with tempfile.TemporaryDirectory(prefix="suifang-record-") as work_dir:
        recorded = asyncio.run(record(names, Path(work_dir)))
    write(recorded, into)
    for item in recorded:
        size = (into / f"{item.name}.json").stat().st_size
        print(f"{into.name}/{item.name}.json  {item.workflow_type}  {size:,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
