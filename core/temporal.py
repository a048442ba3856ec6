"""The Temporal runtime: the one place that builds clients (data converter, tracing) and
says how the workflows' activities are timed out and retried.

Workers are assembled in :mod:`suifang.workflows.worker`, which adds suifang's workflows
and activities to the options built here. The workflows import the activity options inside
``workflow.unsafe.imports_passed_through()``: this module, its client and tracing imports
with it, is loaded once outside the sandbox rather than re-imported for every run.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import time
from typing import Any

from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.contrib.pydantic import PydanticPayloadConverter
from temporalio.converter import CompositePayloadConverter, DataConverter, PayloadCodec
from temporalio.runtime import PrometheusConfig, TelemetryConfig
from temporalio.runtime import Runtime as TemporalRuntime
from temporalio.service import RPCError

from suifang.core.config import Settings
from suifang.core.errors import StartupError

__all__ = [
    "JOURNEY_SEND_OPTIONS",
    "RECORD_OPTIONS",
    "SEND_OPTIONS",
    "connect_client",
    "data_converter",
    "sdk_runtime",
    "temporal_health",
]

RECORD_OPTIONS: dict[str, Any] = {
    "start_to_close_timeout": dt.timedelta(seconds=30),
    # The worker heartbeats while an activity runs (HeartbeatInterceptor): a killed worker's
    # activity is retried elsewhere after this, not after the whole start-to-close timeout.
    "heartbeat_timeout": dt.timedelta(seconds=10),
    "retry_policy": RetryPolicy(maximum_interval=dt.timedelta(minutes=5)),
}
"""Activities that write records or read the database: short, retried for ever."""

_SEND_RETRY = RetryPolicy(
    initial_interval=dt.timedelta(seconds=5), maximum_interval=dt.timedelta(minutes=10)
)
SEND_OPTIONS: dict[str, Any] = {
    # A send may wait on a slow channel's cascade, hence the longer timeouts.
    "start_to_close_timeout": dt.timedelta(minutes=2),
    "heartbeat_timeout": dt.timedelta(seconds=15),
    "retry_policy": _SEND_RETRY,
}
"""Activities that deliver a message through the channels.

A ticket's sends (the patient's notices, the emergency message, pages) keep retrying even a
configuration error, on purpose: the ticket must outlive a broken template or channel setting
— its SLA clocks and escalations run on — and the send goes out once a person fixes it."""

JOURNEY_SEND_OPTIONS: dict[str, Any] = {
    **SEND_OPTIONS,
    # A journey's greeting reads the hospital's greeting texts: a broken file is fixed by a
    # person, so the send fails at once instead of retrying for ever.
    "retry_policy": dataclasses.replace(
        _SEND_RETRY, non_retryable_error_types=["ConfigurationError"]
    ),
}
"""A journey's sends (touchpoints, greetings, advice)."""


_PYDANTIC_ENCODINGS = tuple(PydanticPayloadConverter().converters.values())


class SharedPydanticPayloadConverter(CompositePayloadConverter):
    """The pydantic payload converter, its encoding converters built once per process.

    The SDK copies the data converter for every workflow activation, building a new payload
    converter each time: a full ``PydanticPayloadConverter`` cost about 150 µs an activation,
    against 45 µs for this one, which reuses the encoders (and with them the pydantic JSON
    converter's cache of type adapters). Only the public constructor is used.
    """

    def __init__(self) -> None:
        super().__init__(*_PYDANTIC_ENCODINGS)


_PYDANTIC = DataConverter(payload_converter_class=SharedPydanticPayloadConverter)


def data_converter(codec: PayloadCodec | None = None) -> DataConverter:
    """pydantic (JSON) payloads for client, worker and tests alike, optionally encoded."""
    if codec is None:
        return _PYDANTIC
    return dataclasses.replace(_PYDANTIC, payload_codec=codec)


_SDK_RUNTIMES: dict[str, TemporalRuntime] = {}


def sdk_runtime(metrics_address: str) -> TemporalRuntime:
    """A Temporal SDK runtime that serves the worker's own metrics (task slots free,
    schedule-to-start and execution latency, polls) at ``http://<metrics_address>/metrics``.

    One per address and process: the SDK binds the port when the runtime is made.
    """
    if metrics_address not in _SDK_RUNTIMES:
        try:
            _SDK_RUNTIMES[metrics_address] = TemporalRuntime(
                telemetry=TelemetryConfig(
                    metrics=PrometheusConfig(
                        bind_address=metrics_address,
                        durations_as_seconds=True,
                        counters_total_suffix=True,
                    )
                )
            )
        except Exception as exc:  # noqa: BLE001 -- the SDK's core raises plain exceptions
            raise StartupError(
                f"SUIFANG_WORKER_METRICS_ADDRESS: cannot serve worker metrics at "
                f"{metrics_address}: {exc}"
            ) from None
    return _SDK_RUNTIMES[metrics_address]


async def connect_client(
    settings: Settings,
    *,
    codec: PayloadCodec | None = None,
    timeout: float = 10.0,
    wait: float = 0.0,
    metrics_address: str | None = None,
) -> Client:
    """Connect to ``SUIFANG_TEMPORAL_ADDRESS``; unreachable → a one-line :class:`StartupError`.

    With ``wait``, keep trying for that many seconds first: a worker started while the
    server restarts should come up with it rather than exit.
    """
    deadline = time.monotonic() + wait
    while True:
        try:
            return await _connect_once(
                settings, codec=codec, timeout=timeout, metrics_address=metrics_address
            )
        except StartupError:
            if time.monotonic() >= deadline:
                raise
        await asyncio.sleep(min(1.0, max(0.0, deadline - time.monotonic())))


async def _connect_once(
    settings: Settings, *, codec: PayloadCodec | None, timeout: float, metrics_address: str | None
) -> Client:
    runtime = sdk_runtime(metrics_address) if metrics_address else None
    try:
        return await asyncio.wait_for(
            Client.connect(
                settings.temporal_address,
                namespace=settings.temporal_namespace,
                data_converter=data_converter(codec),
                interceptors=[TracingInterceptor()],
                tls=settings.temporal_tls,
                runtime=runtime,
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
