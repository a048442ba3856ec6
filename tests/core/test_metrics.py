"""``GET /metrics``: an operator sees journeys, messages, tickets, SLA clocks, pages, refused
webhooks and the worker's task slots, in Prometheus format, counted from the real platform."""

from __future__ import annotations

import asyncio
import re
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client.parser import text_string_to_metric_families
from sqlmodel import Session, select
from temporalio.testing import WorkflowEnvironment

from suifang.core.api import create_app
from suifang.core.config import load_settings
from suifang.core.embedded import free_port
from suifang.core.errors import ConfigurationError
from suifang.core.metrics import install_otel_metrics, platform_figures
from suifang.core.models import Message, StaffUser, Ticket
from suifang.core.runtime import Runtime
from suifang.core.security.auth import Role, Scope, issue_token
from suifang.core.temporal import connect_client
from suifang.core.testing import terminate_open_workflows
from suifang.workflows.intake import DischargeIn, register_discharge
from suifang.workflows.worker import build_worker

from .test_integrator_scopes import BASE, account, bearer, discharge, integrator_token, settle

DOCS = Path(__file__).parents[2] / "docs"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, keyed by name and sorted labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def staff_token(runtime: Runtime, username: str, role: Role) -> dict[str, str]:
    user_id = account(runtime, username, role, ["cardiology"] if role == Role.NURSE else None)
    with Session(runtime.engine) as session:
        user = session.get(StaffUser, user_id)
        assert user is not None
        value, _ = issue_token(session, user, name="t")
    return bearer(value)


async def test_metrics_count_what_the_platform_is_doing(
    runtime: Runtime, journey_worker: WorkflowEnvironment
) -> None:
    now = await journey_worker.get_current_time()
    for n, (department, pathway) in enumerate(
        [("cardiology", "pci"), ("cardiology", "pci"), ("orthopaedics", "hip-replacement")]
    ):
        await register_discharge(
            runtime, DischargeIn.model_validate(discharge(f"M-{n}", department, pathway, now))
        )
    app = create_app(runtime)
    scraper = bearer(integrator_token(runtime, "prometheus", scopes=[Scope.METRICS]))
    admin = staff_token(runtime, "root", Role.ADMIN)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as client:
        opened = await client.post(
            "/tickets",
            json={"patient_id": 1, "text": "停车场收费太贵了，还找不到车位", "source": "complaint"},
            headers=admin,
        )
        assert opened.status_code == 201, opened.text
        refused = await client.post("/channels/sms/inbound", content=b"{}", headers={})
        assert 400 <= refused.status_code < 500, refused.text
        assert "rejection_id" in refused.json()["error"]

        def sent() -> list[Message]:
            with Session(runtime.engine) as session:
                return list(session.exec(select(Message).where(Message.sent_at != None)).all())  # noqa: E711

        messages = await settle(sent)
        response = await client.get("/metrics", headers=scraper)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/plain")
        figures = samples(response.text)

        assert figures[("suifang_journeys", (("status", "active"),))] == 3
        with Session(runtime.engine) as session:
            tickets = session.exec(select(Ticket)).all()
        assert sum(v for (name, _), v in figures.items() if name == "suifang_tickets") == len(
            tickets
        )
        ticket = tickets[0]
        key = ("suifang_tickets", (("status", ticket.status), ("tier", ticket.tier)))
        assert figures[key] >= 1
        by_channel = sum(v for (name, _), v in figures.items() if name == "suifang_messages")
        assert by_channel >= len(messages)
        assert figures[("suifang_inbound_rejected_total", (("channel", "sms"),))] == 1
        assert figures[("suifang_sla_breaches_total", (("clock", "first_response"),))] == 0
        recent = figures[("suifang_delivery_latency_seconds_bucket", (("le", "+Inf"),))]
        assert recent >= len(messages)
        assert figures[("suifang_delivery_latency_seconds_bucket", (("le", "3600"),))] <= recent
        assert "patient" not in response.text  # counts only: nobody is named

        # Who may read it: a token with metrics:read, nobody else.
        assert (await client.get("/metrics")).status_code == 401
        nurse = staff_token(runtime, "nurse", Role.NURSE)
        assert (await client.get("/metrics", headers=nurse)).status_code == 403
        feed = bearer(
            integrator_token(runtime, "his", departments=["cardiology"], scopes=[Scope.INTAKE])
        )
        refusal = await client.get("/metrics", headers=feed)
        assert refusal.status_code == 403
        assert "metrics" in refusal.json()["error"]["message"]
        auditor = staff_token(runtime, "auditor", Role.AUDITOR)
        assert (await client.get("/metrics", headers=auditor)).status_code == 200


