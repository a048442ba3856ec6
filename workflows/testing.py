"""pytest fixtures that need suifang's workflows: the factory of the session's real worker.

Load it after the kernel's fixtures, in a ``conftest.py``::

    pytest_plugins = ["suifang.core.testing", "suifang.workflows.testing"]

``suifang.core.testing`` runs the worker (``journey_worker``) but, being the kernel, cannot
import the workflows it runs; this module hands it the factory.
"""

from __future__ import annotations

import pytest
from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from suifang.core.config import Settings
from suifang.core.runtime import Runtime
from suifang.core.testing import WorkerFactory
from suifang.workflows.worker import activities_for, build_worker

__all__ = ["build_test_worker", "worker_factory"]


def build_test_worker(client: Client, runtime: Runtime, task_queue: str) -> Worker:
    """suifang's worker (every workflow and activity), as the test suite runs it."""
    return build_worker(
        client,
        runtime,
        task_queue=task_queue,
        activities=activities_for(runtime),
        # Settings as production's defaults (build_worker would ask the runtime, which stands
        # in for a test's runtime that does not exist yet).
        max_concurrent_activities=Settings.model_fields["worker_max_concurrent_activities"].default,
        max_cached_workflows=Settings.model_fields["worker_max_cached_workflows"].default,
        # Sandboxed here whatever production runs: a workflow shell that calls what workflow
        # code must not (the clock, I/O) fails its test.
        workflow_runner=SandboxedWorkflowRunner(),
    )


@pytest.fixture(scope="session")
def worker_factory() -> WorkerFactory:
    return build_test_worker
