"""Worker memory per cached workflow: a journey's, or a ticket's.

The real worker runs in its own process with a cache large enough for every workflow. A
warm-up set (PCI journeys, each parked on its day-3 timer; or tickets, each opened as the
API opens it and parked on its first SLA warning) loads the code paths first; then N more
are started and parked. Reported: the worker's RSS growth divided by the growth of its
workflow cache (the SDK's own count, read over SIGUSR1).
"""

from __future__ import annotations

import gc
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from harness import Platform, log, machine, pci_discharge, run_pool, summary_line, wait_until_parked
from sla import make_patient, open_ticket

from suifang.core.runtime import Runtime
from suifang.workflows.intake import DischargeIn, register_discharge

WARM_UP = 50


async def main(args: Any) -> str:
    async with Platform(keep=args.keep) as platform:
        runtime = platform.runtime
        assert runtime is not None
        client = await runtime.client()
        worker = platform.start_worker_process(max_cached_workflows=args.count + WARM_UP + 100)
        start = starter(runtime, args.kind)
        warm = await run_pool(WARM_UP, 16, start)
        await wait_until_parked(client, warm, timeout=600)
        gc.collect()
        rss_before, cached_before = worker.rss(), worker.cached_workflows()
        log(f"warm: {cached_before} cached, RSS {rss_before / 2**20:.1f} MiB")
        started = await run_pool(args.count, 16, lambda n: start(WARM_UP + n))
        await wait_until_parked(client, started[-50:], timeout=1800)
        rss_after, cached_after = worker.rss(), worker.cached_workflows()
        log(f"after: {cached_after} cached, RSS {rss_after / 2**20:.1f} MiB")
    added = max(1, cached_after - cached_before)
    return summary_line(
        "memory_per_workflow",
        {
            "kind": args.kind,
            "workflows": args.count,
            "cached_before": cached_before,
            "cached_after": cached_after,
            "rss_before_mb": rss_before / 2**20,
            "rss_after_mb": rss_after / 2**20,
            "kib_per_cached_workflow": (rss_after - rss_before) / added / 1024,
            "load1": machine()["load1"],
        },
    )


def starter(runtime: Runtime, kind: str) -> Callable[[int], Awaitable[str]]:
    """Starts the ``number``-th workflow of ``kind`` the way suifang does; its workflow id."""
    if kind == "ticket":
        patient_id = make_patient(runtime)

        async def open_one(number: int) -> str:
            return (await open_ticket(runtime, patient_id, due=None)).workflow_id

        return open_one
    run = uuid.uuid4().hex[:6]

    async def enroll(number: int) -> str:
        enrollment = await register_discharge(
            runtime, DischargeIn.model_validate(pci_discharge(run, number))
        )
        return enrollment.workflow_id

    return enroll
