"""What keeps ``suifang up`` running: a part that dies is started again, with backoff.

The embedded default runs the Temporal dev server as a child process and the worker as a task
of this process. Either can die under it (the dev server killed or out of memory, the worker
stopped by a fatal error); the hospital's follow-up must not stop with it. Each is watched,
restarted after 1, 2, 4 … 30 s (the wait grows while restarts keep failing and starts again at
1 s once a restart held), and every exit and restart is said on stdout and in the log.
Ctrl-C still stops everything, at any point of a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from temporalio.worker import Worker

from suifang.core.embedded import DevServer
from suifang.core.errors import StartupError

__all__ = ["BACKOFF_SECONDS", "say", "supervise_server", "supervise_worker"]

BACKOFF_SECONDS = (1, 2, 4, 8, 16, 30)
#: A part that ran this long before dying starts again from the shortest wait.
_HELD_SECONDS = 60.0
_WORKER_SHUTDOWN_SECONDS = 20.0

logger = logging.getLogger("suifang.up")


def say(text: str) -> None:
    print(f"suifang: {text}", flush=True)
    logger.warning(text)


def _backoff(failures: int) -> int:
    return BACKOFF_SECONDS[min(failures, len(BACKOFF_SECONDS) - 1)]


async def _stopped_within(stopping: asyncio.Event, seconds: float) -> bool:
    """Wait ``seconds``; True if ``stopping`` was set meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), timeout=seconds)
    return stopping.is_set()


async def supervise_server(server: DevServer, stopping: asyncio.Event) -> None:
    """Start the dev server again whenever its process has exited, until ``stopping``."""
    failures = 0
    while not stopping.is_set():
        process = server.process
        if process is not None and process.poll() is None:
            if await _stopped_within(stopping, 0.5):
                return
            continue
        code = process.returncode if process is not None else None
        delay = _backoff(failures)
        exited = f"exited (code {code})" if code is not None else "is not running"
        say(f"the Temporal dev server {exited}; starting it again in {delay} s")
        if await _stopped_within(stopping, delay):
            return
        try:
            server.start()
            await server.wait_healthy()
        except StartupError as exc:
            failures += 1
            server.stop()
            say(f"the Temporal dev server did not come back: {exc}")
            continue
        failures = 0
        say("the Temporal dev server is back")


async def supervise_worker(
    first: Worker, make_worker: Callable[[], Worker], stopping: asyncio.Event
) -> None:
    """Run ``first``, then a new worker each time one stops on its own, until ``stopping``;
    then shut the running one down (its activities finish or are retried elsewhere)."""
    failures = 0
    worker: Worker | None = first
    while not stopping.is_set():
        if worker is None:
            try:
                worker = make_worker()
            except Exception as exc:  # noqa: BLE001 -- said, and tried again after a wait
                failures += 1
                say(f"the worker could not be built: {type(exc).__name__}: {exc}")
                if await _stopped_within(stopping, _backoff(failures)):
                    return
                continue
            say("the worker is running again")
        started = time.monotonic()
        running = asyncio.ensure_future(worker.run())
        stopper = asyncio.ensure_future(stopping.wait())
        await asyncio.wait({running, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if stopping.is_set():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(worker.shutdown(), timeout=_WORKER_SHUTDOWN_SECONDS)
            with contextlib.suppress(BaseException):
                await running
            return
        problem = running.exception() if not running.cancelled() else None
        if time.monotonic() - started > _HELD_SECONDS:
            failures = 0
        delay = _backoff(failures)
        why = f"{type(problem).__name__}: {problem}" if problem is not None else "it returned"
        say(f"the worker stopped ({why}); starting it again in {delay} s")
        failures += 1
        worker = None
        if await _stopped_within(stopping, delay):
            return
