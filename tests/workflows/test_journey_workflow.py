"""Journeys end to end on the time-skipping server: real workflow, real activities, real DB.

Every built-in pathway runs through its schedule with normal, abnormal and missing answers;
do-not-contact, readmission, continue-as-new, template changes and replay are covered too.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import shutil
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, col, select
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from suifang.core.enums import JourneyStatus, Priority, Tier
from suifang.core.errors import NotFoundError, ValidationFailed
from suifang.core.models import (
    Alert,
    Answer,
    Enrollment,
    Message,
    Patient,
    PointsEntry,
    Ticket,
    TouchpointRecord,
)
from suifang.core.pathway_catalogue import add_draft, publish, retire
from suifang.core.pathways import (
    AlertRule,
    JourneyPlan,
    PathwayTemplate,
    resolve_plan,
)
from suifang.core.runtime import Runtime
from suifang.workflows import journey_service, simulation
from suifang.workflows.intake import DischargeIn, EnrollmentOut, register_discharge
from suifang.workflows.journey import PatientJourneyWorkflow
from suifang.workflows.journey_commands import AnswerEvent, ControlEvent
from suifang.workflows.journey_service import migrate_journeys
from suifang.workflows.simulation import normal_answers

BUILT_IN = ["pci", "diabetes", "hip-replacement", "post-checkup", "hypertension", "general"]
_counter = itertools.count(1)


# --------------------------------------------------------------------------- answer helpers


def abnormal_answers(plan: JourneyPlan, touchpoint_id: str) -> tuple[dict[str, Any], AlertRule]:
    """The simulator's normal answers except for what trips the first applicable alert rule."""
    found = simulation.abnormal_answers(plan, touchpoint_id)
    assert found is not None, f"no alert rule of {plan.pathway_id} applies to {touchpoint_id}"
    return found


# --------------------------------------------------------------------------- journey helpers


def discharge(
    runtime: Runtime, template: PathwayTemplate, discharged_at: dt.datetime, **extra: Any
) -> DischargeIn:
    number = next(_counter)
    kind = "checkup" if template.id == "post-checkup" else "inpatient"
    return DischargeIn.model_validate(
        {
            "pathway": template.id,
            "patient": {
                "external_id": f"P-{template.id}-{number}",
                "name": "李建国",
                "sex": "male",
                "birth_date": "1970-05-01",
                "phone": f"1390000{number:04d}",
                **extra.pop("patient", {}),
            },
            "encounter": {
                "external_id": f"V-{template.id}-{number}",
                "kind": kind,
                "department": template.department or "general_medicine",
                "discharged_at": discharged_at.isoformat(),
                "length_of_stay_days": 3,
                **extra.pop("encounter", {}),
            },
            **extra,
        }
    )


