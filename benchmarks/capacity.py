"""Open-journey capacity: many journeys parked on long timers on the embedded default.

Journeys are enrolled through intake (``register_discharge``) on the ``pci`` pathway at
time_scale 1, so each parks on a timer until its day-3 touchpoint. The real worker runs in
its own process with the SDK's default cache (1,000 workflows), as ``suifang up`` does.

Reported: the start rate (intakes per second, each one database transaction set plus one
workflow start), the worker's RSS once every journey is parked, the Temporal database (and
the app database) per journey, and that they are all still there: a random sample is
described and queried (``progress``, replayed from history for journeys no longer cached)
and visibility counts the running ones.
"""

from __future__ import annotations

import random
import time
import uuid
from typing import Any

from harness import (
    Platform,
    describe_latencies,
    file_bytes,
    log,
    machine,
    pci_discharge,
    run_pool,
    summary_line,
    wait_until_parked,
)

from suifang.workflows.intake import DischargeIn, register_discharge
from suifang.workflows.journey import PatientJourneyWorkflow


async def main(args: Any) -> str:
    async with Platform(keep=args.keep) as platform:
        runtime = platform.runtime
        assert runtime is not None
        client = await runtime.client()
        worker = platform.start_worker_process()
        idle_rss = worker.rss()
        temporal_before = file_bytes(*platform.temporal_db)
        app_before = file_bytes(*platform.app_db)
        run = uuid.uuid4().hex[:6]
        step = max(1, args.journeys // 10)
        began = time.monotonic()

        async def enroll(number: int) -> str:
            enrollment = await register_discharge(
                runtime, DischargeIn.model_validate(pci_discharge(run, number))
            )
            if (number + 1) % step == 0:
                elapsed = time.monotonic() - began
                log(f"  {number + 1} started ({(number + 1) / elapsed:.0f}/s)")
            return enrollment.workflow_id

        log(f"starting {args.journeys} journeys")
        workflow_ids = await run_pool(args.journeys, args.concurrency, enroll)
        start_seconds = time.monotonic() - began
        log(f"started in {start_seconds:.0f} s; waiting for the worker to park them all")
        await wait_until_parked(client, workflow_ids[-50:], timeout=1800)
        parked_rss = worker.rss()
        temporal_bytes = file_bytes(*platform.temporal_db) - temporal_before
        app_bytes = file_bytes(*platform.app_db) - app_before

        sample = random.Random(1).sample(workflow_ids, min(args.sample, len(workflow_ids)))
        latencies, answered = [], 0
        for workflow_id in sample:
            handle = client.get_workflow_handle_for(PatientJourneyWorkflow.run, workflow_id)
            began_query = time.monotonic()
            description = await handle.describe()
            progress = await handle.query(PatientJourneyWorkflow.progress)
            latencies.append(time.monotonic() - began_query)
            answered += int(
                description.status is not None
                and description.status.name == "RUNNING"
                and progress.next_touchpoint == "day3"
            )
        running = await client.count_workflows(
            'WorkflowType = "PatientJourney" AND ExecutionStatus = "Running"'
        )
        listed = 0
        async for _ in client.list_workflows(
            'WorkflowType = "PatientJourney"', limit=1000, page_size=1000
        ):
            listed += 1
        queried = describe_latencies(latencies)
    return summary_line(
        "open_journeys",
        {
            "journeys": args.journeys,
            "start_per_s": args.journeys / start_seconds,
            "worker_rss_mb": parked_rss / 2**20,
            "worker_idle_rss_mb": idle_rss / 2**20,
            "temporal_db_bytes_per_journey": temporal_bytes / args.journeys,
            "app_db_bytes_per_journey": app_bytes / args.journeys,
            "sample": len(sample),
            "sample_ok": answered,
            "query_p50_ms": queried["p50_ms"],
            "query_p99_ms": queried["p99_ms"],
            "visible_running": running.count,
            "listed_first_page": listed,
            "load1": machine()["load1"],
        },
    )
