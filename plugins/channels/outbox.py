"""The ``outbox`` channel: the embedded default, delivering into suifang's own message store.

Every outbound message is already written to the message ledger by the send activity; the
outbox "delivers" by marking it delivered there, so a newcomer reads every message with
``suifang outbox`` (or ``GET /outbox``) without any provider account.
"""

from __future__ import annotations

from typing import ClassVar

from suifang.core.channels import (
    AddressKind,
    Channel,
    DeliveryReceipt,
    OutboundMessage,
)
from suifang.core.hooks import hookimpl


class OutboxChannel(Channel):
    name: ClassVar[str] = "outbox"
    reaches_staff: ClassVar[bool] = True
    address_kind: ClassVar[AddressKind] = AddressKind.NONE

    async def send(self, message: OutboundMessage) -> DeliveryReceipt:
        return DeliveryReceipt(
            status="delivered", provider_message_id=f"outbox:{message.idempotency_key}"
        )


@hookimpl
def suifang_register_channels(register):  # type: ignore[no-untyped-def]
    register(OutboxChannel)
