"""PostgreSQL going away: the API answers 503 at once (not a hang, not a 500) and recovers by
itself; journey activities retry through the outage and nothing is lost or sent twice.

The database is reached through a TCP relay in this process that the tests cut and restore,
so the shared PostgreSQL server itself is never stopped. Cut "refusing", the relay drops every
open connection and closes each new one at once (a restarting server); cut "silent", it drops
the open ones and leaves new ones hanging unanswered (a host gone from the network), which
only the connect timeout ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any, ClassVar, Literal

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlmodel import Session, col, select
from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from suifang.core.api import create_app
from suifang.core.channel_directory import ChannelDirectory
from suifang.core.channels import DeliveryReceipt, OutboundMessage
from suifang.core.db import create_db_engine
from suifang.core.enums import JourneyStatus
from suifang.core.models import DeliveryAttempt, Enrollment, Message, TouchpointRecord
from suifang.core.pathways import PathwayTemplate
from suifang.core.runtime import Runtime
from suifang.core.security.auth import Role, create_user, issue_token
from suifang.plugins.channels.outbox import OutboxChannel
from suifang.workflows.intake import DischargeIn, register_discharge
from suifang.workflows.journey import PatientJourneyWorkflow

pytestmark = pytest.mark.postgres

Mode = Literal["up", "refusing", "silent"]


class DatabaseRelay:
    """A TCP relay to PostgreSQL, on its own thread and event loop: the app's database calls
    are synchronous and may block the test's loop while they connect."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.mode: Mode = "up"
        self.port = 0
        self.refused = 0
        """Connections turned away while "refusing": each is an attempt made in the outage."""
        self._loop = asyncio.new_event_loop()
        self._open: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self) -> DatabaseRelay:
        self._thread.start()
        self._server = self._call(asyncio.start_server(self._accept, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *_: object) -> None:
        self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=10)

    def cut(self, mode: Literal["refusing", "silent"] = "refusing") -> None:
        self._call(self._set(mode))

    def restore(self) -> None:
        self._call(self._set("up"))

    async def _set(self, mode: Mode) -> None:
        self.mode = mode
        self._drop_all()

    def _drop_all(self) -> None:
        for writer in list(self._open):
            writer.transport.abort()
        self._open.clear()

    async def _shutdown(self) -> None:
        self._drop_all()
        if self._server is not None:
            self._server.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.mode == "refusing":
            self.refused += 1
            writer.transport.abort()
            return
        self._open.add(writer)
        if self.mode == "silent":
            return  # held open, never answered, until the next cut or restore drops it
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._open.add(upstream_writer)
        await asyncio.gather(
            self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer)
        )

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.transport.abort()
        self._open.discard(writer)


@pytest.fixture
def relay() -> Iterator[DatabaseRelay]:
    with DatabaseRelay("127.0.0.1", 5432) as relay:
        yield relay


@pytest.fixture
def db_url(postgres_url: str, relay: DatabaseRelay) -> str:
    """The test's PostgreSQL schema, reached through the relay (replaces the SQLite/PostgreSQL
    pair from suifang.core.testing for every fixture of this module)."""
    url = make_url(postgres_url)
    assert (url.host, url.port or 5432) == relay.target, "the relay forwards to 127.0.0.1:5432"
    return (
        url.set(host="127.0.0.1", port=relay.port)
        .update_query_dict({"connect_timeout": "2"})  # psycopg's least; a silent host waits this
        .render_as_string(hide_password=False)
    )


@pytest.fixture
async def api(runtime: Runtime) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str]]]:
    async with _api(runtime) as client_and_auth:
        yield client_and_auth


@contextlib.asynccontextmanager
async def _api(runtime: Runtime) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str]]]:
    with Session(runtime.engine) as session:
        user = create_user(session, username="ops", display_name="ops", role=Role.ADMIN)
        token, _ = issue_token(session, user, name="faults")
    app = create_app(runtime)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://suifang.test") as client:
        yield client, {"Authorization": f"Bearer {token}"}