@pytest.mark.parametrize(("access", "anonymous"), [("public", 200), ("off", 404)])
async def test_the_setting_opens_or_closes_the_route(
    access: str, anonymous: int, runtime: Runtime
) -> None:
    runtime.settings.metrics_access = access  # type: ignore[assignment]
    app = create_app(runtime)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as client:
        response = await client.get("/metrics")
        assert response.status_code == anonymous, response.text
        if anonymous == 200:
            assert "suifang_journeys" in response.text
    spec = app.openapi()
    assert ("/metrics" in spec["paths"]) == (access != "off")
    if access == "public":
        assert "security" not in spec["paths"]["/metrics"]["get"]


def test_a_bad_access_setting_names_the_choices(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as refused:
        load_settings(data_dir=tmp_path / "var", metrics_access="everyone")
    assert "SUIFANG_METRICS_ACCESS" in str(refused.value)
    assert "'token', 'public' or 'off'" in str(refused.value)


async def test_opentelemetry_sees_the_same_figures(runtime: Runtime) -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    install_otel_metrics(provider.get_meter("test"), runtime.engine)
    exported = {
        metric.name: {
            tuple(sorted((k, str(v)) for k, v in point.attributes.items())): point.value
            for point in metric.data.data_points
        }
        for resource in reader.get_metrics_data().resource_metrics  # type: ignore[union-attr]
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }
    figures, _ = platform_figures(runtime.engine)
    assert {f.name for f in figures} <= set(exported) | {f.name for f in figures if not f.samples}
    for figure in figures:
        for labels, value in figure.samples:
            point = tuple(sorted(zip(figure.labels, labels, strict=True)))
            assert exported[figure.name][point] == value
    provider.shutdown()


async def test_the_worker_s_task_slots_and_latency_reach_the_api_s_metrics(
    runtime: Runtime, time_skipping_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    address = f"127.0.0.1:{free_port()}"
    target = time_skipping_env.client.service_client.config.target_host
    settings = runtime.settings.model_copy(update={"temporal_address": target})
    client = await connect_client(settings, codec=runtime.codec, metrics_address=address)
    runtime.settings.task_queue = f"metrics-{uuid.uuid4().hex[:8]}"
    runtime.worker_metrics_address = address
    worker = build_worker(client, runtime)
    app = create_app(runtime)
    scraper = bearer(integrator_token(runtime, "prometheus", scopes=[Scope.METRICS]))
    async with (
        worker,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as http,
    ):

        async def worker_figures() -> dict[Any, float] | None:
            response = await http.get("/metrics", headers=scraper)
            found = samples(response.text)
            slots = [k for k in found if k[0] == "temporal_worker_task_slots_available"]
            return found if slots else None

        runtime.with_client(client)
        try:
            await _check_worker_figures(runtime, time_skipping_env, http, worker_figures)
        finally:
            # Workflows left open on a queue whose worker is gone would hold the shared
            # time-skipping server's clock still for every later test.
            await terminate_open_workflows(runtime, client)

    runtime.worker_metrics_address = f"127.0.0.1:{free_port()}"  # nothing serves there
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as http:
        response = await http.get("/metrics", headers=scraper)
        assert samples(response.text)[("suifang_worker_metrics_up", ())] == 0
        assert "suifang_journeys" in response.text  # the platform's own figures still there


async def _check_worker_figures(
    runtime: Runtime,
    time_skipping_env: WorkflowEnvironment,
    http: httpx.AsyncClient,
    worker_figures: Any,
) -> None:
    now = await time_skipping_env.get_current_time()
    enrolled = await register_discharge(
        runtime, DischargeIn.model_validate(discharge("W-1", "cardiology", "pci", now))
    )
    opened = await http.post(
        "/tickets",
        json={"patient_id": enrolled.patient_id, "text": "请问复查要空腹吗"},
        headers=staff_token(runtime, "root", Role.ADMIN),
    )
    assert opened.status_code == 201, opened.text
    found: dict[Any, float] | None = None
    for _ in range(150):
        found = await worker_figures()
        if found and ("temporal_activity_execution_latency_count", ()) in {
            (name, ()) for name, _ in found
        }:
            break
        await asyncio.sleep(0.1)
    assert found is not None
    assert ("temporal_activity_execution_latency_count", ()) in {(n, ()) for n, _ in found}
    assert found, "the worker's task slots never showed"
    assert found[("suifang_worker_metrics_up", ())] == 1
    # The example alert rules and dashboard query only metrics that exist.
    figures, latency = platform_figures(runtime.engine)
    exposed = {n for n, _ in found} | {
        f.name + ("_total" if f.kind == "counter" else "") for f in figures
    }
    for example in ("prometheus-alerts.yml", "grafana-dashboard.json"):
        text = (DOCS / "monitoring" / example).read_text(encoding="utf-8")
        queried = set(re.findall(r"\b(?:suifang|temporal)_[a-z_]+", text)) - {"suifang_"}
        assert queried, example
        assert queried <= exposed, (example, sorted(queried - exposed))
    assert any(latency.name in q for q in exposed)
    slot_kinds = {
        dict(labels).get("worker_type")
        for name, labels in found
        if name == "temporal_worker_task_slots_available"
    }
    assert {"WorkflowWorker", "ActivityWorker"} <= slot_kinds
