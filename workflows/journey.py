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

from temporalio import workflow
from temporalio.exceptions import ApplicationError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from suifang.core.enums import JourneyStatus, Priority, TicketSource, Tier
    from suifang.core.temporal import JOURNEY_SEND_OPTIONS, RECORD_OPTIONS
    from suifang.tickets.workflow import FeedbackTicketWorkflow, TicketInput
    from suifang.workflows.journey_activities import (
        CALL_TASK_SUMMARY,
        GreetingsInput,
        JourneyActivities,
        JourneyMessageInput,
        JourneyTicketInput,
        PatientTextInput,
    )
    from suifang.workflows.journey_commands import (
        AnswerEvent,
        ControlEvent,
        ExtendGreetings,
        Finish,
        ObservationEvent,
        OpenAlertTicket,
        OpenCallTask,
        RescheduleEvent,
        SendAdvice,
        SendGreeting,
        SendTouchpoint,
        TriageText,
        Wait,
    )
    from suifang.workflows.journey_core import JourneyCore, JourneyProgress, PlannedSend
    from suifang.workflows.journey_inputs import (
        JourneyInput,
        JourneyResult,
        event_key,
        journey_workflow_id,
        record_item,
    )
    from suifang.workflows.journey_migration import MigrateEvent, MigrationReport, migrate_core
    from suifang.workflows.journey_records import RecordBatch, RecordItem

# Re-exported: starters and tests know the workflow's input and result by this module.
__all__ = [
    "JourneyInput",
    "JourneyResult",
    "PatientJourneyWorkflow",
    "journey_workflow_id",
]

_ENDED = (JourneyStatus.COMPLETED, JourneyStatus.LOST, JourneyStatus.STOPPED)
_SENDS = (SendTouchpoint, SendGreeting, SendAdvice)


