"""The benchmarks' plugin: the ``bench-four`` pathway and a channel whose patient answers at once.

Registered like any plugin (``Plugins.load(extra=[("bench", bench_plugin)])``). The
``bench`` channel is the outbox channel (no address, nothing leaves the process) without a
rate limit — a provider's rate limit is a deliberate throttle, not platform overhead — that
also tells the benchmark's simulated patients that a message reached them, so they can
answer the way a patient replying on their phone would: through the ``answer`` signal.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

from pydantic import Field

from suifang.core.channels import (
    AddressKind,
    Channel,
    ChannelConfig,
    DeliveryReceipt,
    OutboundMessage,
)
from suifang.core.hooks import hookimpl
from suifang.core.pathways import PathwayRegistry

PATHWAY_FILE = Path(__file__).resolve().parent / "pathways" / "bench-four.yaml"
PATHWAY_ID = "bench-four"

listeners: list[Callable[[OutboundMessage], None]] = []
"""Called with every message the ``bench`` channel delivers (the simulated patients)."""


class BenchChannelConfig(ChannelConfig):
    rate_per_second: float = Field(1_000_000.0, gt=0)


class BenchPatientChannel(Channel):
    name: ClassVar[str] = "bench"
    address_kind: ClassVar[AddressKind] = AddressKind.NONE
    config_model: ClassVar[type[ChannelConfig]] = BenchChannelConfig

    async def send(self, message: OutboundMessage) -> DeliveryReceipt:
        for listener in listeners:
            listener(message)
        return DeliveryReceipt(
            status="delivered", provider_message_id=f"bench:{message.idempotency_key}"
        )


@hookimpl
def suifang_register_channels(register):  # type: ignore[no-untyped-def]
    register(BenchPatientChannel)


@hookimpl
def suifang_register_pathways(register: PathwayRegistry) -> None:
    register(PATHWAY_FILE)