async def answer(client: httpx.AsyncClient, method: str, url: str, **kw: Any) -> httpx.Response:
    """The response — a request still unanswered after 30 s fails the test as a hang."""
    return await asyncio.wait_for(client.request(method, url, **kw), timeout=30)


def assert_database_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.json() == {
        "error": {
            "code": "database_unavailable",
            "message": "the database is unavailable; retry shortly",
            "error_id": response.headers["x-error-id"],  # every 5xx quotes one
        }
    }
    assert response.headers["retry-after"] == "5"


DISCHARGE = {
    "pathway": "pci",
    "patient": {"external_id": "DB-1", "name": "赵敏", "preferred_channels": ["outbox"]},
    "encounter": {
        "external_id": "DB-V1",
        "department": "cardiology",
        "discharged_at": "2026-11-01T10:00:00+08:00",
    },
}


@pytest.mark.parametrize("outage", ["refusing", "silent"])
async def test_the_api_answers_503_while_the_database_is_down_and_recovers_by_itself(
    outage: Literal["refusing", "silent"],
    relay: DatabaseRelay,
    api: tuple[httpx.AsyncClient, dict[str, str]],
) -> None:
    client, auth = api
    assert (await answer(client, "GET", "/journeys", headers=auth)).status_code == 200

    relay.cut(outage)
    requests = [("POST", "/intake/discharges", DISCHARGE)]  # an async route doing database work
    if outage == "refusing":  # (a silent host costs a connect timeout per request: one will do)
        requests.append(("GET", "/journeys", None))  # a sync route, in the thread pool
    for method, url, body in requests:
        assert_database_unavailable(await answer(client, method, url, headers=auth, json=body))
    health = await answer(client, "GET", "/healthz")
    assert health.status_code == 503
    assert health.json()["database"]["ok"] is False

    relay.restore()
    listed = await answer(client, "GET", "/journeys", headers=auth)
    assert listed.status_code == 200, listed.text
    health = await answer(client, "GET", "/healthz")
    assert health.json()["database"] == {"ok": True, "detail": None}


async def test_a_statement_stuck_behind_a_lock_is_cancelled_and_answered_503(
    runtime: Runtime,
) -> None:
    """A request waiting on a lock someone holds (a long migration, a stuck report) gives up
    after SUIFANG_DATABASE_STATEMENT_TIMEOUT instead of holding the event loop until then."""
    runtime.engine.dispose()
    runtime.engine = create_db_engine(runtime.settings.database_url, statement_timeout=1)
    locker = create_db_engine(runtime.settings.database_url, statement_timeout=0)
    try:
        async with _api(runtime) as (client, auth):
            with locker.connect() as holder:
                holder.execute(text("LOCK TABLE enrollment IN ACCESS EXCLUSIVE MODE"))
                started = time.monotonic()
                response = await answer(client, "GET", "/journeys", headers=auth)
                waited = time.monotonic() - started
                holder.rollback()  # the lock is gone
            assert response.status_code == 503, response.text
            assert response.json()["error"]["code"] == "database_timeout"
            assert "SUIFANG_DATABASE_STATEMENT_TIMEOUT" in response.json()["error"]["message"]
            assert response.headers["retry-after"] == "5"
            assert waited < 10  # the timeout ended the wait, not the lock's holder
            listed = await answer(client, "GET", "/journeys", headers=auth)
            assert listed.status_code == 200, listed.text
    finally:
        locker.dispose()


class RecordingOutbox(OutboxChannel):
    """The outbox channel, counting what the cascade actually hands it."""

    sent: ClassVar[Counter[str]] = Counter()

    async def send(self, message: OutboundMessage) -> DeliveryReceipt:
        type(self).sent[message.idempotency_key] += 1
        return await super().send(message)


