"""The bare-API baseline: what one insert and one workflow start cost behind FastAPI alone.

``POST /baseline`` writes one row to the same database suifang uses (its own table) in a
worker thread, then starts a bare workflow on the same Temporal server — what an intake does
at the least, with nothing of suifang in it: no validation beyond the body, no encryption,
no audit, no plugins. ``benchmarks/api_latency.py`` offers it the same request rate as
suifang's API in the same run, so the ratio of the two p99s is suifang's own overhead.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import sqlalchemy as sa
import uvicorn
from fastapi import FastAPI
from temporalio.client import Client

METADATA = sa.MetaData()
ROWS = sa.Table(
    "bench_baseline_row",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("key", sa.String(64), nullable=False, unique=True),
    sa.Column("body", sa.JSON, nullable=False),
)
WORKFLOW = "BaselineIntake"
"""Started, never run: no worker polls for it, as a start is what an intake waits for."""


def create_baseline_app(database_url: str, temporal_address: str, task_queue: str) -> FastAPI:
    engine = sa.create_engine(database_url, pool_size=20, max_overflow=20)
    METADATA.create_all(engine)
    state: dict[str, Client] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state["client"] = await Client.connect(temporal_address)
        yield
        engine.dispose()

    app = FastAPI(lifespan=lifespan)

    def insert(key: str, body: dict[str, Any]) -> None:
        with engine.begin() as connection:
            connection.execute(ROWS.insert().values(key=key, body=body))

    @app.post("/baseline", status_code=201)
    async def baseline(body: dict[str, Any]) -> dict[str, str]:
        key = uuid.uuid4().hex
        await asyncio.to_thread(insert, key, body)
        await state["client"].start_workflow(
            WORKFLOW, body, id=f"baseline-{key}", task_queue=f"{task_queue}-baseline"
        )
        return {"id": key}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def serve(port: int, database_url: str, temporal_address: str, task_queue: str) -> None:
    app = create_baseline_app(database_url, temporal_address, task_queue)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
