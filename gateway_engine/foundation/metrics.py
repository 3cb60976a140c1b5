"""Prometheus instruments and the one call per request that records them.

Labels are route names and backends, never raw paths, so ids in URLs cannot
explode the series count. With several workers (``serve --workers N``) the
values live in ``PROMETHEUS_MULTIPROC_DIR`` and a scrape of any worker sums them.
"""

from __future__ import annotations

import atexit
import os
import time
import weakref
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)
from prometheus_client.process_collector import ProcessCollector

from gateway_engine.foundation.context import RequestContext
from gateway_engine.foundation.reply import Reply

MULTIPROCESS = "PROMETHEUS_MULTIPROC_DIR" in os.environ  # prometheus_client decides the same way, at import
CONTENT_TYPE = CONTENT_TYPE_LATEST
REGISTRY = CollectorRegistry()
disable_created_metrics()  # no `_created` twin of every series: half the scrape, nothing dashboards use
if MULTIPROCESS:
    atexit.register(multiprocess.mark_process_dead, os.getpid())  # drop this worker's live in-flight gauge
else:
    ProcessCollector(registry=REGISTRY)

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
REQUESTS = Counter(
    "gateway_requests",
    "Requests answered, by route, backend, method and status class.",
    ["route", "backend", "method", "status"],
    registry=REGISTRY,
)
REQUEST_LATENCY = Histogram(
    "gateway_request_duration_seconds",
    "Time from request to response headers.",
    ["route", "backend", "method"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
UPSTREAM_LATENCY = Histogram(
    "gateway_upstream_duration_seconds",
    "Time the upstream took to answer (headers).",
    ["route", "backend"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
IN_FLIGHT = Gauge(
    "gateway_requests_in_flight", "Requests being handled now.", registry=REGISTRY, multiprocess_mode="livesum"
)
# with several workers (MULTIPROCESS) the gauge lives in files and the app moves it per request; in one
# process it is read from the apps' own in-flight counts when scraped, so requests never touch it
_in_flight_sources: list[weakref.WeakMethod] = []
UPSTREAM_ERRORS = Counter(
    "gateway_upstream_errors",
    "Failed upstream calls by kind: timeout, refused, protocol, 5xx.",
    ["route", "backend", "kind"],
    registry=REGISTRY,
)
RATE_LIMITED = Counter(
    "gateway_rate_limit_rejections", "Requests refused with 429 RATE_LIMITED.", ["route", "backend"], registry=REGISTRY
)
AUTH_FAILURES = Counter(
    "gateway_auth_failures",
    "401/403 answers of the gateway, by error code.",
    ["route", "backend", "reason"],
    registry=REGISTRY,
)
CIRCUIT = Gauge(
    "gateway_circuit_state",
    "Circuit breaker of an upstream: 0 closed, 1 half-open, 2 open.",
    ["backend"],
    registry=REGISTRY,
    multiprocess_mode="max",
)
RELOADS = Counter("gateway_config_reloads", "Config reloads by result.", ["result"], registry=REGISTRY)
WEBHOOK_STORE_FULL = Counter(
    "gateway_webhook_store_full",
    "Webhook deliveries refused with 503 because the memory event store was full of ids inside their dedupe window.",
    ["source"],
    registry=REGISTRY,
)

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
_ERROR_KINDS = {
    "UPSTREAM_TIMEOUT": "timeout",
    "UPSTREAM_UNAVAILABLE": "refused",
    "UPSTREAM_ERROR": "protocol",
    "UPSTREAM_INVALID_JSON": "protocol",
}


class _Children:
    """The labelled series of one (route, backend, method), resolved once and reused."""

    __slots__ = ("route", "backend", "method", "latency", "upstream", "by_class")

    def __init__(self, route: str, backend: str, method: str) -> None:
        self.route, self.backend, self.method = route, backend, method
        self.latency = REQUEST_LATENCY.labels(route, backend, method)
        self.upstream = UPSTREAM_LATENCY.labels(route, backend)
        self.by_class: dict[str, Any] = {}

    def requests(self, status: int) -> Any:
        cls = _CLASSES[status // 100 - 1] if 100 <= status < 600 else "5xx"
        child = self.by_class.get(cls)
        if child is None:
            child = self.by_class[cls] = REQUESTS.labels(self.route, self.backend, self.method, cls)
        return child


_children: dict[tuple[str, str, str], _Children] = {}


def record(ctx: RequestContext, reply: Reply) -> None:
    """Count one answered request; called once the reply is decided, before its body is sent."""
    method = ctx.method if ctx.method in _METHODS else "OTHER"
    route = ctx.route
    key = (
        (route.name, route.backend, method)
        if route is not None
        else (ctx.state.get("builtin", "unmatched"), "gateway", method)
    )
    children = _children.get(key)
    if children is None:
        children = _children[key] = _Children(*key)
    status = reply.status
    children.requests(status).inc()
    children.latency.observe(time.perf_counter() - ctx.started)
    if ctx.upstream_latency is not None:
        children.upstream.observe(ctx.upstream_latency)
    if status >= 400:
        _record_error(children, ctx, reply)


def record_upstream_call(
    route: str, backend: str, latency: float | None, answered: int | None, error_code: str | None
) -> None:
    """One of several upstream calls a route made (``record`` counts the route's answer once): its latency
    under the backend it called, and a failure by kind (the gateway's error code, else the status answered)."""
    if latency is not None:
        UPSTREAM_LATENCY.labels(route, backend).observe(latency)
    kind = _ERROR_KINDS.get(error_code or "") or ("5xx" if answered is not None and answered >= 500 else None)
    if kind is not None:
        UPSTREAM_ERRORS.labels(route, backend, kind).inc()


def _record_error(children: _Children, ctx: RequestContext, reply: Reply) -> None:
    if reply.from_upstream:  # the upstream's own answer; its error code may come from its body, so never a label
        if reply.status >= 500:
            UPSTREAM_ERRORS.labels(children.route, children.backend, "5xx").inc()
        return
    code = ctx.state.get("error_code")
    if code is None:
        return
    kind = _ERROR_KINDS.get(code)
    if kind is not None:
        UPSTREAM_ERRORS.labels(children.route, children.backend, kind).inc()
    elif code == "RATE_LIMITED":
        RATE_LIMITED.labels(children.route, children.backend).inc()
    elif reply.status in (401, 403):
        AUTH_FAILURES.labels(children.route, children.backend, code).inc()


def watch_in_flight(count: Any) -> None:
    """Register a bound method returning an app's in-flight requests (single process only)."""
    if not MULTIPROCESS:
        _in_flight_sources.append(weakref.WeakMethod(count))


def _in_flight_now() -> float:
    counts = [source() for source in _in_flight_sources]
    _in_flight_sources[:] = [s for s, c in zip(_in_flight_sources, counts) if c is not None]  # apps gone
    return float(sum(c() for c in counts if c is not None))


if not MULTIPROCESS:
    IN_FLIGHT.set_function(_in_flight_now)


_CIRCUIT_VALUES = {"closed": 0, "half_open": 1, "open": 2}


def record_circuit(backend: str, state: str) -> None:
    """Called by a circuit breaker when it moves (closed → open → half-open → ...)."""
    CIRCUIT.labels(backend).set(_CIRCUIT_VALUES[state])


def record_reload(result: str) -> None:
    """Count a config reload attempt; ``result`` is a fixed word such as ``ok`` or ``error``."""
    RELOADS.labels(result).inc()


def exposition() -> bytes:
    """The Prometheus text format: this process's registry, or every worker's values summed."""
    if MULTIPROCESS:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(REGISTRY)