@workflow.defn(name="PatientJourney")
class PatientJourneyWorkflow:
    @workflow.init
    def __init__(self, journey: JourneyInput) -> None:
        self.core = JourneyCore(journey.setup, journey.state)
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

    @workflow.update(name="migrate")
    def migrate(self, event: MigrateEvent) -> MigrationReport:
        """Move to a new version of the pathway at the current position (applied by the loop,
        which wakes for it); the answer says what changes."""
        self.inbox.append(event)
        return migrate_core(self.core, event.plan, workflow.now())[1]

    @migrate.validator
    def _validate_migrate(self, event: MigrateEvent) -> None:
        plan = self.core.plan
        if self.core.state.status in _ENDED:
            raise ValueError("the journey has already ended")
        if event.plan.pathway_id != plan.pathway_id:
            raise ValueError(f"the journey is on {plan.pathway_id}, not {event.plan.pathway_id}")
        if event.plan.pathway_version <= plan.pathway_version:
            raise ValueError(
                f"the journey is on version {plan.pathway_version}; migrate to a newer one"
            )

    @workflow.query(name="migration_preview")
    def migration_preview(self, event: MigrateEvent) -> MigrationReport:
        """What ``migrate`` would change, changing nothing (``pathways migrate --dry-run``)."""
        return migrate_core(self.core, event.plan, workflow.now())[1]

    @workflow.query(name="remaining")
    def remaining(self) -> list[PlannedSend]:
        """The rest of the plan from here, dated (``journeys show``)."""
        if self.core.state.status in _ENDED:
            return []
        return [PlannedSend(key=k, day=d, due_at=due) for k, d, due in self.core.schedule(30)]

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
        while True:
            now = workflow.now()
            command = self.core.next_command(now)
            record = record_item(command, self.core.setup, workflow.info().workflow_id, now)
            if record is not None:
                # The core needs nothing back from a record: it is done as far as the journey
                # is concerned, and the write goes out with the rest of the batch before
                # anything else happens (a send, a ticket, a wait, the end).
                self._batch.append(record)
                self.core.complete(command, None, now)
                self._apply_inbox()
                continue
            if self._batch and not isinstance(command, _SENDS):
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
        start = await workflow.execute_activity_method(
            JourneyActivities.prepare_journey_ticket, request, **RECORD_OPTIONS
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
            event = self.inbox.pop(0)
            if isinstance(event, MigrateEvent):
                self.core = migrate_core(self.core, event.plan, workflow.now())[0]
            else:
                self.core.handle(event, workflow.now())

    def _event_key(self, seq: int) -> str:
        return event_key(workflow.info().workflow_id, seq)

    async def _write_batch(self) -> None:
        """Write the records made since the last send or wait, as one activity and transaction.

        What a touchpoint's answer leaves behind (answers, touchpoint status, alerts, points,
        the journey's status) costs one write, not one each; a batch that a send follows goes
        with the send instead (written before it sends). It is an ordinary activity, not a
        local one, so that its completion is an event in the history, ordered with the signals
        and updates that arrive while it runs: a local activity that outlived a workflow task
        resolved at a different point on replay than it had live (docs/reliability.md).
        """
        batch = RecordBatch(items=self._take_batch())
        await workflow.execute_activity_method(
            JourneyActivities.record_batch, batch, **RECORD_OPTIONS
        )

    def _take_batch(self) -> list[RecordItem]:
        batch, self._batch = self._batch, []
        return batch

    async def _carry_out(self, command: Any) -> Any:
        setup = self.core.setup
        ids = {"enrollment_id": setup.enrollment_id, "patient_id": setup.patient_id}
        if isinstance(command, SendTouchpoint):
            planned = setup.plan.touchpoint(command.touchpoint_id)
            kind = "reminder" if command.reminder else "touchpoint"
            suffix = f":r{command.reminder}" if command.reminder else ""
            if command.missing:
                kind, suffix = "reask", ":reask"
            return await workflow.execute_activity_method(
                JourneyActivities.send_journey_message,
                JourneyMessageInput(
                    idempotency_key=f"{workflow.info().workflow_id}:{command.key}{suffix}",
                    kind=kind,
                    touchpoint_key=command.key,
                    message=planned.message,
                    questionnaire=planned.questionnaire,
                    day=command.day,
                    reminder=command.reminder,
                    only_questions=list(command.missing),
                    rejected_answers=dict(command.rejected),
                    channels=planned.channels,
                    window=setup.plan.send_window,
                    records=self._take_batch(),
                    **ids,
                ),
                **JOURNEY_SEND_OPTIONS,
            )
        if isinstance(command, SendGreeting):
            return await workflow.execute_activity_method(
                JourneyActivities.send_journey_message,
                JourneyMessageInput(
                    idempotency_key=f"{workflow.info().workflow_id}:greeting:{command.date}:{command.occasion}",
                    kind="greeting",
                    greeting=command.occasion,
                    channels=setup.plan.touchpoints[0].channels,
                    window=setup.plan.send_window,
                    records=self._take_batch(),
                    **ids,
                ),
                **JOURNEY_SEND_OPTIONS,
            )
        if isinstance(command, SendAdvice):
            return await workflow.execute_activity_method(
                JourneyActivities.send_journey_message,
                JourneyMessageInput(
                    idempotency_key=self._event_key(command.seq) + f":advice:{command.rule_id}",
                    kind="advice",
                    touchpoint_key=command.key,
                    message=command.advice,
                    channels=setup.plan.touchpoints[0].channels,
                    respect_quiet_hours=False,
                    records=self._take_batch(),
                    **ids,
                ),
                **JOURNEY_SEND_OPTIONS,
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
                    department=command.department,
                    **ids,
                )
            )
        if isinstance(command, TriageText):
            start = await workflow.execute_activity_method(
                JourneyActivities.triage_patient_text,
                PatientTextInput(
                    event_key=self._event_key(command.seq),
                    touchpoint_key=command.key,
                    text=command.text,
                    channel=command.channel,
                    pathway_id=setup.plan.pathway_id,
                    **ids,
                ),
                **RECORD_OPTIONS,
            )
            if start is not None:
                await workflow.start_child_workflow(
                    FeedbackTicketWorkflow.run,
                    TicketInput(setup=start.setup),
                    id=start.workflow_id,
                    parent_close_policy=ParentClosePolicy.ABANDON,
                )
            return start.ticket_id if start is not None else None
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
            return await workflow.execute_activity_method(
                JourneyActivities.extend_greetings, request, **RECORD_OPTIONS
            )
        raise ApplicationError(
            f"unknown journey command {type(command).__name__}", non_retryable=True
        )
