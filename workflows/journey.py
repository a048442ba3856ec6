"""PatientJourneyWorkflow, one per enrollment: drives the journey core with timers and activities.

The workflow holds no decisions of its own: it asks the core what is next, sleeps until then
(waking early for a signal), runs the activity the core asked for and reports the outcome.
Signals and updates are queued and applied between commands, so the core is only ever
touched by the main loop.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from typing import Any

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from suifang.core.enums import JourneyStatus, Priority, TicketSource, Tier
    from suifang.tickets.service import TicketStart
    from suifang.workflows.journey_activities import (
        CALL_TASK_SUMMARY,
        AlertInput,
        AnswersInput,
        GreetingsInput,
        JourneyMessageInput,
        JourneyTicketInput,
        ObservationsInput,
        PointsInput,
        RecordBatch,
        RecordItem,
        StatusInput,
        TouchpointInput,
    )
    from suifang.workflows.journey_core import (
        AnswerEvent,
        ControlEvent,
        CreditPoints,
        ExtendGreetings,
        Finish,
        GreetingBatch,
        JourneyCore,
        JourneyProgress,
        JourneySetup,
        JourneyState,
        ObservationEvent,
        OpenAlertTicket,
        OpenCallTask,
        RaiseAlert,
        RecordAnswers,
        RecordObservation,
        RecordTouchpoint,
        RescheduleEvent,
        SendAdvice,
        SendGreeting,
        SendOutcome,
        SendTouchpoint,
        SetStatus,
        Wait,
    )
    from suifang.workflows.ticket import FeedbackTicketWorkflow, TicketInput

__all__ = ["JourneyInput", "JourneyResult", "PatientJourneyWorkflow", "journey_workflow_id"]

RECORD_OPTIONS: dict[str, Any] = {
    "start_to_close_timeout": dt.timedelta(seconds=30),
    # The worker heartbeats while an activity runs (HeartbeatInterceptor): a killed worker's
    # activity is retried elsewhere after this, not after the whole start-to-close timeout.
    "heartbeat_timeout": dt.timedelta(seconds=10),
    "retry_policy": RetryPolicy(maximum_interval=dt.timedelta(minutes=5)),
}
LOCAL_RECORD_OPTIONS: dict[str, Any] = {
    "start_to_close_timeout": dt.timedelta(seconds=30),
    "retry_policy": RetryPolicy(maximum_interval=dt.timedelta(minutes=5)),
}
LOCAL_RECORDS_PATCH = "local-record-activities"
"""Journeys started with this marker write their records in batches, as local activities
(see ``_write_batch``); older ones write each record as an ordinary activity."""
SEND_OPTIONS: dict[str, Any] = {
    "start_to_close_timeout": dt.timedelta(minutes=2),
    "heartbeat_timeout": dt.timedelta(seconds=15),
    "retry_policy": RetryPolicy(
        initial_interval=dt.timedelta(seconds=5),
        maximum_interval=dt.timedelta(minutes=10),
        non_retryable_error_types=["ConfigurationError"],
    ),
}


def journey_workflow_id(enrollment_id: int, token: str) -> str:
    """``journey-<enrollment>-<token>``: readable, and unique even across databases that share
    a Temporal namespace (a restored backup, a second hospital, a test run)."""
    return f"journey-{enrollment_id}-{token}"


class JourneyInput(BaseModel):
    setup: JourneySetup
    state: JourneyState | None = None


class JourneyResult(BaseModel):
    status: JourneyStatus
    reason: str | None
    progress: JourneyProgress


_ENDED = (JourneyStatus.COMPLETED, JourneyStatus.LOST, JourneyStatus.STOPPED)


@workflow.defn(name="PatientJourney")
class PatientJourneyWorkflow:
    @workflow.init
    def __init__(self, journey: JourneyInput) -> None:
        self.core = JourneyCore(journey.setup, journey.state)
        self._local_records = False
        self._batch: list[RecordItem] = []
        if journey.state is None:
            # "Due before enrollment" means before the journey was started, not before a
            # worker first ran it: a journey started while every worker was down keeps the
            # touchpoints that fell due meanwhile (they go out late rather than never).
            self.core.state.started_at = workflow.info().workflow_start_time
        self.inbox: list[Any] = []
        self._parked_until: tuple[dt.datetime | None] | None = None

    # ----------------------------------------------------------------- handlers

    @workflow.signal(name="answer")
    def answer(self, event: AnswerEvent) -> None:
        self.inbox.append(event)

    @workflow.signal(name="observe")
    def observe(self, event: ObservationEvent) -> None:
        self.inbox.append(event)

    @workflow.update(name="control")
    def control(self, event: ControlEvent) -> JourneyStatus:
        self.inbox.append(event)
        return self.core.state.status

    @control.validator
    def _validate_control(self, event: ControlEvent) -> None:
        status = self.core.state.status
        if status in _ENDED:
            raise ValueError(f"the journey has already ended ({status.value})")
        if event.action == "resume" and status != JourneyStatus.PAUSED:
            raise ValueError("the journey is not paused")
        if event.action == "pause" and status == JourneyStatus.PAUSED:
            raise ValueError("the journey is already paused")

    @workflow.update(name="reschedule")
    def reschedule(self, event: RescheduleEvent) -> None:
        self.inbox.append(event)

    @reschedule.validator
    def _validate_reschedule(self, event: RescheduleEvent) -> None:
        if self.core.state.status in _ENDED:
            raise ValueError("the journey has already ended")
        if event.shift is None and event.next_due is None:
            raise ValueError("give a shift, a next_due time, or both")
        if event.next_due is not None and event.next_due < workflow.now():
            raise ValueError("next_due is in the past")

    @workflow.query(name="progress")
    def progress(self) -> JourneyProgress:
        progress = self.core.progress(workflow.now())
        if self._parked_until is not None and not self.inbox:
            progress.parked = True
            progress.wakes_at = self._parked_until[0]
        return progress

    # ----------------------------------------------------------------- the loop

    @workflow.run
    async def run(self, journey: JourneyInput) -> JourneyResult:
        # Asked once, first: a run's answer must not change halfway (see workflow-changes.md).
        self._local_records = workflow.patched(LOCAL_RECORDS_PATCH)
        while True:
            now = workflow.now()
            command = self.core.next_command(now)
            record = self._record_input(command) if self._local_records else None
            if record is not None:
                # The core needs nothing back from a record: it is done as far as the journey
                # is concerned, and the write goes out with the rest of the batch before
                # anything else happens (a send, a ticket, a wait, the end).
                self._batch.append(record[1])
                self.core.complete(command, None, now)
                self._apply_inbox()
                continue
            if self._batch:
                await self._write_batch()
                continue  # signals may have arrived meanwhile: ask the core again
            if isinstance(command, Finish):
                await workflow.wait_condition(workflow.all_handlers_finished)
                return JourneyResult(
                    status=command.status, reason=command.reason, progress=self.core.progress(now)
                )
            if isinstance(command, Wait):
                if not self.inbox and (
                    self.core.wants_continue_as_new
                    or workflow.info().is_continue_as_new_suggested()
                ):
                    await workflow.wait_condition(workflow.all_handlers_finished)
                    if not self.inbox:
                        self.core.compact()
                        workflow.continue_as_new(
                            JourneyInput(setup=self.core.setup, state=self.core.state)
                        )
                timeout = (
                    None if command.until is None else max(command.until - now, dt.timedelta(0))
                )
                self._parked_until = (command.until,)
                with contextlib.suppress(TimeoutError):
                    await workflow.wait_condition(lambda: bool(self.inbox), timeout=timeout)
                self._parked_until = None
                self._apply_inbox()
                continue
            result = await self._carry_out(command)
            self.core.complete(command, result, workflow.now())
            self._apply_inbox()

    async def _open_ticket(self, request: JourneyTicketInput) -> int:
        """A feedback ticket as a child workflow that outlives the journey."""
        start = await workflow.execute_activity(
            "prepare_journey_ticket", request, result_type=TicketStart, **RECORD_OPTIONS
        )
        await workflow.start_child_workflow(
            FeedbackTicketWorkflow.run,
            TicketInput(setup=start.setup),
            id=start.workflow_id,
            parent_close_policy=ParentClosePolicy.ABANDON,
        )
        return start.ticket_id

    def _apply_inbox(self) -> None:
        while self.inbox:
            self.core.handle(self.inbox.pop(0), workflow.now())

    def _event_key(self, seq: int) -> str:
        return f"{workflow.info().workflow_id}:{seq}"

    async def _write_batch(self) -> None:
        """Write the records made since the last send or wait, as one local activity.

        A local activity runs inside the workflow task that asked for it — no task round trip
        through the server — and one batch is one transaction: what a touchpoint's answer
        leaves behind (answers, touchpoint status, alerts, points, the journey's status) costs
        one write, not one each. Sends stay ordinary activities: they wait on providers,
        heartbeat, and retry for minutes.
        """
        batch, self._batch = RecordBatch(items=self._batch), []
        await workflow.execute_local_activity("record_batch", batch, **LOCAL_RECORD_OPTIONS)

    def _record_input(self, command: Any) -> tuple[str, RecordItem] | None:
        """(activity, input) of a bookkeeping command; None for anything else."""
        setup = self.core.setup
        ids = {"enrollment_id": setup.enrollment_id, "patient_id": setup.patient_id}
        if isinstance(command, RecordTouchpoint):
            return (
                "record_touchpoint",
                TouchpointInput(
                    enrollment_id=setup.enrollment_id,
                    key=command.key,
                    touchpoint_id=command.touchpoint_id,
                    day=command.day,
                    status=command.status,
                    due_at=command.due_at,
                    at=command.at,
                    detail=command.detail,
                ),
            )
        if isinstance(command, RecordAnswers):
            return (
                "record_answers",
                AnswersInput(
                    event_key=self._event_key(command.seq),
                    touchpoint_key=command.key,
                    answers=command.answers,
                    invalid=command.invalid,
                    observations=list(command.observations),
                    text=command.text,
                    at=command.at,
                    late=command.late,
                    channel=command.channel,
                    source=command.source,
                    **ids,
                ),
            )
        if isinstance(command, RecordObservation):
            return (
                "record_observations",
                ObservationsInput(
                    event_key=self._event_key(command.seq),
                    observations=list(command.observations),
                    at=command.at,
                    source=command.source,
                    **ids,
                ),
            )
        if isinstance(command, RaiseAlert):
            alert = AlertInput(
                event_key=self._event_key(command.seq),
                rule_id=command.rule_id,
                touchpoint_key=command.key,
                tier=command.tier,
                priority=command.priority,
                category=command.category,
                summary=command.summary,
                evidence=command.evidence,
                at=workflow.now(),
                **ids,
            )
            # The alert's id is not needed: its ticket finds it by event key.
            return ("raise_alert", alert)
        if isinstance(command, CreditPoints):
            return (
                "credit_points",
                PointsInput(
                    event_key=self._event_key(command.seq),
                    touchpoint_key=command.key,
                    points=command.points,
                    **ids,
                ),
            )
        if isinstance(command, SetStatus):
            return (
                "set_journey_status",
                StatusInput(
                    enrollment_id=setup.enrollment_id,
                    status=command.status,
                    reason=command.reason,
                    at=command.at,
                ),
            )
        return None

    async def _carry_out(self, command: Any) -> Any:
        setup = self.core.setup
        ids = {"enrollment_id": setup.enrollment_id, "patient_id": setup.patient_id}
        if isinstance(command, SendTouchpoint):
            planned = setup.plan.touchpoint(command.touchpoint_id)
            kind = "reminder" if command.reminder else "touchpoint"
            suffix = f":r{command.reminder}" if command.reminder else ""
            return await workflow.execute_activity(
                "send_journey_message",
                JourneyMessageInput(
                    idempotency_key=f"{workflow.info().workflow_id}:{command.key}{suffix}",
                    kind=kind,
                    touchpoint_key=command.key,
                    message=planned.message,
                    questionnaire=planned.questionnaire,
                    day=command.day,
                    reminder=command.reminder,
                    channels=planned.channels,
                    window=setup.plan.send_window,
                    **ids,
                ),
                result_type=SendOutcome,
                **SEND_OPTIONS,
            )
        if isinstance(command, SendGreeting):
            return await workflow.execute_activity(
                "send_journey_message",
                JourneyMessageInput(
                    idempotency_key=f"{workflow.info().workflow_id}:greeting:{command.date}:{command.occasion}",
                    kind="greeting",
                    greeting=command.occasion,
                    channels=setup.plan.touchpoints[0].channels,
                    window=setup.plan.send_window,
                    **ids,
                ),
                result_type=SendOutcome,
                **SEND_OPTIONS,
            )
        if isinstance(command, SendAdvice):
            return await workflow.execute_activity(
                "send_journey_message",
                JourneyMessageInput(
                    idempotency_key=self._event_key(command.seq) + f":advice:{command.rule_id}",
                    kind="advice",
                    touchpoint_key=command.key,
                    message=command.advice,
                    channels=setup.plan.touchpoints[0].channels,
                    respect_quiet_hours=False,
                    **ids,
                ),
                result_type=SendOutcome,
                **SEND_OPTIONS,
            )
        record = self._record_input(command)
        if record is not None:
            # Journeys started before batching: one ordinary activity per record.
            activity_name, argument = record
            result_type = int if activity_name == "raise_alert" else None
            return await workflow.execute_activity(
                activity_name, argument, result_type=result_type, **RECORD_OPTIONS
            )
        if isinstance(command, OpenAlertTicket):
            return await self._open_ticket(
                JourneyTicketInput(
                    event_key=self._event_key(command.seq),
                    source=TicketSource.CLINICAL_ALERT,
                    touchpoint_key=command.key,
                    tier=command.tier,
                    priority=command.priority,
                    category=command.category,
                    summary=command.summary,
                    alert_event_keys=[self._event_key(seq) for seq in command.alert_seqs],
                    **ids,
                )
            )
        if isinstance(command, OpenCallTask):
            return await self._open_ticket(
                JourneyTicketInput(
                    event_key=self._event_key(command.seq),
                    source=TicketSource.NON_RESPONDER,
                    touchpoint_key=command.key,
                    tier=Tier.L2,
                    priority=Priority.ROUTINE,
                    category="call_task",
                    summary=CALL_TASK_SUMMARY[command.reason],
                    **ids,
                )
            )
        if isinstance(command, ExtendGreetings):
            request = GreetingsInput(patient_id=setup.patient_id, after=command.after)
            if self._local_records:
                return await workflow.execute_local_activity(
                    "extend_greetings", request, result_type=GreetingBatch, **LOCAL_RECORD_OPTIONS
                )
            return await workflow.execute_activity(
                "extend_greetings", request, result_type=GreetingBatch, **RECORD_OPTIONS
            )
        raise ApplicationError(
            f"unknown journey command {type(command).__name__}", non_retryable=True
        )