OUTAGE_PATHWAY = {
    "id": "outage",
    "version": 1,
    "name": {"zh-CN": "停库演练", "en": "Outage drill"},
    "department": "cardiology",
    "channels": ["outbox"],
    "greetings": False,
    "touchpoints": [
        {
            "id": f"day{day}",
            "day": day,
            "kind": "education",
            "message": {"zh-CN": f"第{day}天的健康提示", "en": f"Day {day} advice"},
        }
        for day in (1, 2, 3)
    ],
}


async def test_journey_activities_retry_through_an_outage_and_nothing_is_lost_or_sent_twice(
    relay: DatabaseRelay, runtime: Runtime, journey_worker: WorkflowEnvironment
) -> None:
    env = journey_worker
    runtime.catalog.add(PathwayTemplate.model_validate(OUTAGE_PATHWAY), "test")
    runtime._channels = ChannelDirectory(
        runtime.plugins, instances={"outbox": RecordingOutbox(RecordingOutbox.load_config())}
    )
    RecordingOutbox.sent.clear()
    start = await env.get_current_time()
    enrolled = await register_discharge(
        runtime,
        DischargeIn.model_validate(
            {
                **DISCHARGE,
                "pathway": "outage",
                "encounter": {**DISCHARGE["encounter"], "discharged_at": start.isoformat()},
            }
        ),
    )
    handle = env.client.get_workflow_handle(enrolled.workflow_id)
    progress = await handle.query(PatientJourneyWorkflow.progress)
    assert progress.next_due_at is not None
    await env.sleep(progress.next_due_at - start - dt.timedelta(minutes=1))

    relay.cut("refusing")
    # The touchpoint falls due in the outage. Its records go with its send, an ordinary
    # activity that writes them before it sends: its retries wait on server timers, which
    # the test server fires as its clock is skipped ahead.
    await env.sleep(dt.timedelta(minutes=1, seconds=1))
    refused_at_due = relay.refused
    for _ in range(200):  # skipped time: retries back off from five seconds
        if relay.refused >= refused_at_due + 2:
            break
        await env.sleep(dt.timedelta(seconds=5))
    assert relay.refused >= refused_at_due + 2, (
        "the journey did not retry while the database was down"
    )
    assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
    assert RecordingOutbox.sent == Counter()  # nothing went out without its ledger entry

    relay.restore()
    # Quarter days: each skip waits for the activities it wakes, and on a loaded machine
    # (the suite runs in two processes) a whole day's catching-up can outlast the test
    # server's RPC timeout.
    for _ in range(40):
        if (await handle.describe()).status != WorkflowExecutionStatus.RUNNING:
            break
        await env.sleep(dt.timedelta(hours=6))
    await asyncio.wait_for(handle.result(), timeout=30)

    with Session(runtime.engine) as session:
        enrollment = session.get(Enrollment, enrolled.enrollment_id)
        assert enrollment is not None
        assert enrollment.status == JourneyStatus.COMPLETED
        messages = session.exec(
            select(Message).where(Message.enrollment_id == enrolled.enrollment_id)
        ).all()
        touchpoints = session.exec(
            select(TouchpointRecord.key).where(
                TouchpointRecord.enrollment_id == enrolled.enrollment_id
            )
        ).all()
        accepted = session.exec(
            select(DeliveryAttempt.message_id).where(
                col(DeliveryAttempt.message_id).in_([m.id for m in messages]),
                col(DeliveryAttempt.outcome).in_(("accepted", "delivered")),
            )
        ).all()
    assert sorted(m.touchpoint_key for m in messages) == ["day1", "day2", "day3"]  # type: ignore[type-var]
    assert sorted(touchpoints) == ["day1", "day2", "day3"]
    assert sorted(accepted) == sorted(m.id for m in messages)  # type: ignore[type-var]
    assert RecordingOutbox.sent == Counter({m.idempotency_key: 1 for m in messages})
