"""The data converter every client and worker uses: pydantic JSON, sealed by the codec."""

from __future__ import annotations

import dataclasses

from suifang.core.security.codec import ENCODING, PayloadEncryptionCodec
from suifang.core.security.crypto import Keyring, generate_key
from suifang.core.temporal import SharedPydanticPayloadConverter, data_converter
from suifang.workflows.journey_core import AnswerEvent


def _inner(converter: object) -> object:
    """The payload converter the SDK's transfer-type wrapper delegates to."""
    return getattr(converter, "_inner_payload_converter", converter)


async def test_the_sdk_s_per_activation_copies_share_one_payload_converter() -> None:
    codec = PayloadEncryptionCodec(Keyring((generate_key(),), b"b" * 32))
    converter = data_converter(codec)
    # The SDK copies the data converter for every workflow activation this way.
    copy = dataclasses.replace(converter)
    assert copy is not converter
    assert _inner(copy.payload_converter) is _inner(converter.payload_converter)
    assert isinstance(_inner(copy.payload_converter), SharedPydanticPayloadConverter)

    answer = AnswerEvent(answers={"pain": 3, "fever": False}, touchpoint_key="day1")
    [sealed] = await copy.encode([answer])
    assert sealed.metadata["encoding"] == ENCODING
    assert b"pain" not in sealed.data
    [decoded] = await converter.decode([sealed], [AnswerEvent])
    assert decoded == answer
