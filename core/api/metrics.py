"""``GET /metrics``: the platform's figures for Prometheus, and the worker's when in reach.

Who may read it is ``SUIFANG_METRICS_ACCESS``: a token with ``metrics:read`` (the default),
anyone (a scraper on a closed network), or no one (no route). The figures are counts with no
patient in them (core/metrics.py).
"""

from __future__ import annotations

from typing import Annotated

import httpx
from fastapi import APIRouter, Depends, FastAPI, Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from suifang.core.api.deps import get_runtime
from suifang.core.api.security import require
from suifang.core.metrics import PlatformCollector
from suifang.core.runtime import Runtime
from suifang.core.security.auth import Permission

__all__ = ["install_metrics"]

METRICS_PATH = "/metrics"
_WORKER_TIMEOUT = 2.0


_WORKER_UP = (
    b"# HELP suifang_worker_metrics_up Whether the worker's metrics endpoint answered.\n"
    b"# TYPE suifang_worker_metrics_up gauge\nsuifang_worker_metrics_up %s\n"
)


def _worker_figures(address: str) -> bytes:
    """The Temporal SDK's exposition from the worker, or a line saying it is out of reach."""
    try:
        response = httpx.get(f"http://{address}/metrics", timeout=_WORKER_TIMEOUT)
        response.raise_for_status()
    except httpx.HTTPError:
        return _WORKER_UP % b"0.0"
    return _WORKER_UP % b"1.0" + response.content


def install_metrics(app: FastAPI, runtime: Runtime, public: set[str]) -> None:
    """Add ``/metrics`` as the settings say; a public one joins ``public``."""
    access = runtime.settings.metrics_access
    if access == "off":
        return
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PlatformCollector(runtime.engine))
    router = APIRouter(tags=["operations"])
    if access == "public":
        public.add(METRICS_PATH)
        guard: list[object] = []
    else:
        guard = [Depends(require(Permission.METRICS_READ))]

    @router.get(
        METRICS_PATH,
        summary="Platform metrics (Prometheus text format)",
        response_class=Response,
        dependencies=guard,  # type: ignore[arg-type]
        responses={
            200: {
                "description": "Prometheus text exposition format 0.0.4.",
                "content": {
                    CONTENT_TYPE_LATEST: {
                        "schema": {"type": "string"},
                        "example": 'suifang_journeys{status="active"} 1204.0\n',
                    }
                },
            }
        },
    )
    def metrics(runtime: Annotated[Runtime, Depends(get_runtime)]) -> Response:
        """Journeys by state; messages by channel and status; delivery attempts by outcome;
        delivery latency (last hour); tickets by tier and status; SLA warnings and breaches;
        emergency pages by state; refused inbound calls. With the worker's metrics endpoint
        configured (``SUIFANG_WORKER_METRICS_ADDRESS``, or ``suifang up``), also the
        Temporal SDK's: task slots free, schedule-to-start and execution latency.

        Counted from the database at each scrape: every process's work shows, whichever
        process is scraped. Scrape every 15–60 s.

        中文：平台运行指标（Prometheus 格式）：随访旅程状态、消息与投递结果、投递延迟、
        工单层级与状态、SLA 预警与超时、急诊呼叫确认情况、被拒绝的回调；
        配置后含 worker 的任务槽与延迟。
        """
        body = generate_latest(registry)
        address = runtime.worker_metrics_address or runtime.settings.worker_metrics_address
        if address:
            body += _worker_figures(address)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    app.include_router(router)
