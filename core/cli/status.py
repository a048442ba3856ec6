"""``suifang status``: is each part of the platform up, seen from outside it.

Each part is asked the way a user of it would ask: the database with a query, Temporal with a
health check, the worker by whether it polls the task queue, the API by ``/healthz``, the HL7
listener by a TCP connection. Exit code 0 when every part is up, 1 otherwise: a cron job or
systemd timer can act on it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
from typing import Annotated

import httpx
import typer
from pydantic import BaseModel
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.service import RPCError

from suifang.core.cli.context import cli_settings
from suifang.core.cli.output import emit_json, print_table
from suifang.core.config import Settings
from suifang.core.db import check_database, create_db_engine, current_revision
from suifang.core.errors import StartupError
from suifang.core.temporal import connect_client, temporal_health

__all__ = ["PartStatus", "platform_status", "status"]

#: A poller seen this recently means a worker is serving the queue.
_POLLER_FRESH = dt.timedelta(minutes=2)
_TIMEOUT = 3.0


class PartStatus(BaseModel):
    part: str
    ok: bool
    detail: str


def _database(settings: Settings) -> PartStatus:
    engine = create_db_engine(settings.database_url)
    try:
        problem = check_database(engine)
        if problem is not None:
            return PartStatus(part="database", ok=False, detail=problem)
        revision = current_revision(engine)
        if revision is None:
            return PartStatus(
                part="database", ok=False, detail="not migrated: run suifang db upgrade"
            )
        return PartStatus(part="database", ok=True, detail=f"migration {revision}")
    finally:
        engine.dispose()


async def _pollers(client: Client, settings: Settings, kind: TaskQueueType.ValueType) -> int:
    response = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=settings.temporal_namespace,
            task_queue=TaskQueue(name=settings.task_queue),
            task_queue_type=kind,
        ),
        timeout=dt.timedelta(seconds=_TIMEOUT),
    )
    now = dt.datetime.now(dt.UTC)
    return sum(
        1
        for poller in response.pollers
        if now - poller.last_access_time.ToDatetime(dt.UTC) < _POLLER_FRESH
    )


async def _temporal_and_worker(settings: Settings) -> list[PartStatus]:
    where = settings.temporal_address
    try:
        client = await connect_client(settings, timeout=_TIMEOUT)
    except StartupError:
        return [
            PartStatus(part="temporal", ok=False, detail=f"unreachable at {where}"),
            PartStatus(part="worker", ok=False, detail="unknown: Temporal is unreachable"),
        ]
    problem = await temporal_health(client, timeout=_TIMEOUT)
    if problem is not None:
        return [
            PartStatus(part="temporal", ok=False, detail=f"{where}: {problem}"),
            PartStatus(part="worker", ok=False, detail="unknown: Temporal is not serving"),
        ]
    temporal = PartStatus(
        part="temporal", ok=True, detail=f"{where}, namespace {settings.temporal_namespace}"
    )
    try:
        workflow = await _pollers(client, settings, TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW)
        activity = await _pollers(client, settings, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY)
    except RPCError as exc:
        return [temporal, PartStatus(part="worker", ok=False, detail=f"cannot tell: {exc}")]
    queue = settings.task_queue
    if workflow and activity:
        detail = f"polling {queue!r} ({workflow} workflow, {activity} activity poller(s))"
        return [temporal, PartStatus(part="worker", ok=True, detail=detail)]
    return [
        temporal,
        PartStatus(part="worker", ok=False, detail=f"no worker has polled {queue!r} lately"),
    ]


def _api(settings: Settings) -> PartStatus:
    url = f"http://{settings.api_host}:{settings.api_port}/healthz"
    try:
        response = httpx.get(url, timeout=_TIMEOUT)
    except httpx.HTTPError as exc:
        return PartStatus(part="api", ok=False, detail=f"{url}: {type(exc).__name__}")
    return PartStatus(
        part="api",
        ok=response.status_code == 200,
        detail=f"{url}: {response.status_code}",
    )


def _hl7_listener(settings: Settings) -> PartStatus:
    where = f"{settings.hl7_mllp_host}:{settings.hl7_mllp_port}"
    try:
        with socket.create_connection(
            (settings.hl7_mllp_host, settings.hl7_mllp_port), timeout=_TIMEOUT
        ):
            pass
    except OSError as exc:
        return PartStatus(part="hl7 listener", ok=False, detail=f"{where}: {exc.strerror or exc}")
    return PartStatus(part="hl7 listener", ok=True, detail=f"{where}: accepting connections")


def platform_status(settings: Settings) -> list[PartStatus]:
    return [
        _database(settings),
        *asyncio.run(_temporal_and_worker(settings)),
        _api(settings),
        _hl7_listener(settings),
    ]


def status(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Is each part up: database, Temporal, worker, API, HL7 listener (exit 1 if one is not)."""
    parts = platform_status(cli_settings())
    if as_json:
        emit_json(parts)
    else:
        print_table(
            ["PART", "UP", "DETAIL"], [(p.part, "yes" if p.ok else "NO", p.detail) for p in parts]
        )
    if not all(p.ok for p in parts):
        raise typer.Exit(1)
