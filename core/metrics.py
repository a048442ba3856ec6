"""Operator metrics: what the platform is doing, read from the database when asked.

The API, the worker and the HL7 listener may be separate processes, and each sees only its own
part; the database sees all of it. So the figures an operator alerts on (journeys by state,
messages by channel and outcome, tickets by tier and status, SLA warnings and breaches, pages
waiting for an acknowledgement, refused webhook calls) are counted in SQL at each scrape, by
one function, :func:`platform_figures`, that both exports use:

- Prometheus/OpenMetrics: :class:`PlatformCollector`, served by ``GET /metrics``;
- OpenTelemetry: :func:`install_otel_metrics`, observable instruments of the same names
  exported with the traces (``SUIFANG_TELEMETRY_EXPORTER``).

The worker's own figures (task slots free, schedule-to-start and execution latency) come from
the Temporal SDK, which serves them itself (:func:`suifang.core.temporal.sdk_runtime`); the
API's ``/metrics`` appends them when that endpoint is in reach.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Literal

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy import Engine, and_, case, func, select
from sqlmodel import Session, col

from suifang.core.db import utcnow
from suifang.core.models.journeys import Enrollment
from suifang.core.models.messages import DeliveryAttempt, Message
from suifang.core.models.tickets import Ticket, TicketEvent
from suifang.core.models.webhooks import WebhookRejection

__all__ = [
    "DELIVERY_LATENCY_BUCKETS",
    "DELIVERY_LATENCY_WINDOW",
    "Figure",
    "PlatformCollector",
    "install_otel_metrics",
    "platform_figures",
]

#: Seconds from a message being written to a channel accepting it.
DELIVERY_LATENCY_BUCKETS = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0)
#: The latency histogram covers messages written in the last hour: a scrape stays one indexed
#: query however large the message table has grown.
DELIVERY_LATENCY_WINDOW = dt.timedelta(hours=1)


@dataclasses.dataclass(frozen=True)
class Figure:
    """One metric family: its samples as (labels, value)."""

    name: str
    documentation: str
    kind: Literal["gauge", "counter"]
    labels: tuple[str, ...]
    samples: list[tuple[tuple[str, ...], float]]


@dataclasses.dataclass(frozen=True)
class Histogram:
    name: str
    documentation: str
    buckets: list[tuple[str, float]]
    """Cumulative counts, ending with ``+Inf``."""
    total: float


def _grouped(
    session: Session, *columns: object, where: object = None
) -> list[tuple[tuple[str, ...], float]]:
    query = select(*columns, func.count()).group_by(*columns)  # type: ignore[call-overload]
    if where is not None:
        query = query.where(where)
    return [
        (tuple("none" if v is None else str(v) for v in row[:-1]), float(row[-1]))
        for row in session.exec(query).all()
    ]


def _count(session: Session, *where: object) -> float:
    return float(session.execute(select(func.count()).where(*where)).scalar_one())


def platform_figures(engine: Engine) -> tuple[list[Figure], Histogram]:
    """Every platform figure, counted now (a handful of indexed aggregate queries)."""
    with Session(engine) as session:
        figures = [
            Figure(
                "suifang_journeys",
                "Patient journeys by state (pending, active, paused, completed, lost, stopped).",
                "gauge",
                ("status",),
                _grouped(session, Enrollment.status),
            ),
            Figure(
                "suifang_messages",
                "Patient messages by the channel that carried them and their current status.",
                "gauge",
                ("channel", "status"),
                _grouped(session, Message.channel, Message.status),
            ),
            Figure(
                "suifang_delivery_attempts",
                "Delivery attempts by channel and outcome (accepted, permanent_error, …).",
                "counter",
                ("channel", "outcome"),
                _grouped(session, DeliveryAttempt.channel, DeliveryAttempt.outcome),
            ),
            Figure(
                "suifang_tickets",
                "Feedback tickets by tier (L1, L2, L3) and status.",
                "gauge",
                ("tier", "status"),
                _grouped(session, Ticket.tier, Ticket.status),
            ),
            Figure(
                "suifang_sla_warnings",
                "SLA warnings raised (a clock close to its due time).",
                "counter",
                (),
                [((), _count(session, TicketEvent.action == "sla_warning"))],
            ),
            Figure(
                "suifang_sla_breaches",
                "SLA breaches, by clock (first_response, resolution).",
                "counter",
                ("clock",),
                [
                    (
                        ("first_response",),
                        _count(session, col(Ticket.first_response_breached_at).is_not(None)),
                    ),
                    (
                        ("resolution",),
                        _count(session, col(Ticket.resolution_breached_at).is_not(None)),
                    ),
                ],
            ),
            Figure(
                "suifang_pages",
                "Emergency pages to the on-call by state: paging (not yet acknowledged), "
                "acknowledged, unanswered (every escalation step went unacknowledged).",
                "gauge",
                ("state",),
                _grouped(session, Ticket.paging, where=col(Ticket.paging).is_not(None)),
            ),
            Figure(
                "suifang_inbound_rejected",
                "Inbound channel calls refused (bad signature, replay, malformed body).",
                "counter",
                ("channel",),
                _grouped(session, WebhookRejection.channel),
            ),
        ]
        latency = _delivery_latency(session)
    return figures, latency


def _delivery_latency(session: Session) -> Histogram:
    seconds = (
        func.extract("epoch", Message.sent_at) - func.extract("epoch", Message.created_at)
        if session.get_bind().dialect.name == "postgresql"
        else (func.julianday(Message.sent_at) - func.julianday(Message.created_at)) * 86400.0
    )
    recent = and_(
        col(Message.created_at) >= utcnow() - DELIVERY_LATENCY_WINDOW,
        col(Message.sent_at).is_not(None),
    )
    sums = [func.sum(case((seconds <= bound, 1), else_=0)) for bound in DELIVERY_LATENCY_BUCKETS]
    query = select(func.count(), func.coalesce(func.sum(seconds), 0.0), *sums)  # type: ignore[call-overload]
    row = session.exec(query.where(recent)).one()
    count, total, *cumulative = row
    buckets = [
        (f"{bound:g}", float(n or 0))
        for bound, n in zip(DELIVERY_LATENCY_BUCKETS, cumulative, strict=True)
    ]
    buckets.append(("+Inf", float(count)))
    return Histogram(
        "suifang_delivery_latency_seconds",
        "Seconds from a message being written to its channel accepting it, for messages of "
        "the last hour.",
        buckets,
        float(total),
    )


class PlatformCollector(Collector):
    """A prometheus-client collector over :func:`platform_figures`."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        figures, latency = platform_figures(self.engine)
        for figure in figures:
            family: GaugeMetricFamily | CounterMetricFamily
            if figure.kind == "counter":
                family = CounterMetricFamily(
                    figure.name, figure.documentation, labels=figure.labels
                )
            else:
                family = GaugeMetricFamily(figure.name, figure.documentation, labels=figure.labels)
            for labels, value in figure.samples:
                family.add_metric(list(labels), value)
            yield family
        yield GaugeHistogramMetricFamily(
            latency.name, latency.documentation, buckets=latency.buckets, gsum_value=latency.total
        )


def install_otel_metrics(meter: object, engine: Engine) -> None:
    """The same figures as OpenTelemetry observable instruments on ``meter`` (an
    ``opentelemetry.metrics.Meter``), counted once per export and shared by its callbacks."""
    from opentelemetry.metrics import CallbackOptions, Observation

    snapshot: dict[str, Figure] = {}
    taken = [0.0]

    def figure(name: str) -> Figure:
        now = time.monotonic()
        if now - taken[0] > 1.0:  # one export reads every instrument within a second
            snapshot.update((f.name, f) for f in platform_figures(engine)[0])
            taken[0] = now
        return snapshot[name]

    def observer(name: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def callback(options: CallbackOptions) -> Iterable[Observation]:
            found = figure(name)
            return [
                Observation(value, dict(zip(found.labels, labels, strict=True)))
                for labels, value in found.samples
            ]

        return callback

    for found in platform_figures(engine)[0]:
        create = (
            meter.create_observable_counter  # type: ignore[attr-defined]
            if found.kind == "counter"
            else meter.create_observable_gauge  # type: ignore[attr-defined]
        )
        create(found.name, callbacks=[observer(found.name)], description=found.documentation)
