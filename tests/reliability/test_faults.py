"""The fault suite: no lost or duplicated message, reply or ticket while processes die.

A real Temporal dev server (file database), a real ``suifang worker`` and ``suifang api`` as
separate processes on a file SQLite app database, the fault drill pathway
(``fault_pathway.yaml``: three questionnaires a pathway day apart, run at a pathway day per
second), and simulated people around them: the hospital system enrolling discharges through
the API, patients answering every message — app users through the signed webhook inbound
endpoint, the others through the journey answer API — staff resolving every ticket that
abnormal answers open, and patients scoring their satisfaction, which closes the ticket.

Meanwhile the worker is SIGKILLed several times at seeded random points (the first one while
a send is in flight at the provider) and restarted, and the Temporal server is SIGKILLed and
restarted once on the same database file and port. Afterwards the message ledger is compared
with what the channels delivered, every reply with what the journeys recorded, every ticket
with its SLA outcome. Then the API process is SIGKILLed while requests are in flight, and the
clients' retries (same ``Idempotency-Key``) must create no second patient, enrollment or
ticket.

CI runs 100 journeys. The large version (see docs/reliability.md)::

    SUIFANG_FAULT_JOURNEYS=1000 .venv/bin/pytest tests/reliability -m faults -s

``SUIFANG_FAULT_SEED`` changes the seeded kill points and answers. The counts are printed as
one ``fault suite:`` line (shown with ``-s``).
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import dataclasses
import datetime as dt
import http.server
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine
from sqlmodel import Session, col, select
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.worker import Replayer

from suifang.core.config import Settings, load_settings
from suifang.core.db import create_db_engine
from suifang.core.embedded import DevServer, _die_with_parent
from suifang.core.models import (
    Answer,
    DeliveryAttempt,
    Department,
    Enrollment,
    InboundRecord,
    Message,
    Patient,
    Ticket,
    TicketEvent,
    TouchpointRecord,
)
from suifang.core.security.auth import Role, Scope, create_user, issue_token
from suifang.core.security.codec import PayloadEncryptionCodec
from suifang.core.security.crypto import (
    Keyring,
    configure_keyring,
    generate_key,
    get_keyring,
    identifier_index,
)
from suifang.core.security.signing import SIGNATURE_HEADER, WebhookSigner
from suifang.core.seed import prepare_database
from suifang.core.temporal import connect_client
from suifang.workflows.worker import WORKFLOWS

JOURNEYS = int(os.environ.get("SUIFANG_FAULT_JOURNEYS", "100"))
SEED = int(os.environ.get("SUIFANG_FAULT_SEED", "20260801"))
WORKER_KILLS = max(3, JOURNEYS // 100)
API_KILL_ROUNDS = max(3, JOURNEYS // 250)
TOUCHPOINTS = ("day15", "day16", "day17")
TIME_SCALE = 86_400  # a pathway day per real second
ABNORMAL_SHARE = 0.15  # answers with chest pain: each opens a ticket
LAUNCHER = Path(__file__).resolve().with_name("fault_process.py")
WEBHOOK_SECRET = "fault-suite-webhook-secret-2026"
DONE = ("accepted", "delivered", "read", "answered")

pytestmark = [
    pytest.mark.faults,
    pytest.mark.devserver,
    pytest.mark.slow,
    pytest.mark.timeout(300 + JOURNEYS * 3),
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --------------------------------------------------------------------------- the processes


class Process:
    """One suifang process the suite starts, SIGKILLs and starts again."""

    def __init__(self, role: str, env: dict[str, str], cwd: Path) -> None:
        self.role = role
        self.env = env
        self.cwd = cwd
        self.log = cwd / f"{role}.log"
        self.popen: subprocess.Popen[bytes] | None = None
        self.expected_down = False
        self.unexpected_exits = 0

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.popen = subprocess.Popen(
                [sys.executable, str(LAUNCHER), self.role],
                env=self.env, cwd=self.cwd, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, preexec_fn=_die_with_parent,
            )  # fmt: skip
        self.expected_down = False

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, exactly like a crash or the OOM killer."""
        self.expected_down = True
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait()

    def stop(self) -> None:
        self.expected_down = True
        if self.popen is not None and self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()

    def tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""


# --------------------------------------------------------------------------- the provider


@dataclasses.dataclass(frozen=True)
class Delivery:
    """A message as the patient sees it: its idempotency key and the channel it came by."""

    key: str
    channel: str


