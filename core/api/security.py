"""The API's guard: bearer-token authentication, permission checks, department scope, audit.

Every route requires a token except those in :data:`PUBLIC_ROUTES` (health, the API
documentation, and the inbound channel webhooks, which are verified by their own HMAC
signatures). ``create_app`` refuses to start if a route is neither public nor guarded, so
a new route cannot be exposed by accident. Every guarded request is written to the audit log
with the patients it touched.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable, Collection
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute, iter_route_contexts
from sqlmodel import Session
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from suifang.core.api.deps import get_runtime
from suifang.core.api.docs import REDOC_BUNDLE
from suifang.core.api.errors import error_body
from suifang.core.api.server_errors import route_path
from suifang.core.db import in_thread
from suifang.core.runtime import Runtime
from suifang.core.security.audit import outcome_of, record_audit
from suifang.core.security.auth import (
    AuthenticationFailed,
    Permission,
    Principal,
    authenticate,
    patient_in_scope,
)

__all__ = [
    "PUBLIC_ROUTES",
    "PrincipalDep",
    "api_routes",
    "audit_patients",
    "check_routes_are_guarded",
    "install_audit",
    "require",
    "require_department_in_scope",
    "require_patient_in_scope",
]

#: Deliberately public: health, docs, and webhooks that carry their provider's signature.
PUBLIC_ROUTES = {
    "/healthz",
    "/openapi.json",
    "/docs",
    "/docs/oauth2-redirect",
    "/redoc",
    REDOC_BUNDLE,  # ReDoc's script, served with its CDN logo inlined
    "/channels/{name}/inbound",
}
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_LARGEST_ID = 2**31 - 1


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


async def current_principal(
    request: Request, runtime: Annotated[Runtime, Depends(get_runtime)]
) -> Principal:
    """The caller, from ``Authorization: Bearer <token>``; 401 for anything else."""

    def check() -> Principal:
        with Session(runtime.engine) as session:
            return authenticate(session, _bearer(request))

    try:
        principal = await in_thread(check)
    except AuthenticationFailed:
        raise HTTPException(
            status_code=401,
            detail="a valid API token is required (Authorization: Bearer sf_…)",
            headers={"WWW-Authenticate": "Bearer"},
        ) from None
    request.state.principal = principal
    return principal


PrincipalDep = Annotated[Principal, Depends(current_principal)]


def require(permission: Permission) -> Callable[..., Awaitable[Principal]]:
    """A dependency: the caller, who must hold ``permission`` (403 otherwise)."""

    async def guard(principal: PrincipalDep) -> Principal:
        if not principal.can(permission):
            raise HTTPException(status_code=403, detail=principal.refusal(permission))
        return principal

    guard.__name__ = f"require_{permission.value.replace(':', '_')}"
    return guard


def audit_patients(request: Request, *patient_ids: int | None) -> None:
    """Name the patients a request read or changed, for its audit record."""
    found = getattr(request.state, "audit_patients", [])
    # Ids are 32-bit columns: a larger number (a probe, a typo) names no patient, and writing
    # it would make the audit record itself fail.
    found.extend(p for p in patient_ids if p is not None and 0 < p <= _LARGEST_ID)
    request.state.audit_patients = found


def require_patient_in_scope(session: Session, principal: Principal, patient_id: int) -> None:
    """404 — not 403, so other departments' patients cannot even be probed."""
    if not patient_in_scope(session, patient_id, principal.scope):
        raise HTTPException(status_code=404, detail=f"no patient {patient_id}")


def _is_id(value: object) -> bool:
    text = str(value) if value is not None else ""
    return text.isascii() and text.isdigit() and 0 < int(text) <= _LARGEST_ID


def require_department_in_scope(principal: Principal, department: str, where: str) -> None:
    """403 when a caller names a department outside its own (a scoped integrator token
    enrolling into, or opening a ticket for, another department). Which departments exist is
    no secret, so this says why."""
    scope = principal.scope
    if scope is not None and department not in scope:
        raise HTTPException(
            status_code=403,
            detail=f"{where}: this token acts only for department(s) {', '.join(scope) or 'none'}"
            f", not {department!r}",
        )


