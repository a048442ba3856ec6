"""A burst of requests beyond the database connection pool is served, never stalled.

Route handlers use the database synchronously from the event loop: before the API admitted
requests by the pool's size, a burst larger than the pool (the hospital system re-sending
its discharges after an outage) blocked the loop on a connection checkout, stalled every
request for the pool timeout and then answered 503.
"""

from __future__ import annotations

import asyncio

import httpx
from sqlmodel import Session, select
from temporalio.testing import WorkflowEnvironment

from suifang.core.api import create_app
from suifang.core.db import create_db_engine, pool_capacity
from suifang.core.models import Ticket
from suifang.core.runtime import Runtime
from suifang.core.security.auth import Role, create_user, issue_token
from suifang.workflows.intake import DischargeIn, register_discharge


async def test_a_burst_twice_the_connection_pool_is_served(
    runtime: Runtime, journey_worker: WorkflowEnvironment
) -> None:
    now = await journey_worker.get_current_time()
    enrolled = await register_discharge(
        runtime,
        DischargeIn.model_validate(
            {
                "pathway": "general",
                "patient": {"external_id": "P-burst", "name": "李娜"},
                "encounter": {
                    "external_id": "V-burst",
                    "department": "cardiology",
                    "discharged_at": now.isoformat(),
                },
            }
        ),
    )
    with Session(runtime.engine) as session:
        user = create_user(session, username="desk", display_name="Desk", role=Role.ADMIN)
        token, _ = issue_token(session, user, name="burst")
    # The API as its own process has it: its own connection pool, the worker's apart.
    api_runtime = Runtime(
        settings=runtime.settings,
        engine=create_db_engine(runtime.settings.database_url),
        plugins=runtime.plugins,
    ).with_client(journey_worker.client)
    capacity = pool_capacity(api_runtime.engine)
    assert capacity is not None
    burst = capacity * 2
    app = create_app(api_runtime)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://suifang.test",
        headers={"Authorization": f"Bearer {token}"},
        timeout=120,
    ) as api:
        responses = await asyncio.gather(
            *(
                api.post(
                    "/tickets",
                    json={
                        "patient_id": enrolled.patient_id,
                        "text": f"请问伤口换药要去哪个科室?(第{number}次咨询)",
                        "idempotency_key": f"burst-{number}",
                    },
                )
                for number in range(burst)
            )
        )
    api_runtime.engine.dispose()
    assert [r.status_code for r in responses] == [201] * burst, responses[0].text
    with Session(runtime.engine) as session:
        opened = session.exec(
            select(Ticket.id).where(Ticket.patient_id == enrolled.patient_id)
        ).all()
    assert sorted(opened) == sorted(r.json()["id"] for r in responses)
    assert len(set(opened)) == burst
