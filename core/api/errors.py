"""Every error leaves the API as a clear JSON body: what is wrong and where, never a traceback."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, DBAPIError, OperationalError, StatementError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from suifang.core.errors import (
    ConfigurationError,
    NotFoundError,
    StartupError,
    SuifangError,
    TryAgainLater,
    ValidationFailed,
)

__all__ = ["error_body", "error_id_in", "install_error_handlers", "server_error_id"]

log = logging.getLogger("suifang.api")

QUERY_CANCELED = "57014"
"""PostgreSQL's SQLSTATE for a statement cancelled by ``statement_timeout``."""
_STATUS = {
    NotFoundError: 404,
    ValidationFailed: 422,
    ConfigurationError: 422,
    StartupError: 503,
    TryAgainLater: 503,
}


def error_body(code: str, message: str, **extra: object) -> dict[str, object]:
    return {"error": {"code": code, "message": message, **extra}}


def error_id_in(state: dict[str, Any]) -> str:
    """A request's error id (``scope["state"]``), made on first use: one per failed request."""
    return state.setdefault("error_id", uuid.uuid4().hex)


def server_error_id(request: Request) -> str:
    """The id a 5xx answer quotes, the same in its body, its X-Error-ID header and its audit
    record (core/api/server_errors.py), so support can find what happened."""
    return error_id_in(request.scope.setdefault("state", {}))


def _where(loc: tuple[object, ...] | list[object]) -> str:
    parts = [str(part) for part in loc]
    if parts and parts[0] in {"body", "query", "path", "header"}:
        head, rest = parts[0], parts[1:]
        return head + "".join(f"[{p}]" if p.isdigit() else f".{p}" for p in rest)
    return ".".join(parts)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            {
                "where": _where(err.get("loc", ())),
                # pydantic prefixes a validator's own message; the message alone says it.
                "problem": str(err.get("msg", "invalid")).removeprefix("Value error, "),
            }
            for err in exc.errors()
        ]
        summary = "; ".join(f"{p['where']}: {p['problem']}" for p in problems[:5])
        return JSONResponse(
            status_code=422, content=error_body("invalid_request", summary, problems=problems)
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else "request refused"
        return JSONResponse(
            status_code=exc.status_code,
            content=error_body(f"http_{exc.status_code}", message),
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(SuifangError)
    async def _suifang(request: Request, exc: SuifangError) -> JSONResponse:
        status = next((code for kind, code in _STATUS.items() if isinstance(exc, kind)), 400)
        code = getattr(exc, "code", None) or type(exc).__name__
        extra = {"error_id": server_error_id(request)} if status >= 500 else {}
        return JSONResponse(status_code=status, content=error_body(code, str(exc), **extra))

    @app.exception_handler(OperationalError)
    async def _db_down(request: Request, exc: OperationalError) -> JSONResponse:
        log.warning("database unavailable: %s", type(exc.orig).__name__ if exc.orig else "error")
        if getattr(exc.orig, "sqlstate", None) == QUERY_CANCELED:
            return JSONResponse(
                status_code=503,
                content=error_body(
                    "database_timeout",
                    "the database did not answer within SUIFANG_DATABASE_STATEMENT_TIMEOUT; "
                    "retry shortly",
                    error_id=server_error_id(request),
                ),
                headers={"Retry-After": "5"},
            )
        return JSONResponse(
            status_code=503,
            content=error_body(
                "database_unavailable",
                "the database is unavailable; retry shortly",
                error_id=server_error_id(request),
            ),
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(PoolTimeout)
    async def _db_busy(request: Request, exc: PoolTimeout) -> JSONResponse:
        log.warning("no database connection free within the pool timeout")
        return JSONResponse(
            status_code=503,
            content=error_body(
                "database_unavailable",
                "the database is busy; retry shortly",
                error_id=server_error_id(request),
            ),
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(DataError)
    async def _unstorable(_: Request, exc: DataError) -> JSONResponse:
        # The value came from the request (an id beyond the column's range, text too long):
        # the caller's to fix, and PostgreSQL's own wording says which kind of value it was.
        diagnosis = getattr(getattr(exc.orig, "diag", None), "message_primary", None)
        reason = diagnosis or str(exc.orig or exc).splitlines()[0]
        return JSONResponse(
            status_code=422,
            content=error_body(
                "value_out_of_range", f"a value in this request cannot be stored: {reason}"
            ),
        )

    @app.exception_handler(OverflowError)
    async def _overflow(_: Request, exc: OverflowError) -> JSONResponse:
        # SQLite refuses integers beyond 64 bits this way; dates overflow the same way.
        return JSONResponse(
            status_code=422,
            content=error_body(
                "value_out_of_range", "a number or date in this request is out of range"
            ),
        )

    @app.exception_handler(StatementError)
    async def _unbindable(_: Request, exc: StatementError) -> JSONResponse:
        # A value refused before it reached the database: a naive or out-of-range datetime
        # in a filter, say. Anything else there is a bug and stays loud.
        if isinstance(exc.orig, ValueError | OverflowError):
            reason = str(exc.orig) if isinstance(exc.orig, ValueError) else "out of range"
            return JSONResponse(
                status_code=422,
                content=error_body(
                    "invalid_value", f"a value in this request is unusable: {reason}"
                ),
            )
        raise exc

    @app.exception_handler(DBAPIError)
    async def _db_error(request: Request, exc: DBAPIError) -> JSONResponse:
        if exc.connection_invalidated:
            return await _db_down(request, OperationalError(exc.statement, exc.params, exc.orig))
        log.error("database error: %s", type(exc.orig).__name__ if exc.orig else "error")
        return JSONResponse(
            status_code=500,
            content=error_body(
                "database_error",
                "the database refused the request",
                error_id=server_error_id(request),
            ),
        )
