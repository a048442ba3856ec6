"""Tracing: one tracer provider per process, configured from settings, shared by API and worker.

Exporters: ``none`` (spans are created, so trace context still propagates through Temporal,
but nothing is exported), ``console`` (stderr, for a developer), ``otlp`` (OTLP/HTTP to a
collector at ``SUIFANG_OTLP_ENDPOINT``).
"""

from __future__ import annotations

import sys

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

from suifang.core.config import Settings
from suifang.core.errors import ConfigurationError

__all__ = ["setup_tracing", "tracer"]

_configured: TracerProvider | None = None


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
