"""pytest fixtures for suifang and for plugin authors: real databases, real Temporal servers.

Load them in a ``conftest.py`` with ``pytest_plugins = ["suifang.core.testing"]``.

- ``db_url`` runs a test once on SQLite and once on PostgreSQL (``SUIFANG_TEST_POSTGRES_URL``,
  each test in its own throw-away schema). Unset, the PostgreSQL variant is skipped; set but
  unreachable, it fails — CI sets it.
- ``engine`` / ``session``: that database with every table created.
- ``runtime``: a :class:`Runtime` on that database, migrated and seeded, built-in plugins.
- ``journey_worker``: a real worker for ``runtime`` on the time-skipping server, built by the
  ``worker_factory`` fixture. This kernel module cannot know suifang's workflows (the domain
  sits above it): ``suifang.workflows.testing`` provides the factory, so a conftest that wants
  the worker loads both: ``pytest_plugins = ["suifang.core.testing", "suifang.workflows.testing"]``.
- ``time_skipping_env``: the time-skipping Temporal test server (one per session).
- ``dev_server_env``: a real Temporal dev server (one per session), for tests that need one.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, select
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from suifang.core.binaries import find_binary
from suifang.core.config import Settings, load_settings
from suifang.core.db import create_db_engine
from suifang.core.models import Enrollment, SurveyCampaign, Ticket, metadata
from suifang.core.plugins import Plugins
from suifang.core.runtime import Runtime
from suifang.core.security.codec import PayloadEncryptionCodec
from suifang.core.security.crypto import Keyring, configure_keyring, generate_key
from suifang.core.seed import prepare_database
from suifang.core.temporal import data_converter

__all__ = [
    "POSTGRES_ENV",
    "WorkerFactory",
    "db_url",
    "dev_server_env",
    "engine",
    "journey_worker",
    "keyring_environment",
    "postgres_schema_url",
    "runtime",
    "serving",
    "session",
    "settings",
    "terminate_open_workflows",
    "test_keyring",
    "time_skipping_env",
    "worker_factory",
]

POSTGRES_ENV = "SUIFANG_TEST_POSTGRES_URL"

WorkerFactory = Callable[[Client, Runtime, str], Worker]
"""Builds the session's worker: ``(client, runtime, task_queue) -> Worker``. The runtime it gets
stands in for whichever test's runtime is active, so the worker must read it lazily."""


def postgres_base_url() -> str | None:
    return os.environ.get(POSTGRES_ENV) or None


def postgres_schema_url(base: str, schema: str) -> str:
    """``base`` with every connection's ``search_path`` set to ``schema``."""
    return (
        make_url(base)
        .update_query_dict({"options": f"-csearch_path={schema}"})
        .render_as_string(hide_password=False)
    )


@pytest.fixture(scope="session", autouse=True)
def test_keyring() -> Keyring:
    """Encryption keys for the test process (subprocesses use their data directory's key file)."""
    # The blind-index key is text, as a configured one is: keyring_environment can pass it on.
    keyring = Keyring((generate_key(), generate_key()), base64.urlsafe_b64encode(os.urandom(32)))
    configure_keyring(keyring)
    return keyring


def keyring_environment(keyring: Keyring) -> dict[str, str]:
    """The ``SUIFANG_*`` variables that make a process (an in-process CLI run, a subprocess)
    use ``keyring``: every encrypted column is readable only with the keys that wrote it."""
    return {
        "SUIFANG_ENCRYPTION_KEYS": ",".join(keyring.encryption_keys),
        "SUIFANG_BLIND_INDEX_KEY": keyring.blind_index_key.decode("ascii"),
    }


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL schema for one test (dropped afterwards)."""
    base = postgres_base_url()
    if base is None:
        pytest.skip(f"{POSTGRES_ENV} is not set; CI sets it to run the PostgreSQL variant")
    admin = create_db_engine(base)
    schema = f"t_{uuid.uuid4().hex[:12]}"
    try:
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    except (SQLAlchemyError, OSError) as exc:
        admin.dispose()
        pytest.fail(f"PostgreSQL at {POSTGRES_ENV} is unreachable: {type(exc).__name__}: {exc}")
    try:
        yield postgres_schema_url(base, schema)
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty database: a SQLite file, then a PostgreSQL schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'app.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = create_db_engine(db_url)
    metadata.create_all(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with Session(engine, expire_on_commit=False) as session:
        yield session


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings isolated in a temporary data directory (SQLite app database inside it)."""
    return load_settings(data_dir=tmp_path / "var")


@pytest.fixture
def runtime(db_url: str, tmp_path: Path) -> Iterator[Runtime]:
    """A runtime on a migrated, seeded database, with every built-in plugin, its own task queue."""
    settings = load_settings(
        data_dir=tmp_path / "var",
        database_url=db_url,
        task_queue=f"test-{uuid.uuid4().hex[:10]}",
    )
    runtime = Runtime(
        settings=settings,
        engine=create_db_engine(db_url),
        plugins=Plugins.load(entrypoints=False, disabled=settings.disabled_plugins),
    )
    prepare_database(runtime.engine)
    yield runtime
    runtime.close()


