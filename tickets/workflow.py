"""FeedbackTicketWorkflow, one per ticket: the single writer of its state, driving the ticket core.

Department actions arrive as updates (validated by the core before they are accepted), the
patient's replies and scores as signals; SLA warnings, breaches and the satisfaction wait
are exact timers on the deadlines the core computes. Every change is saved to the read
model by the ``sync_ticket`` activity. Activities are called by method reference, so their
argument and result types are the methods' own.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from typing import Any

from pydantic import BaseModel
from temporalio import workflow
from temporalio.exceptions import ApplicationError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from suifang.core.temporal import RECORD_OPTIONS, SEND_OPTIONS
    from suifang.tickets.activities import (
        PageInput,
        PatientNoticeInput,
        RouteInput,
        StaffNoticeInput,
        SubTaskInput,
        TicketActivities,
    )
    from suifang.tickets.core import (
        ActorAction,
        Finish,
        NotifyPatient,
        NotifyStaff,
        OpenSubTask,
        Page,
        PatientEvent,
        Route,
        Save,
        TicketCore,
        TicketSetup,
        TicketSnapshot,
        TicketState,
        Wait,
    )

__all__ = ["FeedbackTicketWorkflow", "TicketInput", "TicketResult"]


class TicketInput(BaseModel):
    setup: TicketSetup
    state: TicketState | None = None
    first_event: ActorAction | PatientEvent | None = None
    """For a closed ticket started again: the reopen or patient event that restarts it."""


class TicketResult(BaseModel):
    setup: TicketSetup
    state: TicketState
    snapshot: TicketSnapshot


@workflow.defn(name="FeedbackTicket")
class FeedbackTicketWorkflow:
    @workflow.init
    def __init__(self, ticket: TicketInput) -> None:
        self.core = TicketCore(ticket.setup, ticket.state)
        self.inbox: list[Any] = [ticket.first_event] if ticket.first_event else []
        self.applied: dict[int, int | None] = {}
        """id(action) of each update still waiting → the state sequence number once applied.

        Only awaited actions are keys: an id is reused once its object is gone, so a key left
        for a signal could match a later action and release its update early — at a different
        point on replay (a nondeterminism error)."""
        self.saved_through = 0

    @workflow.update(name="act")
    async def act(self, action: ActorAction) -> TicketSnapshot:
        """Apply a department action; returns once it is applied and saved to the read model."""
        self.inbox.append(action)
        key = id(action)
        self.applied[key] = None
        await workflow.wait_condition(
            lambda: (seq := self.applied[key]) is not None and self.saved_through >= seq
        )
        del self.applied[key]
        return self.core.snapshot()

    @act.validator
    def _validate(self, action: ActorAction) -> None:
        problem = self.core.check(action)
        if problem is not None:
            raise ValueError(problem)

    @workflow.signal(name="patient")
    def patient(self, event: PatientEvent) -> None:
        self.inbox.append(event)

    @workflow.query(name="snapshot")
    def snapshot(self) -> TicketSnapshot:
        return self.core.snapshot()

    @workflow.run
    async def run(self, ticket: TicketInput) -> TicketResult:
        while True:
            now = workflow.now()
            command = self.core.next_command(now)
            if isinstance(command, Finish):
                await workflow.wait_condition(workflow.all_handlers_finished)
                if not self.inbox:
                    return TicketResult(
                        setup=self.core.setup, state=self.core.state, snapshot=self.core.snapshot()
                    )
                self._apply_inbox()
                continue
            if isinstance(command, Wait):
                timeout = (
                    None if command.until is None else max(command.until - now, dt.timedelta(0))
                )
                with contextlib.suppress(TimeoutError):
                    await workflow.wait_condition(lambda: bool(self.inbox), timeout=timeout)
                self._apply_inbox()
                continue
            result = await self._carry_out(command)
            self.core.complete(command, result, workflow.now())
            if isinstance(command, Save):
                self.saved_through = max(self.saved_through, command.seq)
            self._apply_inbox()

    def _apply_inbox(self) -> None:
        while self.inbox:
            event = self.inbox.pop(0)
            self.core.handle(event, workflow.now())
            if id(event) in self.applied:
                self.applied[id(event)] = self.core.state.seq

    def _key(self, seq: int, suffix: str = "") -> str:
        return f"{workflow.info().workflow_id}:{seq}{suffix}"

    async def _save(self, snapshot: TicketSnapshot) -> None:
        """Write the ticket's read-model row: one short, idempotent upsert in suifang's database.

        An ordinary activity, not a local one: its completion is an event in the history,
        ordered with the updates and signals that arrive while it runs, so replay sees them at
        the point the live run did (a local save that outlived a workflow task did not;
        docs/reliability.md).
        """
        await workflow.execute_activity_method(
            TicketActivities.sync_ticket, snapshot, **RECORD_OPTIONS
        )

    async def _carry_out(self, command: Any) -> Any:
        setup = self.core.setup
        if isinstance(command, Save):
            return await self._save(command.snapshot or self.core.snapshot())
        if isinstance(command, Route):
            return await workflow.execute_activity_method(
                TicketActivities.route_ticket,
                RouteInput(
                    ticket_id=setup.ticket_id,
                    category=command.category,
                    clinical=command.clinical,
                    source=setup.source,
                    tier=command.tier,
                    priority=command.priority,
                    discharge_department=setup.discharge_department,
                ),
                **RECORD_OPTIONS,
            )
        if isinstance(command, Page):
            return await workflow.execute_activity_method(
                TicketActivities.page_on_call,
                PageInput(
                    key=self._key(command.seq, ":page"),
                    ticket_id=setup.ticket_id,
                    department=command.department,
                    step=command.step,
                    escalate=command.escalate,
                ),
                **SEND_OPTIONS,
            )
        if isinstance(command, NotifyPatient):
            return await workflow.execute_activity_method(
                TicketActivities.notify_patient,
                PatientNoticeInput(
                    idempotency_key=self._key(command.seq, f":{command.kind}"),
                    ticket_id=setup.ticket_id,
                    patient_id=setup.patient_id,
                    kind=command.kind,
                    text=command.text,
                    advice=list(command.advice),
                ),
                **SEND_OPTIONS,
            )
        if isinstance(command, NotifyStaff):
            return await workflow.execute_activity_method(
                TicketActivities.notify_staff,
                StaffNoticeInput(
                    event_key=self._key(command.seq),
                    ticket_id=setup.ticket_id,
                    kind=command.kind,
                    clock=command.clock,
                    department=command.department,
                    due_at=command.due_at,
                    actions=list(command.actions),
                ),
                **RECORD_OPTIONS,
            )
        if isinstance(command, OpenSubTask):
            start = await workflow.execute_activity_method(
                TicketActivities.open_sub_task,
                SubTaskInput(
                    idempotency_key=self._key(command.seq, ":subtask"),
                    parent_ticket_id=setup.ticket_id,
                    department=command.department,
                    text=command.text,
                    actor=command.actor,
                    opened_at=workflow.now(),
                ),
                **RECORD_OPTIONS,
            )
            await workflow.start_child_workflow(
                FeedbackTicketWorkflow.run,
                TicketInput(setup=start.setup),
                id=start.workflow_id,
                parent_close_policy=ParentClosePolicy.ABANDON,
            )
            return start.ticket_id
        raise ApplicationError(
            f"unknown ticket command {type(command).__name__}", non_retryable=True
        )
