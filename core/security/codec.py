"""A Temporal payload codec that encrypts every workflow payload, so histories hold no PHI.

Payloads (workflow inputs, activity arguments and results, signals, queries) are serialised
by the pydantic converter, then encrypted here with AES-256-GCM, the way Temporal's own
encryption sample does: the ciphertext is binary (no base64 — every byte of a history is
stored, sent and read by the server), tagged with the id of the key that made it. The keys
are derived (HKDF-SHA256) from the keyring's keys, so ``SUIFANG_ENCRYPTION_KEYS`` rotates them
too: the first encrypts, any whose id a payload names decrypts it. Only processes with the
keys — workers, the API, the CLI — can read payloads; the Temporal server and its database
see ciphertext. ``POST /codec/decode`` is the codec-server decode path for authorised
operators.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

from suifang.core.security.crypto import Keyring

__all__ = ["ENCODING", "PayloadEncryptionCodec", "UndecryptablePayload"]

ENCODING = b"binary/encrypted-aes-256-gcm"
KEY_ID = "encryption-key-id"
_NONCE_BYTES = 12


class UndecryptablePayload(ValueError):
    """A payload no configured key decrypts (a retired key, or a tampered payload)."""


class PayloadEncryptionCodec(PayloadCodec):
    def __init__(self, keyring: Keyring) -> None:
        self.keyring = keyring
        self.key_id, self.cipher = keyring.payload_ciphers[0]
        self.ciphers = dict(keyring.payload_ciphers)

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        encoded = []
        for payload in payloads:
            nonce = os.urandom(_NONCE_BYTES)
            # The key id is authenticated with the data: a payload cannot be relabelled.
            sealed = self.cipher.encrypt(nonce, payload.SerializeToString(), self.key_id)
            encoded.append(
                Payload(
                    metadata={"encoding": ENCODING, KEY_ID: self.key_id},
                    data=nonce + sealed,
                )
            )
        return encoded

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        decoded = []
        for payload in payloads:
            encoding = payload.metadata.get("encoding")
            if encoding == ENCODING:
                decoded.append(Payload.FromString(self._open(payload)))
            else:
                decoded.append(payload)  # not sealed by this codec: nothing to open
        return decoded

    def _open(self, payload: Payload) -> bytes:
        key_id = payload.metadata.get(KEY_ID, b"")
        cipher = self.ciphers.get(key_id)
        if cipher is None:
            raise UndecryptablePayload(
                f"payload encrypted with key {key_id.decode(errors='replace')!r}, which is not "
                "among SUIFANG_ENCRYPTION_KEYS (was it removed while workflows still used it?)"
            )
        nonce, sealed = payload.data[:_NONCE_BYTES], payload.data[_NONCE_BYTES:]
        try:
            return cipher.decrypt(nonce, sealed, key_id)
        except InvalidTag:
            raise UndecryptablePayload(
                "payload failed authentication: it was altered or cut short"
            ) from None