def api_routes(app: FastAPI) -> list[tuple[str, set[str], APIRoute]]:
    """Every API route as (full path, methods, route), through included routers."""
    found = []
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if isinstance(route, APIRoute) and context.path is not None:
            found.append((context.path, set(route.methods), route))
    return found


def install_audit(app: FastAPI, public: Collection[str] = PUBLIC_ROUTES) -> None:
    """Request ids on every response; an audit record for every guarded request."""
    app.add_middleware(AuditMiddleware, public=frozenset(public))


class AuditMiddleware:
    """Writes the audit record of a guarded request before its answer leaves.

    Plain ASGI rather than ``@app.middleware("http")``: it sits on every request, and
    Starlette's BaseHTTPMiddleware costs a task and a stream per request. The response's
    start is held until the record is written (its status decides the outcome); if the record
    cannot be written the caller gets 503 instead, and the body that was produced is dropped.
    """

    def __init__(self, app: ASGIApp, public: frozenset[str]) -> None:
        self.app = app
        self.public = public

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = Headers(scope=scope).get("x-request-id", "")
        request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        refused = False

        async def audited_send(message: Message) -> None:
            nonlocal refused
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                ]
                if not await self._record(scope, message["status"], request_id):
                    refused = True
                    await self._unavailable(send, request_id)
                    return
            elif refused:
                return  # the answer that could not be audited
            await send(message)

        await self.app(scope, receive, audited_send)

    async def _record(self, scope: Scope, status_code: int, request_id: str) -> bool:
        """Write the record; False if it could not be written (and must not be skipped)."""
        path = route_path(scope)
        if path is None or path in self.public or status_code >= 500:
            return True  # a 5xx is recorded, with its error id, by core/api/server_errors
        state = scope.get("state", {})
        principal: Principal | None = state.get("principal")
        runtime: Runtime = scope["app"].state.runtime
        params = scope.get("path_params", {})
        resource = path.strip("/").split("/")[0] or "root"
        # A path segment is whatever the caller typed, and may be a name: ids only, and the
        # words of a request that succeeded (then the route knew them: an action, a pathway).
        ids = [str(v) for v in params.values() if _is_id(v) or status_code < 400]
        patients = state.get("audit_patients")
        if not patients and _is_id(params.get("patient_id")):
            patients = [int(params["patient_id"])]  # a probe that got 404 still names whom
        try:
            await in_thread(
                record_audit,
                runtime.engine,
                actor=principal.actor if principal else "anonymous",
                role=principal.role.value if principal else "-",
                action=f"{scope['method']} {path}",
                resource=resource,
                resource_id=",".join(ids) or None,
                patient_ids=patients,
                outcome=outcome_of(status_code),
                status_code=status_code,
                request_id=request_id,
                detail=state.get("audit_detail"),
            )
        except Exception:  # noqa: BLE001 -- an unaudited answer must not leave the building
            return status_code == 503  # already a refusal (the database is down): it says why
        return True

    @staticmethod
    async def _unavailable(send: Send, request_id: str) -> None:
        refusal = JSONResponse(
            status_code=503,
            content=error_body("audit_unavailable", "the audit log cannot be written; retry"),
            headers={"X-Request-ID": request_id, "Retry-After": "5"},
        )
        body = refusal.body
        await send({"type": "http.response.start", "status": 503, "headers": refusal.raw_headers})
        await send({"type": "http.response.body", "body": body})


def _dependencies(route: APIRoute) -> set[Any]:
    seen: set[Any] = set()
    stack = [route.dependant]
    while stack:
        dependant = stack.pop()
        if dependant.call is not None:
            seen.add(dependant.call)
        stack.extend(dependant.dependencies)
    return seen


def check_routes_are_guarded(app: FastAPI, public: Collection[str] = PUBLIC_ROUTES) -> None:
    """Refuse to start with a route that is neither deliberately public nor guarded."""
    for path, methods, route in api_routes(app):
        if path not in public and current_principal not in _dependencies(route):
            raise RuntimeError(f"route {sorted(methods)} {path} has no authentication")
