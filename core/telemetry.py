"""Tracing and metrics: one tracer provider and one meter provider per process, configured
from settings, shared by API and worker.

Exporters: ``none`` (spans are created, so trace context still propagates through Temporal,
but nothing is exported), ``console`` (stderr, for a developer), ``otlp`` (OTLP/HTTP to a
collector at ``SUIFANG_OTLP_ENDPOINT``). Metrics (core/metrics.py: the same figures as
``GET /metrics``) go to the same exporter every minute; with ``none`` there is no meter provider.
"""

from __future__ import annotations

import sys

from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from sqlalchemy import Engine

from suifang.core.config import Settings
from suifang.core.errors import ConfigurationError
from suifang.core.metrics import install_otel_metrics

__all__ = ["setup_metrics", "setup_tracing", "tracer"]

_configured: TracerProvider | None = None
_meters: MeterProvider | None = None
_METRICS_EVERY_MS = 60_000


def _exporter(settings: Settings) -> SpanExporter | None:
    if settings.telemetry_exporter == "console":
        return ConsoleSpanExporter(out=sys.stderr)
    if settings.telemetry_exporter == "otlp":
        if not settings.otlp_endpoint:
            raise ConfigurationError(
                "SUIFANG_OTLP_ENDPOINT: required when SUIFANG_TELEMETRY_EXPORTER=otlp"
            )
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(endpoint=settings.otlp_endpoint.rstrip("/") + "/v1/traces")
    return None


def setup_tracing(settings: Settings, *, processors: tuple[object, ...] = ()) -> TracerProvider:
    """Install the process's tracer provider once; later calls return the same provider."""
    global _configured
    if _configured is not None:
        for processor in processors:
            _configured.add_span_processor(processor)  # type: ignore[arg-type]
        return _configured
    provider = TracerProvider(resource=Resource.create({"service.name": settings.service_name}))
    exporter = _exporter(settings)
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    for processor in processors:
        provider.add_span_processor(processor)  # type: ignore[arg-type]
    trace.set_tracer_provider(provider)
    _configured = provider
    return provider


def tracer(name: str = "suifang") -> trace.Tracer:
    return trace.get_tracer(name)


def _metric_exporter(settings: Settings) -> MetricExporter | None:
    if settings.telemetry_exporter == "console":
        return ConsoleMetricExporter(out=sys.stderr)
    if settings.telemetry_exporter == "otlp":
        if not settings.otlp_endpoint:
            raise ConfigurationError(
                "SUIFANG_OTLP_ENDPOINT: required when SUIFANG_TELEMETRY_EXPORTER=otlp"
            )
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

        return OTLPMetricExporter(endpoint=settings.otlp_endpoint.rstrip("/") + "/v1/metrics")
    return None


def setup_metrics(
    settings: Settings, engine: Engine, *, readers: tuple[MetricReader, ...] = ()
) -> MeterProvider | None:
    """The process's meter provider with the platform figures, once; None when nothing
    would read them (exporter ``none`` and no ``readers``)."""
    global _meters
    if _meters is not None:
        return _meters
    exporter = _metric_exporter(settings)
    all_readers = list(readers)
    if exporter is not None:
        all_readers.append(
            PeriodicExportingMetricReader(exporter, export_interval_millis=_METRICS_EVERY_MS)
        )
    if not all_readers:
        return None
    provider = MeterProvider(
        metric_readers=all_readers,
        resource=Resource.create({"service.name": settings.service_name}),
    )
    install_otel_metrics(provider.get_meter("suifang"), engine)
    _meters = provider
    return provider