class _CurrentRuntime:
    """Stands in for "the runtime of the test that is running" inside the session's worker.

    One worker serves the whole session: starting and stopping a worker per test leaves the
    time-skipping server with tasks dispatched to pollers that are gone, which freezes its
    clock for every later test.
    """

    target: Runtime | None = None

    def __getattr__(self, name: str) -> Any:
        if self.target is None:
            raise RuntimeError("no test runtime is active")
        return getattr(self.target, name)


@pytest.fixture(scope="session")
def worker_factory() -> WorkerFactory:
    """Overridden by ``suifang.workflows.testing`` (or a conftest): the kernel has no worker."""
    pytest.fail(
        "journey_worker needs a worker_factory fixture: add 'suifang.workflows.testing' to "
        "pytest_plugins after 'suifang.core.testing'"
    )


@pytest.fixture(scope="session")
async def _session_worker(
    time_skipping_env: WorkflowEnvironment, worker_factory: WorkerFactory
) -> AsyncIterator[tuple[_CurrentRuntime, str]]:
    current = _CurrentRuntime()
    task_queue = f"test-session-{uuid.uuid4().hex[:8]}"
    worker = worker_factory(time_skipping_env.client, current, task_queue)  # type: ignore[arg-type]
    async with worker:
        yield current, task_queue


@pytest.fixture
async def journey_worker(
    runtime: Runtime,
    time_skipping_env: WorkflowEnvironment,
    _session_worker: tuple[_CurrentRuntime, str],
) -> AsyncIterator[WorkflowEnvironment]:
    """The session's real worker, now serving ``runtime``; yields the time-skipping environment."""
    async with serving(runtime, time_skipping_env, _session_worker) as env:
        yield env


@contextlib.asynccontextmanager
async def serving(
    runtime: Runtime,
    env: WorkflowEnvironment,
    session_worker: tuple[_CurrentRuntime, str],
) -> AsyncIterator[WorkflowEnvironment]:
    """The session's worker serves ``runtime`` inside the block; what the test left running is
    ended after it."""
    current, task_queue = session_worker
    await _clock_runs(env)
    runtime.settings.task_queue = task_queue
    runtime.with_client(env.client)
    current.target = runtime
    try:
        yield env
        await terminate_open_workflows(runtime, env.client)
    finally:
        current.target = None


async def _clock_runs(env: WorkflowEnvironment) -> None:
    """Fail fast, naming the cause, when an earlier test left the shared server's clock held.

    Otherwise every later test waits out the server's RPC timeout, one after another.
    """
    try:
        await asyncio.wait_for(env.sleep(dt.timedelta(hours=1)), timeout=30)
    except (TimeoutError, RPCError) as held:
        pytest.fail(
            "the shared time-skipping server's clock is held: an earlier test left a workflow "
            f"open on a queue no worker serves any more (terminate_open_workflows) ({held!r})"
        )


async def terminate_open_workflows(runtime: Runtime, client: Client) -> None:
    """End what a test left running, gracefully: on the shared time-skipping server a workflow
    left open (or terminated mid-activity) would hold time still for every later test.

    Journeys first (they may still be opening tickets), then every ticket there is by then,
    and survey campaigns (a round's activity left for the next test's runtime would fail and
    be retried, holding the clock).
    """
    with Session(runtime.engine) as session:
        journeys = session.exec(select(Enrollment.workflow_id)).all()
    for workflow_id in journeys:
        handle = client.get_workflow_handle(workflow_id)
        if not await _running(handle):
            continue
        with contextlib.suppress(Exception):  # already stopping: that is fine too
            # The journey's control update, in its wire form: the kernel cannot import the
            # journey domain's ControlEvent.
            await handle.execute_update("control", {"action": "stop", "reason": "test end"})
        with contextlib.suppress(Exception):
            await asyncio.wait_for(handle.result(), timeout=10)
            continue
        await _wait_until_quiet(handle)
        with contextlib.suppress(RPCError):
            await handle.terminate("test finished")
    with Session(runtime.engine) as session:
        tickets = session.exec(select(Ticket.workflow_id)).all()
        campaigns = session.exec(select(SurveyCampaign.workflow_id)).all()
    for workflow_id in [*tickets, *campaigns]:
        handle = client.get_workflow_handle(workflow_id)
        if await _running(handle):
            await _wait_until_quiet(handle)
            with contextlib.suppress(RPCError):
                await handle.terminate("test finished")


async def _running(handle: Any) -> bool:
    try:
        return (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
    except RPCError:
        return False


async def _wait_until_quiet(handle: Any, *, polls: int = 3, limit: float = 5.0) -> None:
    """Until nothing is in flight for a few polls in a row: never cut an activity off."""
    quiet = 0
    deadline = asyncio.get_running_loop().time() + limit
    while quiet < polls and asyncio.get_running_loop().time() < deadline:
        raw = (await handle.describe()).raw_description
        busy = bool(raw.pending_activities) or raw.HasField("pending_workflow_task")
        quiet = 0 if busy else quiet + 1
        await asyncio.sleep(0.05)


@pytest.fixture(scope="session")
async def time_skipping_env(test_keyring: Keyring) -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(find_binary("temporal-test-server")),
        data_converter=data_converter(PayloadEncryptionCodec(test_keyring)),
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture(scope="session")
async def dev_server_env(test_keyring: Keyring) -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(find_binary("temporal")),
        data_converter=data_converter(PayloadEncryptionCodec(test_keyring)),
        ui=False,
        dev_server_log_level="error",
    )
    try:
        yield env
    finally:
        await env.shutdown()
