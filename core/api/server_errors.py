"""Every 5xx is answered without a traceback, carries an error id, and is written to the audit log.

The outermost of the API's middleware, so it sees what every layer inside it does:

- An exception nothing else handled (a bug) becomes a 500 in the API's usual error shape,
  ``{"error": {"code": "internal_error", "message": …, "error_id": …}}``: no traceback, no
  exception text, which could carry patient data or internals. The traceback goes to the
  server log under the same error id.
- Every response with a 5xx status — the 500 above, a 503 when the database is down, a
  route's own 5xx — gets an ``X-Error-ID`` header, and the error handlers put the same id in
  the body (:func:`suifang.core.api.errors.server_error_id`).
- Each is recorded in the audit log: the route (its template, never the path text), the
  principal if the request got far enough to be authenticated, the patients it had touched,
  the request id, and the error id and exception type in ``detail``. Public routes (the
  webhooks) and requests refused before routing are recorded too; ``/healthz``, whose 503 is
  the report a probe asked for, is not. If the audit log cannot be
  written either (the database is down), the server log says so; the client still gets its
  answer.

The guarded-request audit (:func:`suifang.core.api.security.install_audit`) leaves 5xx to this
module, so a failed request has one audit record, with its error id.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import FastAPI
from sqlalchemy import Engine
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from suifang.core.api.errors import error_body, error_id_in
from suifang.core.security.audit import outcome_of, record_audit

__all__ = ["ServerErrorAudit", "install_server_error_audit", "route_path"]

log = logging.getLogger("suifang.api")

# Its 503 is the answer a probe asks for (Temporal or the database is down), not a failure,
# and probes come every few seconds: recording each would flood the audit log during an outage.
_HEALTH = "/healthz"


class ServerErrorAudit:
    """ASGI middleware: a clean 500 for any exception, an error id and an audit record per 5xx."""

    def __init__(self, app: ASGIApp, *, engine: Engine) -> None:
        self.app = app
        self.engine = engine

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # Shared by every layer inside (request.state): the principal, the patients touched.
        state: dict[str, Any] = scope.setdefault("state", {})
        status: int | None = None

        async def send_marked(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                if status >= 500:
                    headers = [*message.get("headers", [])]
                    headers.append((b"x-error-id", error_id_in(state).encode()))
                    message = {**message, "headers": headers}
            await send(message)

        failure: Exception | None = None
        try:
            await self.app(scope, receive, send_marked)
        except Exception as exc:
            failure = exc
            error_id = error_id_in(state)
            log.error(
                "unhandled %s answering %s %s (error id %s)",
                type(exc).__name__,
                scope.get("method"),
                route_path(scope) or "(no route)",
                error_id,
                exc_info=exc,
            )
            if status is not None:  # the answer had begun: nothing clean is left to send
                await self._record(scope, state, 500, failure)
                raise
            response = JSONResponse(
                status_code=500,
                content=error_body(
                    "internal_error",
                    f"an unexpected error stopped this request, and it has been logged; quote "
                    f"error id {error_id} when reporting it",
                    error_id=error_id,
                ),
                headers=_request_id_header(state),
            )
            await response(scope, receive, send_marked)
        if status is not None and status >= 500 and scope.get("path") != _HEALTH:
            await self._record(scope, state, status, failure)

    async def _record(
        self, scope: Scope, state: dict[str, Any], status: int, failure: Exception | None
    ) -> None:
        principal = state.get("principal")
        path = route_path(scope)
        patients = list(state.get("audit_patients", []))  # checked by audit_patients()
        detail: dict[str, Any] = {"error_id": error_id_in(state)}
        if failure is not None:
            detail["error"] = type(failure).__name__
        try:
            await asyncio.to_thread(
                record_audit,
                self.engine,
                actor=principal.actor if principal else "anonymous",
                role=principal.role.value if principal else "-",
                # The route's template, never the path as sent: that is the caller's text.
                action=f"{scope.get('method', '?')} {path or '(no route)'}",
                resource=(path or "").strip("/").split("/")[0] or "root",
                patient_ids=patients,
                outcome=outcome_of(status),
                status_code=status,
                request_id=str(state.get("request_id") or detail["error_id"]),
                detail=detail,
            )
        except Exception:
            log.error(
                "a %s answer (error id %s) could not be written to the audit log",
                status,
                detail["error_id"],
                exc_info=True,
            )


def route_path(scope: Scope) -> str | None:
    """The matched route's path template (``/journeys/{enrollment_id}``), if any."""
    return getattr(scope.get("route"), "path", None)


def _request_id_header(state: dict[str, Any]) -> dict[str, str] | None:
    request_id = state.get("request_id")
    return {"X-Request-ID": request_id} if isinstance(request_id, str) else None


def install_server_error_audit(app: FastAPI, engine: Engine) -> None:
    """Install last, so it wraps every other middleware: no 5xx escapes it unrecorded."""
    app.add_middleware(ServerErrorAudit, engine=engine)
