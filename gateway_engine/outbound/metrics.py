"""The feature's Prometheus instruments: backlog, attempts by outcome, delivery latency, emit failures."""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from gateway_engine.foundation.metrics import REGISTRY

ATTEMPTS = Counter("gateway_outbound_attempts", "Outbound webhook attempts by outcome.", ["outcome"], registry=REGISTRY)
LATENCY = Histogram(
    "gateway_outbound_delivery_duration_seconds",
    "Time an outbound webhook attempt took.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0),
    registry=REGISTRY,
)
BACKLOG = Gauge(
    "gateway_outbound_backlog", "Outbound deliveries waiting to be sent (pending), as last counted.", registry=REGISTRY
)
EMITTED = Counter("gateway_outbound_events", "Events emitted to the outbox, by result.", ["result"], registry=REGISTRY)
WRITTEN = EMITTED.labels("written")  # the emit path's one count, looked up once


def record_attempt(outcome: Any) -> None:
    ATTEMPTS.labels(outcome.kind).inc()
    LATENCY.observe(outcome.latency)