class Provider:
    """The hospital app's push service behind the ``webhook`` channel.

    It counts every POST per ``Idempotency-Key`` and hands each key to its patient once —
    the deduplication the webhook contract asks of a receiver. On request it holds the next
    POST open, so the suite can SIGKILL the worker while that send is in flight.
    """

    def __init__(self) -> None:
        self.posts: collections.Counter[str] = collections.Counter()
        self.bodies: dict[str, str] = {}
        self.changed_bodies: list[str] = []
        self.lock = threading.Lock()
        self.hold_next = threading.Event()
        self.held = threading.Event()
        self.release = threading.Event()
        self.server: http.server.ThreadingHTTPServer | None = None

    def start(self, deliver: Callable[[Delivery], None]) -> str:
        provider = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                key = self.headers.get("Idempotency-Key") or ""
                body = json.loads(raw)["body"]
                hold = False
                with provider.lock:
                    provider.posts[key] += 1
                    first = provider.posts[key] == 1
                    if first:
                        provider.bodies[key] = body
                    elif provider.bodies[key] != body:
                        provider.changed_bodies.append(key)
                    if provider.hold_next.is_set() and not provider.held.is_set():
                        provider.hold_next.clear()
                        provider.held.set()
                        hold = True
                if first:
                    deliver(Delivery(key, "webhook"))
                if hold:
                    provider.release.wait(timeout=60)
                answer = json.dumps({"message_id": f"push:{key}"}).encode()
                with contextlib.suppress(OSError):  # the sender may be dead by now
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}/push"

    def stop(self) -> None:
        self.release.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


# --------------------------------------------------------------------------- the platform


@dataclasses.dataclass
class Platform:
    settings: Settings
    engine: Engine
    server: DevServer
    worker: Process
    api: Process
    api_url: str
    provider: Provider
    deliveries: asyncio.Queue[Delivery]
    integrator_token: str
    staff_token: str
    home: Path
    counts: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)

    async def wait_api(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(base_url=self.api_url, timeout=5) as http:
            while time.monotonic() < deadline:
                assert self.api.alive, f"the API exited:\n{self.api.tail()}"
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get("/healthz")).status_code == 200:
                        return
                await asyncio.sleep(0.2)
        raise AssertionError(f"the API was not healthy within {timeout:.0f}s:\n{self.api.tail()}")

    async def restart_server(self, down_for: float) -> None:
        """SIGKILL the Temporal dev server, then start it on the same database file and port."""
        process, self.server.process = self.server.process, None
        assert process is not None
        process.send_signal(signal.SIGKILL)
        process.wait()
        await asyncio.sleep(down_for)
        self.server.start()
        await self.server.wait_healthy(timeout=90)
        self.counts["server_restarts"] += 1

    async def temporal(self) -> Client:
        return await connect_client(self.settings, codec=PayloadEncryptionCodec(get_keyring()))

    async def replay_everything(self) -> dict[str, str]:
        """Replay every workflow history the drill left, from the start, with today's code.

        A journey that can no longer be rebuilt shows only when a query or a restarted worker
        happens to replay it; replaying them all makes a divergence show on every run. Each
        failing history is saved (decoded payloads stay encrypted) under ``replay-failures/``
        to replay again under a debugger.
        """
        client = await self.temporal()
        replayer = Replayer(
            workflows=list(WORKFLOWS),
            data_converter=dataclasses.replace(client.data_converter),
            interceptors=[TracingInterceptor()],
        )
        failures: dict[str, str] = {}
        histories = client.list_workflows(
            f"TaskQueue = '{self.settings.task_queue}'"
        ).map_histories()
        async for history in histories:
            replayed = await replayer.replay_workflow(history, raise_on_replay_failure=False)
            if replayed.replay_failure is not None:
                failures[history.workflow_id] = str(replayed.replay_failure)
                saved = self.home / "replay-failures" / f"{history.workflow_id}.json"
                saved.parent.mkdir(parents=True, exist_ok=True)
                saved.write_text(history.to_json())
        self.counts["replayed_failures"] = len(failures)
        return failures


