"""The worker's activities never await while they hold a database connection, and never
run a statement on the event loop: a slow one cannot starve the heartbeats.

That is what lets the worker run as many activities at once as it likes on a small pool
(``SUIFANG_WORKER_MAX_CONCURRENT_ACTIVITIES``): an activity that awaited a provider with a
connection checked out would, with enough of them in flight, empty the pool, and the next
checkout would block the event loop — and with it every activity that could give one back.
"""

from __future__ import annotations

import ast
import asyncio
import datetime as dt
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from temporalio import activity, workflow
from temporalio.common import RetryPolicy
from temporalio.testing import WorkflowEnvironment

import suifang.core
import suifang.core.api
import suifang.tickets
import suifang.workflows
from suifang.core.db import create_db_engine
from suifang.core.runtime import Runtime
from suifang.workflows.worker import build_worker

# core/ for the delivery cascade the send activities of both domains run.
DOMAINS = (
    Path(suifang.workflows.__file__).parent,
    Path(suifang.tickets.__file__).parent,
    Path(suifang.core.__file__).parent,
)
ACTIVITY_MODULES = sorted(
    path
    for domain in DOMAINS
    for path in domain.glob("*.py")
    if "@activity.defn" in path.read_text(encoding="utf-8") or path.name == "delivery.py"
)
SERVICES = (  # what the API and the webhook call that awaits Temporal
    Path(suifang.tickets.__file__).parent / "service.py",
    Path(suifang.workflows.__file__).parent / "intake.py",
    Path(suifang.workflows.__file__).parent / "journey_service.py",
    Path(suifang.workflows.__file__).parent / "inbound.py",
)
ROUTES = tuple(sorted(Path(suifang.core.api.__file__).parent.glob("*.py")))
HOLDS_CONNECTION = ("Session(", "session_scope(", ".begin(", ".connect(")


def awaits_holding_a_connection(source: str) -> list[str]:
    """``function: line`` of each await inside a block that has a connection checked out."""
    found = []
    for function in ast.walk(ast.parse(source)):
        if not isinstance(function, ast.AsyncFunctionDef):
            continue
        for block in ast.walk(function):
            if not isinstance(block, ast.With):
                continue
            opened = [ast.unparse(item.context_expr) for item in block.items]
            if not any(marker in text for text in opened for marker in HOLDS_CONNECTION):
                continue
            for node in ast.walk(block):
                if isinstance(node, (ast.Await, ast.AsyncFor, ast.AsyncWith)):
                    found.append(f"{function.name}: line {node.lineno}")
    return found


def test_the_check_finds_an_await_inside_a_session() -> None:
    holding = textwrap.dedent(
        """
        async def notify(self, notice):
            with Session(self.runtime.engine) as session:
                department = session.get(Department, notice.department)
                await email.send(department.supervisor_email)
        """
    )
    released = holding.replace("        await", "    await")
    assert awaits_holding_a_connection(holding) == ["notify: line 5"]
    assert awaits_holding_a_connection(released) == []


def test_nothing_awaits_with_a_connection_checked_out() -> None:
    assert {path.name for path in ACTIVITY_MODULES} >= {
        "delivery.py",
        "journey_activities.py",
        "activities.py",
    }
    offenders = {
        path.name: found
        for path in (*ACTIVITY_MODULES, *SERVICES, *ROUTES)
        if (found := awaits_holding_a_connection(path.read_text(encoding="utf-8")))
    }
    assert offenders == {}


OFFLOADS = ("in_session_thread", "in_thread", "to_thread")
"""What hands blocking work to a thread (core/db.py, asyncio)."""
DATABASE_HANDLES = ("session", "connection")


def database_work_on_the_event_loop(source: str) -> list[str]:
    """``function: line`` of each piece of database work an ``async def`` does itself, on the
    event loop: a connection it opens, or a session or connection it calls or passes to a
    sync function, other than through an offload or in a nested ``def`` handed to one."""
    found = []
    for function in ast.walk(ast.parse(source)):
        if not isinstance(function, ast.AsyncFunctionDef):
            continue
        nested = {
            id(node)
            for inner in ast.walk(function)
            if isinstance(inner, (ast.FunctionDef, ast.Lambda)) and inner is not function
            for node in ast.walk(inner)
        }
        awaited = {id(node.value) for node in ast.walk(function) if isinstance(node, ast.Await)}
        for node in ast.walk(function):
            if id(node) in nested:
                continue
            if isinstance(node, ast.With):
                opened = [ast.unparse(item.context_expr) for item in node.items]
                if any(marker in text for text in opened for marker in HOLDS_CONNECTION):
                    found.append(f"{function.name}: line {node.lineno}")
            elif isinstance(node, ast.Call) and id(node) not in awaited:
                if ast.unparse(node.func).endswith(OFFLOADS):
                    continue
                receiver = node.func.value if isinstance(node.func, ast.Attribute) else None
                handles = [receiver, *node.args]
                if any(isinstance(h, ast.Name) and h.id in DATABASE_HANDLES for h in handles):
                    found.append(f"{function.name}: line {node.lineno}")
    return sorted(set(found))


