"""suifang's test kit: test a plugin through the real platform, with no source reading.

A pytest plugin, loaded wherever suifang is installed (the ``pytest11`` entry point
``suifang``): nothing to add to a ``conftest.py``. Async tests need pytest-asyncio in auto mode
with a session-wide event loop (the worker and the Temporal test server live for the whole
session)::

    [tool.pytest.ini_options]
    asyncio_mode = "auto"
    asyncio_default_fixture_loop_scope = "session"
    asyncio_default_test_loop_scope = "session"

Fixtures
    ``suifang_runtime``
        A platform on a fresh SQLite database with every *installed* plugin loaded (entry
        points: yours and the built-ins) and every send recorded.
    ``suifang_plugins``
        Override it to add plugins that are not installed: ``[("my-sms", my_sms_module)]``.
    ``suifang_worker``
        suifang's real worker (every workflow and activity) serving ``suifang_runtime`` on the
        Temporal time-skipping test server; yields the ``WorkflowEnvironment``.
    ``enroll``
        ``await enroll(pathway="pci", department="cardiology", contacts=[...],
        preferred_channels=[...])`` registers a discharge as the hospital's feed would and
        returns an :class:`EnrolledPatient`, whose :meth:`~EnrolledPatient.next_touchpoint`
        skips the clock to the next scheduled message.
    ``sent``
        :class:`SentMessages`: what each channel's ``send`` was given, and what it answered.
    ``api``
        An ``httpx.AsyncClient`` on suifang's HTTP API in-process, as an administrator: post
        a provider's webhook to ``/channels/<name>/inbound``, read ``/tickets``,
        ``/messages/{id}``, ``/patients/{id}/contacts``…

A provider fake runs as a real HTTP server with
:class:`suifang.testing.provider_server.ProviderServer` (point the channel's URL setting at it).

For one channel class against a fake of its provider, subclass
:class:`suifang.testing.channel_contract.ChannelContract`. suifang's own fixtures
(``runtime``, ``journey_worker``, ``time_skipping_env``, ``dev_server_env``) come with the kit.
"""

from __future__ import annotations

import pytest

# Before the modules below are imported: their assertions then explain a failure as the
# test's own do (pytest rewrites only what is registered before it is imported).
pytest.register_assert_rewrite(
    "suifang.core.testing", "suifang.workflows.testing", "suifang.testing.channel_contract"
)

import asyncio
import dataclasses
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
from sqlmodel import Session
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from suifang.core.api import create_app
from suifang.core.channel_directory import ChannelDirectory
from suifang.core.channels import Channel, DeliveryReceipt, OutboundMessage
from suifang.core.config import load_settings
from suifang.core.db import create_db_engine
from suifang.core.plugins import Plugins
from suifang.core.runtime import Runtime
from suifang.core.security.auth import Role, create_user, issue_token
from suifang.core.seed import prepare_database
from suifang.core.testing import serving
from suifang.workflows.intake import DischargeIn, EnrollmentOut, register_discharge
from suifang.workflows.journey import PatientJourneyWorkflow
from suifang.workflows.journey_core import JourneyProgress

__all__ = [
    "EnrolledPatient",
    "RecordingChannels",
    "SentMessage",
    "SentMessages",
    "api",
    "enroll",
    "sent",
    "suifang_plugins",
    "suifang_runtime",
    "suifang_worker",
]

# The kernel's fixtures (databases, keys, Temporal servers) and the worker's factory.
pytest_plugins = ["suifang.core.testing", "suifang.workflows.testing"]


@dataclasses.dataclass(frozen=True)
class SentMessage:
    """One call of a channel's ``send``: what it was given and how it ended."""

    channel: str
    """The channel's name."""
    message: OutboundMessage
    """What the platform asked the channel to send."""
    receipt: DeliveryReceipt | None
    """What ``send`` returned; None when it raised."""
    error: BaseException | None
    """What ``send`` raised (a ``ChannelError``, or the plugin's bug); None when it returned."""


