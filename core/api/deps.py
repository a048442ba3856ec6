"""FastAPI dependencies: the process runtime and a database session per request."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlmodel import Session

from suifang.core.db import in_thread
from suifang.core.runtime import Runtime

__all__ = ["RuntimeDep", "SessionDep", "get_runtime", "get_session"]


# Both are async although they do no I/O on the event loop: FastAPI runs a plain ``def``
# dependency in the thread pool, a hop per request that costs more than the work.
async def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


async def get_session(
    runtime: Annotated[Runtime, Depends(get_runtime)],
) -> AsyncIterator[Session]:
    session = Session(runtime.engine, expire_on_commit=False)  # connects on first use
    try:
        yield session
    finally:
        await in_thread(session.close)  # returns the connection: a rollback, off the loop


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
SessionDep = Annotated[Session, Depends(get_session)]
