"""A burst of requests beyond the database connection pool is served, never stalled, and
a slow statement holds up only its own request.

Route handlers once used the database synchronously from the event loop: a burst larger
than the pool (the hospital system re-sending its discharges after an outage) blocked the
loop on a connection checkout, stalled every request for the pool timeout and then answered
503; a statement waiting on a lock stopped the whole API with it. Database work now runs in
threads, as many as the pool has connections.
"""

from __future__ import annotations

import asyncio
import time

import httpx
from sqlalchemy import text
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


async def test_the_api_answers_while_a_request_waits_on_a_slow_statement(
    runtime: Runtime, journey_worker: WorkflowEnvironment
) -> None:
    """One request's statement waits behind another connection's lock; meanwhile the API
    still answers others at once, and the slow request completes once the lock goes."""
    with Session(runtime.engine) as session:
        user = create_user(session, username="desk", display_name="Desk", role=Role.ADMIN)
        token, _ = issue_token(session, user, name="slow")
    now = await journey_worker.get_current_time()
    enrolled = await register_discharge(
        runtime,
        DischargeIn.model_validate(
            {
                "pathway": "general",
                "patient": {"external_id": "P-slow", "name": "王芳"},
                "encounter": {
                    "external_id": "V-slow",
                    "department": "cardiology",
                    "discharged_at": now.isoformat(),
                },
            }
        ),
    )
    api_runtime = Runtime(
        settings=runtime.settings,
        engine=create_db_engine(runtime.settings.database_url),
        plugins=runtime.plugins,
    ).with_client(journey_worker.client)
    locker = create_db_engine(runtime.settings.database_url)
    lock = locker.connect()
    # The ticket route reads the patient, then writes: both wait behind this lock.
    if locker.dialect.name == "sqlite":
        lock.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        lock.begin()
        lock.execute(text("LOCK TABLE patient IN ACCESS EXCLUSIVE MODE"))
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(api_runtime)),
            base_url="http://suifang.test",
            headers={"Authorization": f"Bearer {token}"},
            timeout=120,
        ) as api:
            started = time.monotonic()
            slow = asyncio.ensure_future(
                api.post(
                    "/tickets",
                    json={"patient_id": enrolled.patient_id, "text": "伤口有点渗液,要紧吗?"},
                )
            )
            await asyncio.sleep(0.5)
            health = await api.get("/healthz")
            answered_after = time.monotonic() - started
            assert not slow.done()
            if locker.dialect.name == "sqlite":
                lock.exec_driver_sql("ROLLBACK")
            else:
                lock.rollback()
            lock.close()
            created = await slow
    finally:
        lock.close()
        locker.dispose()
        api_runtime.engine.dispose()
    assert health.status_code == 200, health.text
    assert answered_after < 2.0  # while the ticket request still waited (asserted above)
    assert created.status_code == 201, created.text
