"""``suifang up`` keeps its worker running: a worker that stops on its own is started again
after a backoff, and a stop request ends the supervision at once."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from suifang.core.cli.supervisor import BACKOFF_SECONDS, supervise_worker
from suifang.core.runtime import Runtime
from suifang.workflows.worker import build_worker


@pytest.mark.devserver
async def test_a_worker_that_stops_is_started_again_and_stops_on_request(
    runtime: Runtime, dev_server_env: WorkflowEnvironment, capsys: pytest.CaptureFixture[str]
) -> None:
    target = dev_server_env.client.service_client.config.target_host
    # A real worker that fails as soon as it runs: its namespace does not exist.
    lost = await Client.connect(target, namespace=f"gone-{uuid.uuid4().hex[:6]}")
    queue = f"supervised-{uuid.uuid4().hex[:8]}"
    first = build_worker(lost, runtime, task_queue=queue)
    built: list[object] = []

    def make_worker() -> object:
        worker = build_worker(dev_server_env.client, runtime, task_queue=queue)
        built.append(worker)
        return worker

    stopping = asyncio.Event()
    supervised = asyncio.ensure_future(supervise_worker(first, make_worker, stopping))  # type: ignore[arg-type]
    for _ in range(100):
        if built:
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)
    assert not supervised.done(), "the supervisor gave up"
    assert len(built) == 1  # the healthy worker keeps running: no further restarts
    said = capsys.readouterr().out
    assert "the worker stopped (RuntimeError" in said
    assert f"starting it again in {BACKOFF_SECONDS[0]} s" in said
    assert "the worker is running again" in said

    stopping.set()
    await asyncio.wait_for(supervised, timeout=30)
    assert "Traceback" not in capsys.readouterr().out