async def settle(check: Any, timeout: float = 10.0) -> Any:
    """Poll ``check`` (in real time) until it returns something truthy; workflows are async."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not reached within {timeout}s")
        await asyncio.sleep(0.05)


async def run_to_end(env: WorkflowEnvironment, handle: WorkflowHandle, days: int = 400) -> Any:
    """Skip time a week at a time until the journey ends; its result.

    (A handle obtained by id does not unlock time skipping while awaiting its result, so the
    test moves the clock itself.)
    """
    for _ in range(days // 7 + 1):
        if (await handle.describe()).status != WorkflowExecutionStatus.RUNNING:
            break
        await env.sleep(dt.timedelta(days=7))
    return await handle.result()


def handle_of(env: WorkflowEnvironment, enrollment: EnrollmentOut) -> WorkflowHandle:
    return env.client.get_workflow_handle_for(PatientJourneyWorkflow.run, enrollment.workflow_id)


async def advance_to_next_touchpoint(
    env: WorkflowEnvironment, handle: WorkflowHandle
) -> str | None:
    """Skip time to the next touchpoint and wait until it is open; its key, or None at the end."""
    progress = await handle.query(PatientJourneyWorkflow.progress)
    if progress.next_due_at is None:
        return None
    now = await env.get_current_time()
    await env.sleep(max(progress.next_due_at - now, dt.timedelta(0)) + dt.timedelta(minutes=1))
    key = progress.next_touchpoint

    async def opened() -> bool:
        state = await handle.query(PatientJourneyWorkflow.progress)
        return key in state.open_touchpoints or state.status != JourneyStatus.ACTIVE

    await settle(opened)
    return key


def rows(runtime: Runtime, model: Any, **where: Any) -> list[Any]:
    with Session(runtime.engine) as session:
        query = select(model)
        for name, value in where.items():
            query = query.where(getattr(model, name) == value)
        return list(session.exec(query.order_by(col(model.id))).all())


async def journey_status(runtime: Runtime, enrollment_id: int) -> str:
    with Session(runtime.engine) as session:
        enrollment = session.get(Enrollment, enrollment_id)
        assert enrollment is not None
        return enrollment.status


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize("pathway_id", BUILT_IN)
async def test_pathway_runs_on_schedule_with_normal_answers(
    pathway_id: str, runtime: Runtime, journey_worker: WorkflowEnvironment
) -> None:
    env = journey_worker
    template = runtime.catalog.get(pathway_id)
    start = await env.get_current_time()
    enrollment = await register_discharge(runtime, discharge(runtime, template, start))
    plan = resolve_plan(template, enrollment.risk_tier, enrollment.groups)
    handle = handle_of(env, enrollment)
    expected = {s.key: s.due_at for s in enrollment.schedule}
    answered = []
    for _ in range(4 if plan.open_ended else len(expected)):
        key = await advance_to_next_touchpoint(env, handle)
        assert key is not None
        planned = plan.touchpoint(key.split("#")[0])
        if planned.expects_answer:
            answers = (
                normal_answers(planned.questionnaire, plan.alert_rules)
                if planned.questionnaire
                else {}
            )
            await handle.signal(
                PatientJourneyWorkflow.answer,
                AnswerEvent(answers=answers, text=None if answers else "都挺好"),
            )
            answered.append(key)
    if plan.open_ended:
        await handle.execute_update(
            PatientJourneyWorkflow.control, ControlEvent(action="stop", reason="test done")
        )
    result = await handle.result()
    assert result.status == (JourneyStatus.STOPPED if plan.open_ended else JourneyStatus.COMPLETED)
    messages = [
        m
        for m in rows(runtime, Message, enrollment_id=enrollment.enrollment_id)
        if m.kind == "touchpoint"
    ]
    sent = {m.touchpoint_key: m.sent_at for m in messages}
    for key in list(sent)[: len(expected)]:
        if key in expected:
            assert abs(sent[key] - expected[key]) < dt.timedelta(minutes=1), (
                key
            )  # on the planned day and time
    assert all(m.channel == "outbox" and m.status == "delivered" for m in messages)
    assert "李" in messages[0].body  # addressed by name
    assert rows(runtime, Alert, enrollment_id=enrollment.enrollment_id) == []
    points = rows(runtime, PointsEntry, enrollment_id=enrollment.enrollment_id)
    assert len(points) == len(answered)
    assert await journey_status(runtime, enrollment.enrollment_id) == result.status


@pytest.mark.parametrize("pathway_id", BUILT_IN)
async def test_abnormal_answer_raises_the_alert_at_the_templates_tier(
    pathway_id: str, runtime: Runtime, journey_worker: WorkflowEnvironment
) -> None:
    env = journey_worker
    template = runtime.catalog.get(pathway_id)
    enrollment = await register_discharge(
        runtime, discharge(runtime, template, await env.get_current_time())
    )
    plan = resolve_plan(template, enrollment.risk_tier, enrollment.groups)
    handle = handle_of(env, enrollment)
    key = await advance_to_next_touchpoint(env, handle)
    assert key is not None
    while plan.touchpoint(key.split("#")[0]).questionnaire is None:
        key = await advance_to_next_touchpoint(env, handle)
        assert key is not None
    answers, rule = abnormal_answers(plan, key.split("#")[0])
    await handle.signal(PatientJourneyWorkflow.answer, AnswerEvent(answers=answers))
    alerts = await settle(lambda: rows(runtime, Alert, enrollment_id=enrollment.enrollment_id))
    raised = {a.rule_id: (a.tier, a.priority) for a in alerts}
    assert raised[rule.id] == (rule.tier.value, rule.priority.value)
    assert alerts[0].touchpoint_key == key
    stored = rows(runtime, Answer, enrollment_id=enrollment.enrollment_id)
    assert {a.question_id for a in stored} >= set(answers)
    # One ticket for the answer, at the highest tier and priority among the alerts it raised,
    # routed to the department that owns the patient's journey.
    tickets = await settle(
        lambda: [
            t
            for t in rows(runtime, Ticket, enrollment_id=enrollment.enrollment_id)
            if t.department_code
        ]
    )
    assert len(tickets) == 1
    top = max(alerts, key=lambda a: (Tier(a.tier).rank, Priority(a.priority).rank))
    assert (tickets[0].source, tickets[0].tier, tickets[0].priority) == (
        "clinical_alert",
        top.tier,
        top.priority,
    )
    assert {a.ticket_id for a in rows(runtime, Alert, enrollment_id=enrollment.enrollment_id)} == {
        tickets[0].id
    }
    if tickets[0].clinical:  # (non-clinical categories follow the routing table)
        assert tickets[0].department_code == template.department
    if rule.advice is not None:
        advice = await settle(
            lambda: [
                m
                for m in rows(runtime, Message, enrollment_id=enrollment.enrollment_id)
                if m.kind == "advice"
            ]
        )
        assert "120" in advice[0].body or "emergency" in advice[0].body.lower()
    await handle.execute_update(PatientJourneyWorkflow.control, ControlEvent(action="stop"))


@pytest.mark.parametrize("pathway_id", BUILT_IN)
async def test_missing_answers_remind_then_mark_lost_and_open_a_call_task(
    pathway_id: str, runtime: Runtime, journey_worker: WorkflowEnvironment
) -> None:
    env = journey_worker
    template = runtime.catalog.get(pathway_id)
    enrollment = await register_discharge(
        runtime, discharge(runtime, template, await env.get_current_time())
    )
    handle = handle_of(env, enrollment)
    result = await run_to_end(env, handle)
    plan = resolve_plan(template, enrollment.risk_tier, enrollment.groups)
    assert result.status == JourneyStatus.LOST
    assert result.progress.missed == plan.lost_after_missed
    records = rows(runtime, TouchpointRecord, enrollment_id=enrollment.enrollment_id)
    assert [r.status for r in records].count("missed") == plan.lost_after_missed
    kinds = [m.kind for m in rows(runtime, Message, enrollment_id=enrollment.enrollment_id)]
    assert "reminder" in kinds or all(t.reminders == 0 for t in plan.touchpoints)
    # 失访 opens a ticket for a person to phone the patient.
    tasks = await settle(lambda: rows(runtime, Ticket, enrollment_id=enrollment.enrollment_id))
    assert [(t.source, t.category, t.tier) for t in tasks] == [("non_responder", "call_task", "L2")]
    assert (
        await settle(lambda: rows(runtime, Ticket, id=tasks[0].id)[0].department_code) == "nursing"
    )


async def test_do_not_contact_mid_journey_stops_every_later_send(
    runtime: Runtime, journey_worker: WorkflowEnvironment
) -> None:
    env = journey_worker
    template = runtime.catalog.get("pci")
    enrollment = await register_discharge(
        runtime, discharge(runtime, template, await env.get_current_time())
    )
    handle = handle_of(env, enrollment)
    await advance_to_next_touchpoint(env, handle)
    await handle.signal(PatientJourneyWorkflow.answer, AnswerEvent(text="挺好的"))
    with Session(runtime.engine) as session:
        stopped = await journey_service.withdraw_consent(
            runtime, session, enrollment.patient_id, source="patient phoned"
        )
    assert stopped == [enrollment.enrollment_id]
    result = await handle.result()
    assert (result.status, result.reason) == (JourneyStatus.STOPPED, "do_not_contact")
    await env.sleep(dt.timedelta(days=40))
    sent = rows(runtime, Message, enrollment_id=enrollment.enrollment_id)
    assert [m.touchpoint_key for m in sent if m.kind == "touchpoint"] == ["day3"]
    stopped_at = rows(runtime, Patient, id=enrollment.patient_id)[0].do_not_contact_at
    assert all(m.created_at <= stopped_at for m in sent)  # nothing at all after the withdrawal
    patient = rows(runtime, Patient, id=enrollment.patient_id)[0]
    assert patient.do_not_contact
    assert patient.do_not_contact_source == "patient phoned"


async def test_the_send_activity_refuses_a_do_not_contact_patient_even_before_the_signal(
    runtime: Runtime, journey_worker: WorkflowEnvironment
) -> None:
    env = journey_worker
    template = runtime.catalog.get("pci")
    enrollment = await register_discharge(
        runtime, discharge(runtime, template, await env.get_current_time())
    )
    with Session(runtime.engine) as session:
        patient = session.get(Patient, enrollment.patient_id)
        assert patient is not None
        patient.do_not_contact = True
        session.add(patient)
        session.commit()
    result = await run_to_end(env, handle_of(env, enrollment))
    assert (result.status, result.reason) == (JourneyStatus.STOPPED, "do_not_contact")
    messages = rows(runtime, Message, enrollment_id=enrollment.enrollment_id)
    assert [(m.status, m.channel) for m in messages] == [("suppressed", None)]


async def test_readmission_stops_the_journey_and_is_recorded(
    runtime: Runtime, journey_worker: WorkflowEnvironment
) -> None:
    env = journey_worker
    template = runtime.catalog.get("pci")
    enrollment = await register_discharge(
        runtime, discharge(runtime, template, await env.get_current_time())
    )
    handle = handle_of(env, enrollment)
    await advance_to_next_touchpoint(env, handle)
    with Session(runtime.engine) as session:
        await journey_service.control_journey(
            runtime, session, enrollment.enrollment_id, ControlEvent(action="readmitted")
        )
    result = await handle.result()
    assert (result.status, result.reason) == (JourneyStatus.STOPPED, "readmitted")
    stored = rows(runtime, Enrollment, id=enrollment.enrollment_id)[0]
    assert stored.readmitted_at is not None
    assert stored.status == "stopped"


async def test_control_updates_are_refused_when_they_cannot_apply(
    runtime: Runtime, journey_worker: WorkflowEnvironment
) -> None:
    env = journey_worker
    template = runtime.catalog.get("pci")
    enrollment = await register_discharge(
        runtime, discharge(runtime, template, await env.get_current_time())
    )
    with Session(runtime.engine) as session:
        from suifang.core.errors import ValidationFailed

        with pytest.raises(ValidationFailed, match="cannot resume: the journey is not paused"):
            await journey_service.control_journey(
                runtime, session, enrollment.enrollment_id, ControlEvent(action="resume")
            )
        await journey_service.control_journey(
            runtime, session, enrollment.enrollment_id, ControlEvent(action="stop")
        )
        await handle_of(env, enrollment).result()
        with pytest.raises(ValidationFailed, match="has ended"):
            await journey_service.control_journey(
                runtime, session, enrollment.enrollment_id, ControlEvent(action="pause")
            )


async def test_open_ended_journey_continues_as_new_and_keeps_its_schedule(
    runtime: Runtime, journey_worker: WorkflowEnvironment
) -> None:
    env = journey_worker
    runtime.settings.journey_run_length = 2
    template = runtime.catalog.get("diabetes")
    enrollment = await register_discharge(
        runtime, discharge(runtime, template, await env.get_current_time())
    )
    plan = resolve_plan(template, enrollment.risk_tier, enrollment.groups)
    handle = handle_of(env, enrollment)
    first_run = (await handle.describe()).run_id
    keys = []
    for _ in range(5):
        key = await advance_to_next_touchpoint(env, handle)
        assert key is not None
        keys.append(key)
        planned = plan.touchpoint(key.split("#")[0])
        if planned.expects_answer:
            reply = (
                AnswerEvent(answers=normal_answers(planned.questionnaire, plan.alert_rules))
                if planned.questionnaire
                else AnswerEvent(text="好的")
            )
            await handle.signal(PatientJourneyWorkflow.answer, reply)
    assert (await handle.describe()).run_id != first_run  # it continued as new at least once
    expected = [k for k, _, _ in journey_service_schedule(plan, enrollment)][:5]
    assert keys == expected
    await handle.execute_update(PatientJourneyWorkflow.control, ControlEvent(action="stop"))
    result = await handle.result()
    assert result.progress.sent == 5


def journey_service_schedule(
    plan: JourneyPlan, enrollment: EnrollmentOut
) -> list[tuple[str, int, dt.datetime]]:
    from suifang.workflows.journey_core import preview_schedule

    return preview_schedule(
        plan, enrollment.schedule[0].due_at - dt.timedelta(days=enrollment.schedule[0].day)
    )


async def test_a_template_change_does_not_alter_running_journeys(
    runtime: Runtime, journey_worker: WorkflowEnvironment
) -> None:
    env = journey_worker
    v1 = runtime.catalog.get("pci")
    running = await register_discharge(
        runtime, discharge(runtime, v1, await env.get_current_time())
    )
    data = v1.model_dump(by_alias=True)
    data["version"] = v1.version + 1
    data["touchpoints"][0]["day"] = 2  # v2 checks in on day 2 instead of day 3
    runtime.catalog.add(PathwayTemplate.model_validate(data), "test")
    newer = await register_discharge(runtime, discharge(runtime, v1, await env.get_current_time()))
    assert (running.pathway_version, newer.pathway_version) == (v1.version, v1.version + 1)
    assert running.schedule[0].day == 3
    assert newer.schedule[0].day == 2
    key = await advance_to_next_touchpoint(env, handle_of(env, running))
    assert key == "day3"
    sent = rows(runtime, Message, enrollment_id=running.enrollment_id)
    assert sent[0].sent_at is not None
    assert sent[0].sent_at - running.schedule[0].due_at < dt.timedelta(minutes=1)
    for enrollment in (running, newer):
        await handle_of(env, enrollment).execute_update(
            PatientJourneyWorkflow.control, ControlEvent(action="stop")
        )


async def test_a_recorded_journey_history_replays_deterministically(
    runtime: Runtime, journey_worker: WorkflowEnvironment
) -> None:
    env = journey_worker
    template = runtime.catalog.get("pci")
    enrollment = await register_discharge(
        runtime, discharge(runtime, template, await env.get_current_time())
    )
    handle = handle_of(env, enrollment)
    key = await advance_to_next_touchpoint(env, handle)
    plan = resolve_plan(template, enrollment.risk_tier, enrollment.groups)
    answers, _ = abnormal_answers(plan, key or "day3")
    await handle.signal(PatientJourneyWorkflow.answer, AnswerEvent(answers=answers))
    await run_to_end(env, handle)
    history = await handle.fetch_history()
    replay = await Replayer(
        workflows=[PatientJourneyWorkflow], data_converter=env.client.data_converter
    ).replay_workflow(history)
    assert replay.replay_failure is None


async def test_a_hospitals_own_pathway_from_its_directory_runs_end_to_end(
    runtime: Runtime, journey_worker: WorkflowEnvironment, tmp_path: Path
) -> None:
    # An administrator's YAML, no Python: SUIFANG_PATHWAYS_DIR holds it, the catalogue loads it.
    directory = tmp_path / "pathways"
    directory.mkdir()
    shutil.copy(Path(__file__).parents[1] / "core" / "drafts" / "postpartum.yaml", directory)
    runtime.settings = runtime.settings.model_copy(update={"pathways_dir": directory})
    runtime._catalog = None
    env = journey_worker
    template = runtime.catalog.get("postpartum-draft")
    assert runtime.catalog.origin(template) == str(directory / "postpartum.yaml")
    enrollment = await register_discharge(
        runtime,
        discharge(runtime, template, await env.get_current_time(), patient={"sex": "female"}),
    )
    handle = handle_of(env, enrollment)
    assert await advance_to_next_touchpoint(env, handle) == "d1"
    await handle.signal(
        PatientJourneyWorkflow.answer,
        AnswerEvent(
            answers={"temperature": "36.8", "bleeding": "heavy", "breastfeeding_ok": "yes"}
        ),
    )
    alerts = await settle(lambda: rows(runtime, Alert, enrollment_id=enrollment.enrollment_id))
    assert [(a.rule_id, a.priority) for a in alerts] == [("heavy_bleeding", "emergency")]
    tickets = await settle(
        lambda: [
            t
            for t in rows(runtime, Ticket, enrollment_id=enrollment.enrollment_id)
            if t.department_code and t.source == "clinical_alert"
        ]
    )
    assert (tickets[0].priority, tickets[0].department_code) == ("emergency", "obstetrics")
    advice = await settle(
        lambda: [
            m
            for m in rows(runtime, Message, enrollment_id=enrollment.enrollment_id)
            if m.kind == "advice"
        ]
    )
    assert "120" in advice[0].body
    await handle.execute_update(PatientJourneyWorkflow.control, ControlEvent(action="stop"))


async def test_rules_that_name_their_department_open_a_ticket_each(
    runtime: Runtime, journey_worker: WorkflowEnvironment, tmp_path: Path
) -> None:
    # A feeding problem belongs to the nurses' breastfeeding clinic, not with the bleeding
    # that the obstetrician handles: one answer trips both, and each reaches its owner.
    draft = (Path(__file__).parents[1] / "core" / "drafts" / "postpartum.yaml").read_text("utf-8")
    draft = draft.replace("  - id: feeding\n", "  - id: feeding\n    department: nursing\n")
    directory = tmp_path / "pathways"
    directory.mkdir()
    (directory / "postpartum.yaml").write_text(draft, encoding="utf-8")
    runtime.settings = runtime.settings.model_copy(update={"pathways_dir": directory})
    runtime._catalog = None
    env = journey_worker
    template = runtime.catalog.get("postpartum-draft")
    enrollment = await register_discharge(
        runtime, discharge(runtime, template, await env.get_current_time())
    )
    handle = handle_of(env, enrollment)
    assert await advance_to_next_touchpoint(env, handle) == "d1"
    await handle.signal(
        PatientJourneyWorkflow.answer,
        AnswerEvent(answers={"temperature": "36.9", "bleeding": "heavy", "breastfeeding_ok": "no"}),
    )

    def alert_tickets() -> list[Ticket]:
        found = [
            t
            for t in rows(runtime, Ticket, enrollment_id=enrollment.enrollment_id)
            if t.source == "clinical_alert" and t.department_code
        ]
        # Each alert is linked to its ticket by a write of its own, after the ticket opens.
        linked = all(
            a.ticket_id is not None
            for a in rows(runtime, Alert, enrollment_id=enrollment.enrollment_id)
        )
        return found if len(found) == 2 and linked else []

    tickets = await settle(alert_tickets)
    owners = {t.department_code: (t.tier, t.priority) for t in tickets}
    assert owners == {"obstetrics": ("L3", "emergency"), "nursing": ("L2", "routine")}
    alerts = rows(runtime, Alert, enrollment_id=enrollment.enrollment_id)
    by_id = {t.id: t.department_code for t in tickets}
    assert {a.rule_id: by_id[a.ticket_id] for a in alerts} == {
        "heavy_bleeding": "obstetrics",
        "feeding": "nursing",
    }
    # Each ticket names the other: whoever reads one learns of the rest of the reply.
    summaries = {t.department_code: t.summary for t in tickets}
    assert "The same reply also: Feeding trouble (nursing)" in summaries["obstetrics"]
    assert "The same reply also: Heavy bleeding (obstetrics)" in summaries["nursing"]
    await handle.execute_update(PatientJourneyWorkflow.control, ControlEvent(action="stop"))


async def test_an_epds_score_of_13_reaches_psychology(
    runtime: Runtime, journey_worker: WorkflowEnvironment, tmp_path: Path
) -> None:
    directory = tmp_path / "pathways"
    directory.mkdir()
    shutil.copy(Path(__file__).parents[1] / "core" / "drafts" / "postpartum.yaml", directory)
    runtime.settings = runtime.settings.model_copy(update={"pathways_dir": directory})
    runtime._catalog = None
    env = journey_worker
    template = runtime.catalog.get("postpartum-draft")
    enrollment = await register_discharge(
        runtime, discharge(runtime, template, await env.get_current_time())
    )
    handle = handle_of(env, enrollment)
    plan = resolve_plan(template, enrollment.risk_tier, enrollment.groups)
    key = await advance_to_next_touchpoint(env, handle)
    while key != "d14":  # answered normally, or the patient would be lost to follow-up
        assert key is not None
        questionnaire = plan.touchpoint(key).questionnaire
        reply = (
            AnswerEvent(answers=normal_answers(questionnaire, plan.alert_rules))
            if questionnaire is not None
            else AnswerEvent(text="都挺好的")
        )
        await handle.signal(PatientJourneyWorkflow.answer, reply)
        key = await advance_to_next_touchpoint(env, handle)
    # Items 1–2 reverse-scored ("never able to laugh" counts 3): 3 + 3 + 8 × 1 = 14, and
    # nothing about self-harm.
    answers = {"e1": "never", "e2": "never", **{f"e{i}": "rarely" for i in range(3, 10)}}
    answers["e10"] = "never"
    await handle.signal(PatientJourneyWorkflow.answer, AnswerEvent(answers=answers))

    def psychology() -> list[Ticket]:
        return [
            t
            for t in rows(runtime, Ticket, enrollment_id=enrollment.enrollment_id)
            if t.source == "clinical_alert" and t.department_code == "psychology"
        ]

    tickets = await settle(psychology)
    assert (tickets[0].tier, tickets[0].category) == ("L2", "psychological")
    alerts = rows(runtime, Alert, enrollment_id=enrollment.enrollment_id)
    assert [a.rule_id for a in alerts] == ["epds_high"]


async def test_a_pathways_own_risk_criteria_choose_the_tier_and_say_why(
    runtime: Runtime, journey_worker: WorkflowEnvironment, tmp_path: Path
) -> None:
    directory = tmp_path / "pathways"
    directory.mkdir()
    shutil.copy(Path(__file__).parents[1] / "core" / "drafts" / "postpartum.yaml", directory)
    runtime.settings = runtime.settings.model_copy(update={"pathways_dir": directory})
    runtime._catalog = None
    env = journey_worker
    template = runtime.catalog.get("postpartum-draft")
    now = await env.get_current_time()
    # 28 on the day of discharge (the test server's clock runs ahead as tests skip time).
    young = {"sex": "female", "birth_date": (now - dt.timedelta(days=28 * 366)).date().isoformat()}

    caesarean = await register_discharge(
        runtime,
        discharge(runtime, template, now, patient=young, encounter={"procedure_codes": ["74.1"]}),
    )
    assert caesarean.risk_tier == "high"
    assert caesarean.risk_reasons[0] == "the pathway's high-risk criterion: procedure 74.1"
    assert "d2" in {t.id for t in resolve_plan(template, "high", []).touchpoints}

    vaginal = await register_discharge(runtime, discharge(runtime, template, now, patient=young))
    assert vaginal.risk_tier == "low"
    older = await register_discharge(
        runtime,
        discharge(runtime, template, now, patient={"sex": "female"}),  # born 1970
    )
    assert older.risk_tier == "high"
    assert older.risk_reasons[0].startswith("the pathway's high-risk criterion: age ")
    assert older.risk_reasons[0].endswith(" ≥ 35")
    overridden = await register_discharge(
        runtime, discharge(runtime, template, now, patient=young, risk_tier="medium")
    )
    assert overridden.risk_tier == "medium"
    with Session(runtime.engine) as session:
        methods = {
            e.id: e.risk_method
            for e in session.exec(select(Enrollment)).all()
            if e.pathway_id == "postpartum-draft"
        }
    assert methods[caesarean.enrollment_id] == "pathway criteria"
    assert methods[overridden.enrollment_id] == "pathway criteria (overridden)"
    for enrollment in (caesarean, vaginal, older, overridden):
        await handle_of(env, enrollment).execute_update(
            PatientJourneyWorkflow.control, ControlEvent(action="stop")
        )


async def test_a_published_catalogue_version_enrolls_and_a_retired_one_does_not(
    runtime: Runtime, journey_worker: WorkflowEnvironment
) -> None:
    source = (Path(__file__).parents[1] / "core" / "drafts" / "postpartum.yaml").read_text("utf-8")
    with Session(runtime.engine) as session:
        add_draft(
            session,
            source,
            origin="postpartum.yaml",
            actor="test",
            vocabulary=runtime.vocabulary(),
            registered=runtime.catalog,
        )
        with pytest.raises(NotFoundError, match="no pathway 'postpartum-draft'"):
            runtime.catalog.get("postpartum-draft")  # a draft enrolls nobody
        publish(session, "postpartum-draft", 1, vocabulary=runtime.vocabulary())
    env = journey_worker
    template = runtime.catalog.get("postpartum-draft")  # the catalogue changed: reloaded
    now = await env.get_current_time()
    running = await register_discharge(runtime, discharge(runtime, template, now))
    assert running.pathway_version == 1
    with Session(runtime.engine) as session:
        retire(session, "postpartum-draft", 1)
    with pytest.raises(ValidationFailed, match="postpartum-draft version 1 is retired"):
        await register_discharge(runtime, discharge(runtime, template, now, pathway_version=1))
    # The running journey keeps its plan.
    handle = handle_of(env, running)
    assert await advance_to_next_touchpoint(env, handle) == "d1"
    await handle.execute_update(PatientJourneyWorkflow.control, ControlEvent(action="stop"))


async def test_an_out_of_range_answer_is_re_asked_saying_what_was_expected(
    runtime: Runtime, journey_worker: WorkflowEnvironment, tmp_path: Path
) -> None:
    directory = tmp_path / "pathways"
    directory.mkdir()
    shutil.copy(Path(__file__).parents[1] / "core" / "drafts" / "postpartum.yaml", directory)
    runtime.settings = runtime.settings.model_copy(update={"pathways_dir": directory})
    runtime._catalog = None
    env = journey_worker
    template = runtime.catalog.get("postpartum-draft")
    enrollment = await register_discharge(
        runtime, discharge(runtime, template, await env.get_current_time())
    )
    handle = handle_of(env, enrollment)
    assert await advance_to_next_touchpoint(env, handle) == "d1"
    # 380 for a 34–43 °C question (a missing decimal point), "maybe" for yes/no.
    await handle.signal(
        PatientJourneyWorkflow.answer,
        AnswerEvent(
            answers={"temperature": "380", "bleeding": "light", "breastfeeding_ok": "maybe"}
        ),
    )
    reask = await settle(
        lambda: [
            m
            for m in rows(runtime, Message, enrollment_id=enrollment.enrollment_id)
            if m.kind == "reask"
        ]
    )
    body = reask[0].body
    assert "“今天体温多少?”您回复的“380”我们无法记录，请回复34–43 °C之间的数字。" in body
    assert "“喂奶顺利吗?”您回复的“maybe”我们无法记录，请回复“是”或“否”。" in body
    assert "恶露量" not in body  # answered: not asked again
    assert not rows(runtime, Alert, enrollment_id=enrollment.enrollment_id)  # 380 is no fever
    await handle.execute_update(PatientJourneyWorkflow.control, ControlEvent(action="stop"))


async def test_running_journeys_move_to_a_new_version_at_their_position(
    runtime: Runtime, journey_worker: WorkflowEnvironment
) -> None:
    source = (Path(__file__).parents[1] / "core" / "drafts" / "postpartum.yaml").read_text("utf-8")
    # Version 2 drops the day-3 check-in and adds a day-10 check (ahead) and a day-0 welcome
    # (its day has passed: not sent late).
    extra = (
        "  - {id: d10, day: 10, kind: questionnaire, questionnaire: recovery, message: "
        '{zh-CN: "第10天随访", en: "Day 10"}}\n'
        '  - {id: d0, day: 0, kind: education, message: {zh-CN: "欢迎", en: "Welcome"}}\n'
    )
    lines = source.splitlines(keepends=True)
    v2 = "".join(line for line in lines if "{id: d3, day: 3" not in line)
    v2 = v2.replace("version: 1", "version: 2", 1).replace("variants:\n", extra + "variants:\n", 1)
    with Session(runtime.engine) as session:
        for text in (source, v2):
            change = add_draft(
                session,
                text,
                origin="draft.yaml",
                actor="test",
                vocabulary=runtime.vocabulary(),
                registered=runtime.catalog,
            )
            publish(session, change.pathway_id, change.version, vocabulary=runtime.vocabulary())
    env = journey_worker
    v1 = runtime.catalog.get("postpartum-draft", 1)
    now = await env.get_current_time()
    # Low risk (28, no caesarean): no day-2 extra.
    young = {"sex": "female", "birth_date": (now - dt.timedelta(days=28 * 366)).date().isoformat()}
    enrollment = await register_discharge(
        runtime, discharge(runtime, v1, now, patient=young, pathway_version=1)
    )
    handle = handle_of(env, enrollment)
    assert await advance_to_next_touchpoint(env, handle) == "d1"
    plan = resolve_plan(v1, enrollment.risk_tier, enrollment.groups)
    normal = normal_answers(plan.touchpoint("d1").questionnaire, plan.alert_rules)
    await handle.signal(PatientJourneyWorkflow.answer, AnswerEvent(answers=normal))
    await settle(lambda: journey_answered(handle))

    preview = await migrate_journeys(runtime, "postpartum-draft", 1, 2, dry_run=True)
    assert [o.report.added for o in preview if o.report] == [["d10@day10"]]
    assert (await handle.query(PatientJourneyWorkflow.progress)).next_touchpoint == "d3"

    moved = await migrate_journeys(runtime, "postpartum-draft", 1, 2, dry_run=False)
    report = moved[0].report
    assert report is not None
    assert (report.from_version, report.to_version) == (1, 2)
    assert report.done == ["d1"]
    assert report.added == ["d10@day10"]
    assert report.passed == ["d0"]
    assert report.removed == ["d3"]
    with Session(runtime.engine) as session:
        assert session.get(Enrollment, enrollment.enrollment_id).pathway_version == 2

    progress = await settle(lambda: progress_on_version(handle, 2))
    assert progress.next_touchpoint == "d7"  # d3 is gone, d1 stays done
    with Session(runtime.engine) as session:
        detail = await journey_service.journey_detail(runtime, session, enrollment.enrollment_id)
    assert [(r.key, r.day) for r in detail.remaining] == [
        ("d7", 7),
        ("d10", 10),
        ("d14", 14),
        ("d30", 30),
    ]
    assert await advance_to_next_touchpoint(env, handle) == "d7"
    answers = normal_answers(plan.touchpoint("d7").questionnaire, plan.alert_rules)
    await handle.signal(PatientJourneyWorkflow.answer, AnswerEvent(answers=answers))
    assert await advance_to_next_touchpoint(env, handle) == "d10"
    # Nothing is left on version 1, and the history replays.
    assert await migrate_journeys(runtime, "postpartum-draft", 1, 2, dry_run=False) == []
    await handle.execute_update(PatientJourneyWorkflow.control, ControlEvent(action="stop"))
    replay = await Replayer(
        workflows=[PatientJourneyWorkflow], data_converter=env.client.data_converter
    ).replay_workflow(await handle.fetch_history())
    assert replay.replay_failure is None


async def journey_answered(handle: WorkflowHandle) -> bool:
    return (await handle.query(PatientJourneyWorkflow.progress)).answered >= 1


async def progress_on_version(handle: WorkflowHandle, version: int) -> Any:
    progress = await handle.query(PatientJourneyWorkflow.progress)
    return progress if progress.pathway_version == version else None
