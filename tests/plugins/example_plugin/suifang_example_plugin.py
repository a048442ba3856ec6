"""A third-party channel plugin, installed with pip and found through its entry point."""

from __future__ import annotations

from typing import ClassVar

from suifang.core.channels import AddressKind, Channel, DeliveryReceipt, OutboundMessage
from suifang.core.hooks import hookimpl


class PagerChannel(Channel):
    name: ClassVar[str] = "example-pager"
    address_kind: ClassVar[AddressKind] = AddressKind.PHONE

    async def send(self, message: OutboundMessage) -> DeliveryReceipt:
        return DeliveryReceipt(
            status="accepted", provider_message_id=f"pager-{message.idempotency_key}"
        )


@hookimpl
def suifang_register_channels(register):  # type: ignore[no-untyped-def]
    register(PagerChannel)
