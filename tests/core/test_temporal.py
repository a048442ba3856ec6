"""The data converter every client and worker uses: pydantic JSON, sealed by the codec."""

from __future__ import annotations

import dataclasses

from suifang.core.security.codec import ENCODING, PayloadEncryptionCodec
from suifang.core.security.crypto import Keyring, generate_key
from suifang.core.temporal import SharedPydanticPayloadConverter, data_converter
from suifang.workflows.journey_commands import AnswerEvent


async def test_the_sdk_s_per_activation_copies_convert_with_the_shared_encoders() -> None:
    codec = PayloadEncryptionCodec(Keyring((generate_key(),), b"b" * 32))
    converter = data_converter(codec)
    assert converter.payload_converter_class is SharedPydanticPayloadConverter
    # Each converter the SDK builds reuses one set of encoders (and their type adapters).
    first, second = SharedPydanticPayloadConverter(), SharedPydanticPayloadConverter()
    assert first.converters[b"json/plain"] is second.converters[b"json/plain"]

    # The SDK copies the data converter for every workflow activation this way.
    copy = dataclasses.replace(converter)
    answer = AnswerEvent(answers={"pain": 3, "fever": False}, touchpoint_key="day1")
    [sealed] = await copy.encode([answer])
    assert sealed.metadata["encoding"] == ENCODING
    assert b"pain" not in sealed.data
    [decoded] = await converter.decode([sealed], [AnswerEvent])
    assert decoded == answer