class SentMessages:
    """Every ``send`` the platform made in a test, in order."""

    def __init__(self) -> None:
        self.calls: list[SentMessage] = []
        """Each call, in the order the sends finished."""

    def to(self, channel: str) -> list[SentMessage]:
        """The calls of one channel."""
        return [call for call in self.calls if call.channel == channel]

    def accepted(self, channel: str) -> list[OutboundMessage]:
        """What one channel accepted (``send`` returned a receipt)."""
        return [call.message for call in self.to(channel) if call.receipt is not None]

    async def wait_for(
        self, channel: str, *, count: int = 1, seconds: float = 10.0
    ) -> list[SentMessage]:
        """Until ``channel`` has been called ``count`` times (real seconds: activities run
        concurrently with the test); its calls."""
        deadline = asyncio.get_running_loop().time() + seconds
        while len(self.to(channel)) < count:
            if asyncio.get_running_loop().time() > deadline:
                seen = {call.channel for call in self.calls}
                raise AssertionError(
                    f"{channel!r} was called {len(self.to(channel))} times, not {count}, "
                    f"within {seconds}s (channels called: {sorted(seen) or 'none'})"
                )
            await asyncio.sleep(0.05)
        return self.to(channel)


class RecordingChannels(ChannelDirectory):
    """The platform's channel directory, recording each instance's sends in a
    :class:`SentMessages` (the channels themselves run unchanged)."""

    def __init__(self, plugins: Plugins, sent: SentMessages) -> None:
        super().__init__(plugins)
        self.sent = sent
        """Where the sends are recorded."""
        self._recorded: set[int] = set()

    def get(self, name: str) -> Channel | None:
        """The channel instance, as the platform's directory gives it, its sends recorded."""
        channel = super().get(name)
        if channel is not None and id(channel) not in self._recorded:
            self._recorded.add(id(channel))
            channel.send = self._recording(name, channel.send)  # type: ignore[method-assign]
        return channel

    def _recording(
        self, name: str, send: Callable[[OutboundMessage], Awaitable[DeliveryReceipt]]
    ) -> Callable[[OutboundMessage], Awaitable[DeliveryReceipt]]:
        async def recorded(message: OutboundMessage) -> DeliveryReceipt:
            try:
                receipt = await send(message)
            except BaseException as exc:
                self.sent.calls.append(SentMessage(name, message, None, exc))
                raise
            self.sent.calls.append(SentMessage(name, message, receipt, None))
            return receipt

        return recorded


@dataclasses.dataclass
class EnrolledPatient:
    """A patient enrolled by ``enroll``, on a journey running on the test server."""

    enrollment: EnrollmentOut
    """What intake answered: ids, pathway, the schedule."""
    env: WorkflowEnvironment
    """The time-skipping environment the journey runs on."""

    @property
    def handle(self) -> WorkflowHandle[Any, Any]:
        """The journey workflow's handle (query, signal, update)."""
        return self.env.client.get_workflow_handle(self.enrollment.workflow_id)

    async def progress(self) -> JourneyProgress:
        """The journey's progress query: status, open and next touchpoints, counts."""
        return await self.handle.query(PatientJourneyWorkflow.progress)

    async def next_touchpoint(self, *, seconds: float = 10.0) -> str | None:
        """Skip the clock to the next scheduled touchpoint and wait until it is open (its
        message sent or tried); its key, or None when the journey has nothing left."""
        progress = await self.progress()
        if progress.next_due_at is None or progress.next_touchpoint is None:
            return None
        key = progress.next_touchpoint
        now = await self.env.get_current_time()
        await self.env.sleep(
            max(progress.next_due_at - now, dt.timedelta(0)) + dt.timedelta(minutes=1)
        )
        deadline = asyncio.get_running_loop().time() + seconds
        while True:
            state = await self.progress()
            if key in state.open_touchpoints or state.sent > progress.sent:
                return key
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"touchpoint {key!r} did not open within {seconds}s")
            await asyncio.sleep(0.05)