@pytest.fixture(scope="module")
async def platform(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Platform]:
    keep = os.environ.get("SUIFANG_FAULT_DIR")  # keep the databases and logs to look at
    home = Path(keep) if keep else tmp_path_factory.mktemp("faults")
    home.mkdir(parents=True, exist_ok=True)
    encryption_key = generate_key()
    blind_index_key = base64.urlsafe_b64encode(os.urandom(32)).decode()
    if keep:  # to decode the kept histories' payloads
        (home / "keys.json").write_text(json.dumps([encryption_key, blind_index_key]))
    previous_keyring = get_keyring()
    configure_keyring(Keyring.from_strings(encryption_key, blind_index_key))
    provider = Provider()
    loop = asyncio.get_running_loop()
    deliveries: asyncio.Queue[Delivery] = asyncio.Queue()
    webhook_url = provider.start(
        lambda delivery: loop.call_soon_threadsafe(deliveries.put_nowait, delivery)
    )
    ours = {
        "SUIFANG_DATA_DIR": str(home / "var"),
        "SUIFANG_DATABASE_URL": f"sqlite:///{home / 'var' / 'app.db'}",
        "SUIFANG_TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",
        "SUIFANG_TEMPORAL_UI_PORT": str(free_port()),
        "SUIFANG_API_PORT": str(free_port()),
        "SUIFANG_TASK_QUEUE": f"faults-{uuid.uuid4().hex[:8]}",
        "SUIFANG_ENCRYPTION_KEYS": encryption_key,
        "SUIFANG_BLIND_INDEX_KEY": blind_index_key,
        "SUIFANG_LOG_LEVEL": "WARNING",
        "SUIFANG_CHANNEL_WEBHOOK_URL": webhook_url,
        "SUIFANG_CHANNEL_WEBHOOK_SECRETS": WEBHOOK_SECRET,
        "SUIFANG_CHANNEL_WEBHOOK_RATE_PER_SECOND": "1000",
        "SUIFANG_CHANNEL_OUTBOX_RATE_PER_SECOND": "1000",
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUIFANG_")} | ours
    settings = load_settings(
        data_dir=home / "var",
        database_url=ours["SUIFANG_DATABASE_URL"],
        temporal_address=ours["SUIFANG_TEMPORAL_ADDRESS"],
        temporal_ui_port=int(ours["SUIFANG_TEMPORAL_UI_PORT"]),
        task_queue=ours["SUIFANG_TASK_QUEUE"],
    )
    engine = create_db_engine(settings.database_url)
    prepare_database(engine)  # once, before two processes would both migrate a fresh file
    with Session(engine) as session:
        his = create_user(session, username="his", display_name="HIS", role=Role.INTEGRATOR)
        # The HIS and patient-app feeds: scoped to every department the drill's tickets can
        # be routed to, and to the routes those feeds call.
        integrator_token, _ = issue_token(
            session,
            his,
            name="his",
            departments=list(session.exec(select(Department.code)).all()),
            scopes=[Scope.INTAKE, Scope.ANSWERS, Scope.TICKETS],
        )
        admin = create_user(session, username="duty", display_name="Duty nurse", role=Role.ADMIN)
        staff_token, _ = issue_token(session, admin, name="duty")
    server = DevServer(settings)
    worker = Process("worker", env, home)
    api = Process("api", env, home)
    platform = Platform(
        settings=settings,
        engine=engine,
        server=server,
        worker=worker,
        api=api,
        api_url=f"http://127.0.0.1:{ours['SUIFANG_API_PORT']}",
        provider=provider,
        deliveries=deliveries,
        integrator_token=integrator_token,
        staff_token=staff_token,
        home=home,
    )
    try:
        server.start()
        await server.wait_healthy(timeout=90)
        worker.start()
        api.start()
        await platform.wait_api()
        yield platform
    finally:
        api.stop()
        worker.stop()
        server.stop()
        provider.stop()
        engine.dispose()
        configure_keyring(previous_keyring)
        if platform.counts:
            print("\nfault suite: " + " ".join(f"{k}={v}" for k, v in platform.counts.items()))


# --------------------------------------------------------------------------- people


def discharge(external_id: str, *, app: bool, time_scale: float = TIME_SCALE) -> dict[str, Any]:
    """A discharge as the hospital system sends it; app users get their messages by push."""
    patient: dict[str, Any] = {"external_id": external_id, "name": f"患者{external_id[-5:]}"}
    if app:
        patient |= {"app_user_id": f"app-{external_id}", "preferred_channels": ["webhook"]}
    return {
        "patient": {**patient, "sex": "female", "birth_date": "1958-03-02"},
        "encounter": {
            "external_id": f"V-{external_id}",
            "department": "cardiology",
            "discharged_at": dt.datetime.now(dt.UTC).isoformat(),
        },
        "pathway": "fault-drill",
        "time_scale": time_scale,
    }


def answers_for(external_id: str, touchpoint: str) -> dict[str, str]:
    """What this patient answers at this touchpoint: seeded, whatever the timing."""
    rng = random.Random(f"{SEED}:{external_id}:{touchpoint}")
    abnormal = rng.random() < ABNORMAL_SHARE
    return {"feeling": rng.choice(["better", "same"]), "chest_pain": "yes" if abnormal else "no"}


class Drill:
    """The people around the platform during the run, and the faults the suite injects."""

    def __init__(self, platform: Platform, journeys: int) -> None:
        self.platform = platform
        self.journeys = journeys
        self.rng = random.Random(SEED)
        self.signer = WebhookSigner.from_secrets([WEBHOOK_SECRET])
        self.http = httpx.AsyncClient(base_url=platform.api_url, timeout=60)
        self.counts = platform.counts
        self.enrolled: dict[str, int] = {}
        """external id → enrollment id"""
        self.seen: set[str] = set()
        self.touchpoints_delivered = 0
        self.replies: dict[tuple[int, str], dict[str, str]] = {}
        """(enrollment id, touchpoint) → the answers that reached the API"""
        self.resolving: set[int] = set()
        self.satisfied: set[int] = set()
        self.busy = asyncio.Semaphore(8)
        self.tasks: set[asyncio.Task[Any]] = set()

    # ----------------------------------------------------------------- HTTP with retries

    async def call(
        self, method: str, path: str, *, token: str | None, limit: float = 180, **kwargs: Any
    ) -> httpx.Response:
        """A client that retries what failed for want of a server (connection errors, 5xx)."""
        headers = dict(kwargs.pop("headers", {}))
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        deadline = time.monotonic() + limit
        while True:
            try:
                response = await self.http.request(method, path, headers=headers, **kwargs)
                if response.status_code < 500:
                    return response
                problem = f"HTTP {response.status_code}: {response.text[:200]}"
            except httpx.TransportError as exc:
                problem = f"{type(exc).__name__}"
            self.counts["client_retries"] += 1
            if time.monotonic() > deadline:
                raise AssertionError(f"{method} {path} kept failing: {problem}")
            await asyncio.sleep(0.5)

    def spawn(self, work: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # ----------------------------------------------------------------- the hospital system

    async def enroll(self) -> None:
        async def one(index: int) -> None:
            external_id = f"D{index:05d}"
            async with self.busy:
                response = await self.call(
                    "POST",
                    "/intake/discharges",
                    token=self.platform.integrator_token,
                    json=discharge(external_id, app=index % 2 == 0),
                    headers={"Idempotency-Key": f"drill-{external_id}"},
                )
            assert response.status_code in (200, 201), response.text
            self.enrolled[external_id] = response.json()["enrollment_id"]

        await asyncio.gather(*(one(index) for index in range(self.journeys)))

    # ----------------------------------------------------------------- patients

    async def patients(self) -> None:
        while True:
            delivery = await self.platform.deliveries.get()
            if delivery.key not in self.seen:
                self.seen.add(delivery.key)
                self.spawn(self.read(delivery))

    async def outbox_reader(self) -> None:
        """Patients without the app read their messages where the outbox channel put them."""
        while True:
            with Session(self.platform.engine) as session:
                keys = session.exec(
                    select(Message.idempotency_key).where(
                        Message.channel == "outbox", col(Message.status).in_(DONE)
                    )
                ).all()
            for key in keys:
                if key not in self.seen:
                    self.platform.deliveries.put_nowait(Delivery(key, "outbox"))
            await asyncio.sleep(0.3)

    async def read(self, delivery: Delivery) -> None:
        with Session(self.platform.engine) as session:
            message = session.exec(
                select(Message).where(Message.idempotency_key == delivery.key)
            ).one()
            patient = session.get(Patient, message.patient_id)
        assert patient is not None
        if message.kind == "touchpoint":
            self.touchpoints_delivered += 1
            assert message.enrollment_id is not None
            assert message.touchpoint_key is not None
            await self.answer(delivery, message, patient.external_id)
        elif message.kind == "ticket_satisfaction":
            assert message.ticket_id is not None
            await self.score(delivery, message.ticket_id, patient.external_id)

    async def answer(self, delivery: Delivery, message: Message, external_id: str) -> None:
        touchpoint = message.touchpoint_key or ""
        answers = answers_for(external_id, touchpoint)
        async with self.busy:
            if delivery.channel == "webhook":
                response = await self.signed_inbound(
                    {
                        "type": "reply",
                        "sender": f"app-{external_id}",
                        "answers": answers,
                        "in_reply_to": delivery.key,
                        "message_id": f"reply:{delivery.key}",
                    }
                )
            else:
                response = await self.call(
                    "POST",
                    f"/journeys/{message.enrollment_id}/answers",
                    token=self.platform.integrator_token,
                    json={"answers": answers, "touchpoint_key": touchpoint, "source": "patient"},
                )
        assert response.status_code in (200, 202), response.text
        self.replies[(message.enrollment_id or 0, touchpoint)] = answers
        self.counts[f"replies_{delivery.channel}"] += 1

    async def score(self, delivery: Delivery, ticket_id: int, external_id: str) -> None:
        async with self.busy:
            if delivery.channel == "webhook":
                response = await self.signed_inbound(
                    {
                        "type": "reply",
                        "sender": f"app-{external_id}",
                        "text": "5",
                        "in_reply_to": delivery.key,
                        "message_id": f"score:{delivery.key}",
                    }
                )
            else:
                response = await self.call(
                    "POST",
                    f"/tickets/{ticket_id}/patient-events",
                    token=self.platform.integrator_token,
                    json={"kind": "satisfaction", "score": 5},
                )
        assert response.status_code in (200, 202), response.text
        self.satisfied.add(ticket_id)

    async def signed_inbound(self, payload: dict[str, Any]) -> httpx.Response:
        """A patient's reply as the provider forwards it: signed with the shared secret."""
        body = json.dumps(payload, ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: self.signer.sign(body)}
        return await self.call(
            "POST", "/channels/webhook/inbound", token=None, content=body, headers=headers
        )

    # ----------------------------------------------------------------- staff

    async def staff(self) -> None:
        """The duty nurse resolves every ticket once it is routed to a department."""
        while True:
            with Session(self.platform.engine) as session:
                routed = session.exec(
                    select(Ticket.id).where(
                        col(Ticket.status).in_(["assigned", "in_progress"]),
                        col(Ticket.enrollment_id).is_not(None),
                    )
                ).all()
            for ticket_id in routed:
                if ticket_id is not None and ticket_id not in self.resolving:
                    self.resolving.add(ticket_id)
                    self.spawn(self.resolve(ticket_id))
            await asyncio.sleep(0.5)

    async def resolve(self, ticket_id: int) -> None:
        async with self.busy:
            response = await self.call(
                "POST",
                f"/tickets/{ticket_id}/actions",
                token=self.platform.staff_token,
                json={"action": "resolve", "text": "已电话联系患者,情况稳定"},
            )
        # A retry of a resolve that was applied before the connection broke is refused.
        assert response.status_code == 200 or "only an open ticket" in response.text, response.text

    # ----------------------------------------------------------------- faults

    async def inject_faults(self) -> None:
        expected = self.journeys * len(TOUCHPOINTS)
        kill_points = sorted(self.rng.uniform(0.05, 0.8) for _ in range(WORKER_KILLS))
        plan = [(point, "worker") for point in kill_points]
        plan.append((self.rng.uniform(0.3, 0.6), "server"))
        first_kill = True
        for point, fault in sorted(plan):
            while self.touchpoints_delivered < point * expected:
                await asyncio.sleep(0.05)
            if fault == "server":
                await self.platform.restart_server(down_for=self.rng.uniform(0.5, 2.0))
            elif first_kill:
                first_kill = False
                await self.kill_worker_mid_send()
            else:
                await asyncio.sleep(self.rng.uniform(0, 0.5))
                await self.kill_worker()

    async def kill_worker(self) -> None:
        self.platform.worker.kill()
        self.counts["worker_kills"] += 1
        await asyncio.sleep(self.rng.uniform(0.2, 1.5))
        self.platform.worker.start()

    async def kill_worker_mid_send(self) -> None:
        """Kill the worker while the provider holds a send open: the provider has the message,
        the ledger does not know yet — the retried send must not reach the patient twice."""
        provider = self.platform.provider
        provider.hold_next.set()
        deadline = time.monotonic() + 60
        while not provider.held.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert provider.held.is_set(), "no webhook send happened to hold"
        self.platform.worker.kill()
        self.counts["worker_kills"] += 1
        self.counts["worker_kills_mid_send"] += 1
        provider.release.set()
        await asyncio.sleep(self.rng.uniform(0.2, 1.5))
        self.platform.worker.start()

    # ----------------------------------------------------------------- the run

    def settled(self) -> bool:
        with Session(self.platform.engine) as session:
            completed = session.exec(
                select(Enrollment.id).where(
                    col(Enrollment.id).in_(list(self.enrolled.values())),
                    Enrollment.status == "completed",
                )
            ).all()
            open_tickets = session.exec(
                select(Ticket.id).where(
                    col(Ticket.enrollment_id).is_not(None), Ticket.status != "closed"
                )
            ).all()
            reopened = session.exec(select(Ticket.id).where(Ticket.status == "reopened")).all()
        # Nobody reopens a ticket in this drill: a reopened one took a reply for something else.
        assert not reopened, f"tickets {reopened} were reopened: {self.progress()}"
        return len(completed) == self.journeys and not open_tickets

    def watch(self, process: Process) -> None:
        """A process that died on its own is a finding; it is restarted so the run can end."""
        if not process.alive and not process.expected_down:
            process.unexpected_exits += 1
            self.counts[f"unexpected_{process.role}_exits"] += 1
            process.start()

    async def run(self, limit: float) -> None:
        helpers = [
            asyncio.ensure_future(job)
            for job in (self.patients(), self.outbox_reader(), self.staff())
        ]
        enrolling = asyncio.ensure_future(self.enroll())
        faults = asyncio.ensure_future(self.inject_faults())
        started = time.monotonic()
        deadline = started + limit
        next_report = started
        try:
            while not (enrolling.done() and faults.done() and self.settled()):
                if time.monotonic() >= next_report:  # shown with -s: how a long run goes
                    next_report += 15
                    print(f"[{time.monotonic() - started:5.0f}s] {self.progress(logs=False)}")
                for job in (enrolling, faults, *helpers):
                    if job.done() and job.exception() is not None:
                        raise job.exception()  # type: ignore[misc]
                self.watch(self.platform.worker)
                self.watch(self.platform.api)
                if time.monotonic() > deadline:
                    raise AssertionError(f"not settled within {limit:.0f}s: {self.progress()}")
                await asyncio.sleep(0.5)
            while self.tasks:  # replies still on their way (none is expected by now)
                await asyncio.gather(*self.tasks)
        finally:
            for job in (*helpers, enrolling, faults, *self.tasks):
                job.cancel()
            await asyncio.gather(*helpers, enrolling, faults, return_exceptions=True)
            await self.http.aclose()

    def progress(self, *, logs: bool = True) -> str:
        with Session(self.platform.engine) as session:
            statuses = collections.Counter(
                session.exec(
                    select(Enrollment.status).where(
                        col(Enrollment.id).in_(list(self.enrolled.values()))
                    )
                ).all()
            )
            tickets = collections.Counter(
                session.exec(
                    select(Ticket.status).where(col(Ticket.enrollment_id).is_not(None))
                ).all()
            )
        summary = (
            f"journeys {dict(statuses)} of {self.journeys}, tickets {dict(tickets)}, "
            f"enrolled {len(self.enrolled)}, touchpoints delivered {self.touchpoints_delivered}, "
            f"faults {dict(self.counts)}"
        )
        return f"{summary}; worker log:\n{self.platform.worker.tail()}" if logs else summary


# --------------------------------------------------------------------------- the tests


async def test_no_message_is_lost_or_sent_twice_while_workers_and_the_server_die(
    platform: Platform,
) -> None:
    drill = Drill(platform, JOURNEYS)
    started = time.monotonic()
    await drill.run(limit=240 + JOURNEYS * 1.5)
    platform.counts["journeys"] = JOURNEYS
    platform.counts["run_seconds"] = round(time.monotonic() - started)
    # Every history the drill left replays with the code that wrote it.
    assert await platform.replay_everything() == {}
    assert platform.counts["worker_kills"] == WORKER_KILLS
    assert platform.counts["server_restarts"] == 1

    with Session(platform.engine) as session:
        enrollments = session.exec(
            select(Enrollment).where(col(Enrollment.id).in_(list(drill.enrolled.values())))
        ).all()
        journey_ids = [e.id for e in enrollments]
        tickets = session.exec(
            select(Ticket).where(col(Ticket.enrollment_id).in_(journey_ids))
        ).all()
        ticket_ids = [t.id for t in tickets]
        messages = session.exec(
            select(Message).where(
                col(Message.enrollment_id).in_(journey_ids) | col(Message.ticket_id).in_(ticket_ids)
            )
        ).all()
        accepted = collections.Counter(
            session.exec(
                select(DeliveryAttempt.message_id).where(
                    col(DeliveryAttempt.message_id).in_([m.id for m in messages]),
                    DeliveryAttempt.outcome == "accepted",
                )
            ).all()
        )
        answers = session.exec(
            select(Answer).where(col(Answer.enrollment_id).in_(journey_ids))
        ).all()
        touchpoints = session.exec(
            select(TouchpointRecord).where(col(TouchpointRecord.enrollment_id).in_(journey_ids))
        ).all()
        inbound_answers = session.exec(
            select(InboundRecord).where(
                InboundRecord.kind == "answer", col(InboundRecord.enrollment_id).in_(journey_ids)
            )
        ).all()
        events = session.exec(
            select(TicketEvent.ticket_id, TicketEvent.action).where(
                col(TicketEvent.ticket_id).in_(ticket_ids)
            )
        ).all()
        routes = collections.Counter(ticket for ticket, action in events if action == "route")
        resolves = collections.Counter(ticket for ticket, action in events if action == "resolve")

    # Every journey completed — in the database and in Temporal.
    assert len(enrollments) == JOURNEYS
    assert {e.status for e in enrollments} == {"completed"}
    client = await platform.temporal()
    statuses = await asyncio.gather(
        *(client.get_workflow_handle(e.workflow_id).describe() for e in enrollments)
    )
    assert {s.status for s in statuses} == {WorkflowExecutionStatus.COMPLETED}

    # Every due message was sent exactly once: the ledger has one accepted delivery per key…
    duplicates = {m.idempotency_key: accepted[m.id] for m in messages if accepted[m.id] > 1}
    undelivered = [m.idempotency_key for m in messages if accepted[m.id] == 0]
    assert duplicates == {}
    assert undelivered == []
    assert {m.status for m in messages} <= {"delivered", "accepted"}
    due = {f"{e.workflow_id}:{t}" for e in enrollments for t in TOUCHPOINTS}
    sent = [m.idempotency_key for m in messages if m.kind == "touchpoint"]
    assert sorted(sent) == sorted(due)  # none missing, none extra, none twice
    ticket_notices = collections.Counter((m.ticket_id, m.kind) for m in messages if m.ticket_id)
    assert set(ticket_notices.values()) == {1}
    assert set(ticket_notices) == {
        (t, kind) for t in ticket_ids for kind in ("ticket_resolved", "ticket_satisfaction")
    }
    assert {m.kind for m in messages} == {"touchpoint", "ticket_resolved", "ticket_satisfaction"}
    # …and that is what the channels delivered: the outbox holds its messages once each, the
    # provider received every webhook message (a send cut off by a kill is sent again with
    # the same Idempotency-Key and the same text, and the provider hands it over once).
    provider = platform.provider
    webhook_keys = {m.idempotency_key for m in messages if m.channel == "webhook"}
    assert set(provider.posts) == webhook_keys
    assert provider.changed_bodies == []
    assert drill.seen >= {m.idempotency_key for m in messages}

    # Every reply reached its journey, once.
    assert len(drill.replies) == JOURNEYS * len(TOUCHPOINTS)
    recorded = collections.defaultdict(set)
    for row in answers:
        recorded[(row.enrollment_id, row.touchpoint_key)].add(row.event_key)
        assert (
            row.value
            == drill.replies[(row.enrollment_id, row.touchpoint_key or "")][row.question_id]
        )
    assert {key: len(events) for key, events in recorded.items()} == dict.fromkeys(drill.replies, 1)
    assert [t for t in touchpoints if t.status != "answered"] == []
    assert len(touchpoints) == JOURNEYS * len(TOUCHPOINTS)
    assert {e.points for e in enrollments} == {len(TOUCHPOINTS)}
    assert len(inbound_answers) == platform.counts["replies_webhook"]

    # Every abnormal answer opened one ticket, and every ticket has its SLA outcome.
    abnormal = collections.Counter(
        enrollment for (enrollment, _), a in drill.replies.items() if a["chest_pain"] == "yes"
    )
    assert collections.Counter(t.enrollment_id for t in tickets) == abnormal
    for ticket in tickets:
        assert ticket.status == "closed"
        assert ticket.satisfaction == 5
        # Met or breached, each clock's outcome is on the row: when it was met, when breached.
        assert ticket.first_response_at is not None
        assert ticket.resolved_at is not None
        breaches = (ticket.first_response_breached_at, ticket.resolution_breached_at)
        assert ticket.breached == any(breaches)
        platform.counts["sla_breached" if any(breaches) else "sla_met"] += 1
    assert routes == dict.fromkeys(ticket_ids, 1)  # the clocks started once, at routing
    assert resolves == dict.fromkeys(ticket_ids, 1)

    assert platform.worker.unexpected_exits == 0, platform.worker.tail()
    assert platform.api.unexpected_exits == 0, platform.api.tail()
    for name, value in {
        "messages": len(messages),
        "messages_webhook": len(webhook_keys),
        "messages_outbox": sum(m.channel == "outbox" for m in messages),
        "provider_resends": sum(provider.posts.values()) - len(provider.posts),
        "duplicates": len(duplicates),
        "missing": len(due - set(sent)),
        "tickets": len(tickets),
    }.items():
        platform.counts[name] = value  # zeros too: they are the point


async def test_retried_requests_create_nothing_twice_while_the_api_dies(
    platform: Platform,
) -> None:
    """SIGKILL the API with intakes and ticket creations in flight; the clients retry with the
    same ``Idempotency-Key`` until they get an answer, then once more later. Every key must
    map to one patient, one enrollment with one journey, one ticket with one workflow."""
    drill = Drill(platform, 0)
    rng = random.Random(SEED + 1)
    per_round = max(20, JOURNEYS // 5)
    retries_before = platform.counts["client_retries"]
    intakes: dict[str, dict[str, Any]] = {}
    tickets: dict[str, dict[str, Any]] = {}
    first_answers: dict[str, int] = {}
    """idempotency key → the id the first successful answer named"""

    async def intake(key: str) -> None:
        response = await drill.call(
            "POST",
            "/intake/discharges",
            token=platform.integrator_token,
            json=intakes[key],
            headers={"Idempotency-Key": key},
        )
        assert response.status_code in (200, 201), response.text
        first_answers.setdefault(key, response.json()["enrollment_id"])

    async def open_ticket(key: str) -> None:
        response = await drill.call(
            "POST",
            "/tickets",
            token=platform.staff_token,
            json=tickets[key],
            headers={"Idempotency-Key": key},
        )
        assert response.status_code in (200, 201), response.text
        first_answers.setdefault(key, response.json()["id"])

    try:
        # Patients the tickets are about, enrolled while the API is healthy. A time scale of
        # one keeps their journeys quiet: the first touchpoint is fifteen real days away.
        for index in range(4):
            key = f"api-kill-base-{index}"
            intakes[key] = discharge(f"K{index:05d}", app=False, time_scale=1)
            await intake(key)
        with Session(platform.engine) as session:
            patient_ids = [
                enrollment.patient_id
                for enrollment in session.exec(
                    select(Enrollment).where(col(Enrollment.id).in_(list(first_answers.values())))
                ).all()
            ]

        for round_number in range(API_KILL_ROUNDS):
            keys: list[str] = []
            for index in range(per_round):
                number = round_number * per_round + index
                if index % 2 == 0:
                    key = f"api-kill-intake-{number}"
                    intakes[key] = discharge(f"A{number:05d}", app=False, time_scale=1)
                else:
                    key = f"api-kill-ticket-{number}"
                    tickets[key] = {
                        "patient_id": rng.choice(patient_ids),
                        "text": f"请问出院后的药怎么吃?第{number}个问题",
                    }
                keys.append(key)
            calls = [
                asyncio.ensure_future(intake(key) if key in intakes else open_ticket(key))
                for key in keys
            ]
            # Kill once some requests have their answer and the rest are still in flight.
            answered_before_kill = rng.randint(1, per_round // 2)
            while sum(call.done() for call in calls) < answered_before_kill:
                await asyncio.sleep(0.005)
            platform.api.kill()
            platform.counts["api_kills"] += 1
            platform.counts["requests_in_flight_at_kill"] += sum(not c.done() for c in calls)
            await asyncio.sleep(rng.uniform(0.2, 1.0))
            platform.api.start()
            await platform.wait_api()
            await asyncio.gather(*calls)

        # Later, every client retries once more as if the answer had been lost on the way.
        answers_then = dict(first_answers)
        first_answers.clear()
        await asyncio.gather(
            *(intake(key) if key in intakes else open_ticket(key) for key in answers_then)
        )
        assert first_answers == answers_then
    finally:
        await drill.http.aclose()
    platform.counts["api_retries"] = platform.counts["client_retries"] - retries_before
    assert platform.counts["requests_in_flight_at_kill"] > 0
    assert platform.counts["api_retries"] > 0

    with Session(platform.engine) as session:
        patients = session.exec(
            select(Patient).where(
                col(Patient.external_id_hash).in_(
                    [
                        identifier_index("mrn", body["patient"]["external_id"])
                        for body in intakes.values()
                    ]
                )
            )
        ).all()
        enrollments = session.exec(
            select(Enrollment).where(col(Enrollment.patient_id).in_([p.id for p in patients]))
        ).all()
        # What the API opened (the journeys' and webhooks' tickets have keys of their own).
        made_tickets = session.exec(
            select(Ticket).where(col(Ticket.idempotency_key).startswith("api:"))
        ).all()
        every_journey = set(session.exec(select(Enrollment.workflow_id)).all())
        every_ticket = set(session.exec(select(Ticket.workflow_id)).all())

    # One row per key, and it is the one the clients were told about.
    assert sorted(e.id for e in enrollments) == sorted(answers_then[key] for key in intakes)
    assert sorted(t.id for t in made_tickets) == sorted(answers_then[key] for key in tickets)
    assert len(patients) == len(intakes)
    assert {e.status for e in enrollments} == {"active"}

    # Temporal runs exactly the workflows the database knows of: none missing, no orphan
    # started by a request the kill cut short.
    client = await platform.temporal()

    async def listed(workflow_type: str) -> set[str]:
        query = f"WorkflowType = '{workflow_type}'"
        return {w.id async for w in client.list_workflows(query)}

    deadline = time.monotonic() + 60
    while True:  # visibility lags a moment behind the workflows themselves
        journeys_listed = await listed("PatientJourney")
        tickets_listed = await listed("FeedbackTicket")
        if (journeys_listed, tickets_listed) == (every_journey, every_ticket):
            break
        if time.monotonic() > deadline:
            assert journeys_listed == every_journey
            assert tickets_listed == every_ticket
        await asyncio.sleep(1)
    described = await asyncio.gather(
        *(client.get_workflow_handle(e.workflow_id).describe() for e in enrollments)
    )
    assert {d.status for d in described} == {WorkflowExecutionStatus.RUNNING}
    platform.counts["api_keys"] = len(intakes) + len(tickets)
