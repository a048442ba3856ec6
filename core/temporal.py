"""The Temporal runtime: the one place that builds clients (data converter, tracing).

Workers are assembled in :mod:`suifang.workflows.worker`, which adds suifang's workflows
and activities to the options built here.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import ClassVar

from temporalio.client import Client
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.contrib.pydantic import PydanticPayloadConverter
from temporalio.converter import DataConverter, PayloadCodec
from temporalio.service import RPCError

from suifang.core.config import Settings
from suifang.core.errors import StartupError

__all__ = ["connect_client", "data_converter", "temporal_health"]


class SharedPydanticPayloadConverter(PydanticPayloadConverter):
    """The pydantic payload converter, built once per process.

    The SDK builds a new data converter, and so a new payload converter, for every workflow
    activation: at a few hundred activations a second that construction was about 2 % of a
    worker's CPU, and every new converter began with an empty cache of pydantic type adapters.
    The converter keeps no state of its own but that cache, so one instance serves them all.
    """

    _shared: ClassVar[SharedPydanticPayloadConverter | None] = None

    def __new__(cls) -> SharedPydanticPayloadConverter:
        if cls._shared is None:
            shared = super().__new__(cls)
            PydanticPayloadConverter.__init__(shared)
            cls._shared = shared
        return cls._shared

    def __init__(self) -> None:
        """Built once, in ``__new__``; the SDK's later calls return the same converter."""


_PYDANTIC = DataConverter(payload_converter_class=SharedPydanticPayloadConverter)


def data_converter(codec: PayloadCodec | None = None) -> DataConverter:
    """pydantic (JSON) payloads for client, worker and tests alike, optionally encoded."""
    if codec is None:
        return _PYDANTIC
    return dataclasses.replace(_PYDANTIC, payload_codec=codec)


async def connect_client(
    settings: Settings,
    *,
    codec: PayloadCodec | None = None,
    timeout: float = 10.0,
    wait: float = 0.0,
) -> Client:
    """Connect to ``SUIFANG_TEMPORAL_ADDRESS``; unreachable → a one-line :class:`StartupError`.

    With ``wait``, keep trying for that many seconds first: a worker started while the
    server restarts should come up with it rather than exit.
    """
    deadline = time.monotonic() + wait
    while True:
        try:
            return await _connect_once(settings, codec=codec, timeout=timeout)
        except StartupError:
            if time.monotonic() >= deadline:
                raise
        await asyncio.sleep(min(1.0, max(0.0, deadline - time.monotonic())))


async def _connect_once(
    settings: Settings, *, codec: PayloadCodec | None, timeout: float
) -> Client:
    try:
        return await asyncio.wait_for(
            Client.connect(
                settings.temporal_address,
                namespace=settings.temporal_namespace,
                data_converter=data_converter(codec),
                interceptors=[TracingInterceptor()],
                tls=settings.temporal_tls,
                api_key=(
                    settings.temporal_api_key.get_secret_value()
                    if settings.temporal_api_key
                    else None
                ),
            ),
            timeout=timeout,
        )
    except (RuntimeError, RPCError, OSError, TimeoutError) as exc:
        raise StartupError(
            f"cannot reach Temporal at {settings.temporal_address} "
            f"(namespace {settings.temporal_namespace!r}): {_reason(exc)}"
        ) from None


def _reason(exc: BaseException) -> str:
    """The gist of a connection failure, without the transport's nested error chain."""
    text = str(exc)
    for marker, reason in (
        ("Connection refused", "connection refused (is the server running?)"),
        ("Name or service not known", "unknown host"),
        ("dns error", "unknown host"),
        ("deadline", "timed out"),
    ):
        if marker.lower() in text.lower():
            return reason
    if isinstance(exc, TimeoutError):
        return "timed out"
    return text.splitlines()[0].split(": tonic::")[0] if text else type(exc).__name__


async def temporal_health(client: Client, *, timeout: float = 3.0) -> str | None:
    """``None`` if the frontend answers, else a short reason (for ``/healthz``)."""
    try:
        ok = await asyncio.wait_for(client.service_client.check_health(), timeout=timeout)
    except (RPCError, RuntimeError, OSError, TimeoutError) as exc:
        return type(exc).__name__
    return None if ok else "not serving"
