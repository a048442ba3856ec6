"""The bare-Temporal baseline: a journey of the same shape with nothing of suifang in it.

Per touchpoint: one timer until the touchpoint's due time (the same instants the suifang
journey computes), one no-op activity (the "send", which tells the simulated patient), and
a wait for the ``answer`` signal. Plain JSON payloads, no codec, no interceptors, no
database: what Temporal alone costs for this shape on this machine.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable

from temporalio import activity, workflow

listeners: list[Callable[[str, int], None]] = []
"""Called with (workflow id, touchpoint index) when a touchpoint is "sent"."""


@dataclasses.dataclass
class BaselineInput:
    due_at: list[float]
    """POSIX timestamps (the sandbox's datetime does not convert inside dataclasses)."""


@dataclasses.dataclass
class TouchpointSent:
    workflow_id: str
    index: int


@activity.defn(name="baseline_send")
async def baseline_send(sent: TouchpointSent) -> None:
    for listener in listeners:
        listener(sent.workflow_id, sent.index)


@workflow.defn(name="BaselineJourney")
class BaselineJourney:
    def __init__(self) -> None:
        self.answers = 0

    @workflow.signal(name="answer")
    def answer(self, index: int) -> None:
        self.answers += 1

    @workflow.run
    async def run(self, journey: BaselineInput) -> int:
        for index, due in enumerate(journey.due_at):
            delay = due - workflow.now().timestamp()
            if delay > 0:
                await workflow.sleep(delay)
            await workflow.execute_activity(
                baseline_send,
                TouchpointSent(workflow.info().workflow_id, index),
                start_to_close_timeout=dt.timedelta(seconds=30),
            )
            await workflow.wait_condition(lambda index=index: self.answers > index)
        return self.answers
