"""``/healthz``: is the database reachable, is Temporal reachable. Deliberately public."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Response
from pydantic import BaseModel

from suifang.core.api.deps import RuntimeDep
from suifang.core.db import check_database, in_thread
from suifang.core.errors import StartupError
from suifang.core.temporal import temporal_health

router = APIRouter(tags=["health"])


class ComponentHealth(BaseModel):
    ok: bool
    detail: str | None = None


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    database: ComponentHealth
    temporal: ComponentHealth


@router.get("/healthz", response_model=Health, summary="Liveness of the API and its dependencies")
async def healthz(runtime: RuntimeDep, response: Response) -> Health:
    """Whether the database and Temporal answer: 200 with ``status: ok``, or 503 with
    ``status: degraded`` and what is wrong with each. Public (no token), for a load
    balancer's or monitoring system's probe.

    中文：存活检查：数据库和 Temporal 是否可达；正常返回 200（ok），
    否则返回 503（degraded）并说明原因。无需令牌，供负载均衡或监控探测使用。
    """
    db_problem = await in_thread(check_database, runtime.engine)
    try:
        client = await runtime.client()
        temporal_problem = await temporal_health(client)
    except StartupError:
        temporal_problem = f"unreachable at {runtime.settings.temporal_address}"
    health = Health(
        status="ok" if db_problem is None and temporal_problem is None else "degraded",
        database=ComponentHealth(ok=db_problem is None, detail=db_problem),
        temporal=ComponentHealth(ok=temporal_problem is None, detail=temporal_problem),
    )
    if health.status != "ok":
        response.status_code = 503
    return health
