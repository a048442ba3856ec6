"""A Temporal payload codec that encrypts every workflow payload, so histories hold no PHI.

Payloads (workflow inputs, activity arguments and results, signals, queries) are serialised
by the pydantic converter, then encrypted here with the keyring's Fernet keys (the first
encrypts; all decrypt, so keys rotate like the database's). Only processes with the keys —
workers, the API, the CLI — can read them; the Temporal server and its database see
ciphertext. ``POST /codec/decode`` is the codec-server decode path for authorised operators.
"""

from __future__ import annotations

from collections.abc import Sequence

from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

from suifang.core.security.crypto import Keyring

__all__ = ["ENCODING", "PayloadEncryptionCodec"]

ENCODING = b"binary/encrypted"


class PayloadEncryptionCodec(PayloadCodec):
    def __init__(self, keyring: Keyring) -> None:
        self.fernet = keyring.fernet

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [
            Payload(
                metadata={"encoding": ENCODING},
                data=self.fernet.encrypt(payload.SerializeToString()),
            )
            for payload in payloads
        ]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        decoded = []
        for payload in payloads:
            if payload.metadata.get("encoding") != ENCODING:
                decoded.append(payload)  # written before encryption was on: readable as is
                continue
            decoded.append(Payload.FromString(self.fernet.decrypt(payload.data)))
        return decoded
