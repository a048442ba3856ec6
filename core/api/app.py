"""The FastAPI application factory: the API's composition root."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

from suifang.core.api import (
    admin,
    channels,
    contacts,
    fhir,
    health,
    hl7,
    journeys,
    oncall,
    outbox,
    pathways,
    records,
    reports,
    surveys,
)
from suifang.core.api import tickets as ticket_routes
from suifang.core.api.docs import install_docs
from suifang.core.api.errors import install_error_handlers
from suifang.core.api.limits import install_body_guard, install_concurrency_limit
from suifang.core.api.metrics import install_metrics
from suifang.core.api.security import PUBLIC_ROUTES, check_routes_are_guarded, install_audit
from suifang.core.api.server_errors import install_server_error_audit
from suifang.core.config import Settings, get_settings
from suifang.core.db import pool_capacity
from suifang.core.runtime import Runtime
from suifang.core.telemetry import setup_metrics, setup_tracing

__all__ = ["create_app"]

DESCRIPTION = """\
suifang (随访) runs hospital patient follow-up after discharge or a health check-up, and the
feedback tickets that follow-up produces. This is its headless HTTP API.
"""


def create_app(runtime: Runtime | None = None, *, settings: Settings | None = None) -> FastAPI:
    """Build the API around ``runtime`` (default: one built from the settings)."""
    runtime = runtime or Runtime.from_settings(settings or get_settings())

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        runtime.close()

    app = FastAPI(
        title="suifang",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served by install_docs, with local assets
        redoc_url=None,
    )
    app.state.runtime = runtime
    install_error_handlers(app)
    app.include_router(health.router)
    public = set(PUBLIC_ROUTES)  # and /metrics where SUIFANG_METRICS_ACCESS=public
    install_docs(app, public)
    app.include_router(journeys.router)
    app.include_router(hl7.router)
    app.include_router(fhir.router)
    app.include_router(pathways.router)
    app.include_router(outbox.router)
    app.include_router(channels.router)
    app.include_router(channels.webhooks)
    app.include_router(ticket_routes.router)
    app.include_router(admin.router)
    app.include_router(contacts.router)
    app.include_router(records.router)
    app.include_router(surveys.router)
    app.include_router(oncall.router)
    app.include_router(reports.router)
    install_metrics(app, runtime, public)
    install_audit(app, public)
    install_concurrency_limit(app, pool_capacity(runtime.engine))
    install_body_guard(app, runtime.settings)  # refusals never reach the DB
    install_server_error_audit(app, runtime.engine)  # outermost: sees every layer's 5xx
    check_routes_are_guarded(app, public)
    setup_tracing(runtime.settings)
    setup_metrics(runtime.settings, runtime.engine)
    FastAPIInstrumentor.instrument_app(app, excluded_urls="healthz,metrics")
    return app