def test_the_check_finds_a_statement_on_the_event_loop() -> None:
    on_loop = textwrap.dedent(
        """
        async def notify(self, session, notice):
            with Session(self.runtime.engine) as session:
                department = session.get(Department, notice.department)
            supervisor = supervisor_of(session, department)
        """
    )
    in_thread = textwrap.dedent(
        """
        async def notify(self, session, notice):
            def load():
                with Session(self.runtime.engine) as session:
                    return session.get(Department, notice.department)
            department = await asyncio.to_thread(load)
            supervisor = await in_session_thread(session, supervisor_of, department)
            await journey_service.control_journey(runtime, session, 1, event)
        """
    )
    assert database_work_on_the_event_loop(on_loop) == [
        "notify: line 3",
        "notify: line 4",
        "notify: line 5",
    ]
    assert database_work_on_the_event_loop(in_thread) == []


def test_no_activity_service_or_route_runs_a_statement_on_the_event_loop() -> None:
    assert len(ROUTES) > 10
    offenders = {
        path.name: found
        for path in (*ACTIVITY_MODULES, *SERVICES, *ROUTES)
        if (found := database_work_on_the_event_loop(path.read_text(encoding="utf-8")))
    }
    assert offenders == {}


# ------------------------------------------------------------------ a slow statement


SLOW_SECONDS = 4.0
HEARTBEAT_TIMEOUT = dt.timedelta(seconds=1)


@activity.defn(name="test_slow_statement")
def slow_statement(url: str) -> str:
    """A write that waits behind another connection's lock (as a real one can, up to the
    statement timeout), in a sync activity like the worker's database activities."""
    engine = create_db_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(
                text("UPDATE department SET name_en = name_en WHERE code = 'no-such-code'")
            )
    finally:
        engine.dispose()
    return "written"


@activity.defn(name="test_provider_call")
async def provider_call(seconds: float) -> str:
    """An activity awaiting a slow provider: alive only as long as its heartbeats arrive."""
    await asyncio.sleep(seconds)
    return "answered"


@workflow.defn(sandboxed=False)
class SlowStatementWorkflow:
    @workflow.run
    async def run(self, url: str) -> list[str]:
        options: dict[str, Any] = {
            "start_to_close_timeout": dt.timedelta(seconds=60),
            "heartbeat_timeout": HEARTBEAT_TIMEOUT,
            "retry_policy": RetryPolicy(maximum_attempts=1),
        }
        return list(
            await asyncio.gather(
                workflow.execute_activity(slow_statement, url, **options),
                workflow.execute_activity(provider_call, SLOW_SECONDS - 1, **options),
            )
        )


class _Lock:
    """Another connection holding the write lock on the department table until released."""

    def __init__(self, url: str) -> None:
        self.held = True
        self.engine = create_db_engine(url)
        self.connection = self.engine.connect()
        if self.engine.dialect.name == "sqlite":
            self.connection.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            self.connection.begin()
            self.connection.execute(text("LOCK TABLE department IN ACCESS EXCLUSIVE MODE"))

    def release(self) -> None:
        self.held = False
        if self.engine.dialect.name == "sqlite":
            self.connection.exec_driver_sql("ROLLBACK")
        else:
            self.connection.rollback()
        self.connection.close()
        self.engine.dispose()


@pytest.mark.devserver
async def test_a_slow_statement_does_not_starve_heartbeats(
    runtime: Runtime, dev_server_env: WorkflowEnvironment
) -> None:
    """The worker as built for production (its thread pool, its heartbeat interceptor): one
    activity's statement waits on a lock for longer than the heartbeat timeout, and both it
    and an activity awaiting a provider meanwhile keep heartbeating and complete."""
    url = runtime.settings.database_url
    queue = f"slow-{uuid.uuid4().hex[:8]}"
    lock = _Lock(url)
    try:
        worker = build_worker(
            dev_server_env.client,
            runtime,
            task_queue=queue,
            activities=[slow_statement, provider_call],
            workflows=[SlowStatementWorkflow],
        )
        async with worker:
            handle = await dev_server_env.client.start_workflow(
                SlowStatementWorkflow.run, url, id=f"slow-{uuid.uuid4()}", task_queue=queue
            )
            await asyncio.sleep(SLOW_SECONDS)
            lock.release()
            assert await handle.result() == ["written", "answered"]
    finally:
        if lock.held:
            lock.release()