@pytest.fixture
def sent() -> SentMessages:
    """What each channel was asked to send in this test (empty at the start)."""
    return SentMessages()


@pytest.fixture
def suifang_plugins() -> list[tuple[str, object]]:
    """Plugins to load besides the installed ones, as ``(name, module)`` pairs: override it in
    a ``conftest.py`` or test module to test a plugin before it is packaged. Default: none."""
    return []


@pytest.fixture
def suifang_runtime(
    tmp_path: Path, sent: SentMessages, suifang_plugins: list[tuple[str, object]]
) -> Iterator[Runtime]:
    """A platform with every installed plugin (entry points) and ``suifang_plugins``, on a
    fresh SQLite database migrated and seeded as ``suifang up`` does, its sends recorded in
    ``sent``."""
    database_url = f"sqlite:///{tmp_path / 'app.db'}"
    settings = load_settings(
        data_dir=tmp_path / "var",
        database_url=database_url,
        task_queue=f"kit-{uuid.uuid4().hex[:10]}",
    )
    plugins = Plugins.load(disabled=settings.disabled_plugins, extra=suifang_plugins)
    runtime = Runtime(settings=settings, engine=create_db_engine(database_url), plugins=plugins)
    runtime.use_channels(RecordingChannels(plugins, sent))
    prepare_database(runtime.engine)
    yield runtime
    runtime.close()


@pytest.fixture
async def suifang_worker(
    suifang_runtime: Runtime,
    time_skipping_env: WorkflowEnvironment,
    _session_worker: Any,
) -> AsyncIterator[WorkflowEnvironment]:
    """suifang's real worker serving ``suifang_runtime`` on the time-skipping server."""
    async with serving(suifang_runtime, time_skipping_env, _session_worker) as env:
        yield env
    await suifang_runtime.channels.aclose()


@pytest.fixture
def enroll(
    suifang_runtime: Runtime, suifang_worker: WorkflowEnvironment
) -> Callable[..., Awaitable[EnrolledPatient]]:
    """``await enroll(...)``: a discharge registered as the hospital's feed sends it."""

    async def enroll(
        *,
        pathway: str = "pci",
        department: str = "cardiology",
        contacts: list[dict[str, str]] | None = None,
        preferred_channels: list[str] | None = None,
        locale: str = "zh-CN",
        **patient: Any,
    ) -> EnrolledPatient:
        """Enroll a new patient discharged now on ``pathway``; ``contacts`` as intake takes
        them (``{"system": "dingtalk_userid", "value": "…"}``); other keyword arguments are
        intake's patient fields (``phone``, ``email``, ``name``…)."""
        now = await suifang_worker.get_current_time()
        number = uuid.uuid4().hex[:8]
        discharge = DischargeIn.model_validate(
            {
                "pathway": pathway,
                "patient": {
                    "external_id": f"KIT-{number}",
                    "name": "测试患者",
                    "locale": locale,
                    "contacts": contacts or [],
                    "preferred_channels": preferred_channels or [],
                    **patient,
                },
                "encounter": {
                    "external_id": f"KIT-V-{number}",
                    "department": department,
                    "discharged_at": now.isoformat(),
                },
            }
        )
        enrollment = await register_discharge(suifang_runtime, discharge)
        return EnrolledPatient(enrollment, suifang_worker)

    return enroll


@pytest.fixture
async def api(suifang_runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    """suifang's HTTP API in-process (no server), with an administrator's bearer token."""
    with Session(suifang_runtime.engine) as session:
        admin = create_user(session, username="kit-admin", display_name="Test kit", role=Role.ADMIN)
        token, _ = issue_token(session, admin, name="test kit")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(suifang_runtime)),
        base_url="http://suifang.test",
        headers={"Authorization": f"Bearer {token}"},
    ) as client:
        yield client
