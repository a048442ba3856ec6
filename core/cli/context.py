"""What every CLI command shares: settings and a lazily built runtime."""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import gc
import getpass
import uuid
from collections.abc import Coroutine
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from suifang.core.config import Settings, get_settings
from suifang.core.runtime import Runtime
from suifang.core.security.audit import record_audit
from suifang.core.seed import ensure_schema

__all__ = [
    "cli_actor",
    "cli_audit",
    "cli_run",
    "cli_runtime",
    "cli_settings",
    "local_time",
    "zone_name",
]


def cli_settings() -> Settings:
    return get_settings()


@functools.cache
def cli_runtime() -> Runtime:
    runtime = Runtime.from_settings(cli_settings())
    ensure_schema(runtime.engine)
    return runtime


def cli_actor() -> str:
    """Who acts on the command line: the operating-system user (with the CLI's admin rights)."""
    return f"cli:{getpass.getuser()}"


def cli_audit(
    action: str,
    resource: str,
    patient_ids: list[int],
    resource_id: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Audit a command that read or changed patient data, like the API does for requests."""
    record_audit(
        cli_runtime().engine,
        actor=cli_actor(),
        role="admin",
        action=f"cli {action}",
        resource=resource,
        resource_id=resource_id,
        patient_ids=patient_ids,
        outcome="ok",
        request_id=f"cli-{uuid.uuid4().hex[:12]}",
        detail=detail,
    )


T = TypeVar("T")


def cli_run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a command's async work, then let go of the Temporal client while its loop is alive.

    A client that outlives its event loop can be torn down by the interpreter at exit from
    a Temporal core thread, which aborts the process; releasing it here keeps exits clean.
    """

    async def run_and_release() -> T:
        try:
            return await coroutine
        finally:
            if cli_runtime.cache_info().currsize:
                cli_runtime()._client = None
            gc.collect()
            await asyncio.sleep(0)

    return asyncio.run(run_and_release())


def zone_name() -> str:
    """The hospital's timezone (``SUIFANG_TIMEZONE``), in which the CLI shows every time."""
    return cli_settings().timezone


def local_time(when: dt.datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """``when`` (stored in UTC) on the hospital's clock; "" for none."""
    if when is None:
        return ""
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.astimezone(ZoneInfo(zone_name())).strftime(fmt)
