"""The key store's Prometheus instruments. No label ever holds a key, a digest or a tenant name."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from gateway_engine.foundation.metrics import REGISTRY

MALFORMED = Counter(
    "gateway_keys_malformed",
    "Presented keys refused for their shape or checksum, before any store lookup.",
    registry=REGISTRY,
)
VERIFICATIONS = Counter(
    "gateway_keys_verifications",
    "Stored-key verifications by result (VALID, NOT_FOUND, DISABLED, EXPIRED, ...) and source (cache or store).",
    ["result", "source"],
    registry=REGISTRY,
)
INVALIDATION_LAG = Histogram(
    "gateway_keys_invalidation_lag_seconds",
    "Time from a key change (revocation, deactivation, update) to its removal from this process's cache.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
    registry=REGISTRY,
)
FLUSH_FAILURES = Counter(
    "gateway_keys_flush_failures",
    "Failed batch writes of usage counters or request-log rows (retried on the next flush).",
    ["what"],
    registry=REGISTRY,
)
LOG_DROPPED = Counter(
    "gateway_keys_request_log_dropped",
    "Request-log rows dropped because the queue was full (the store is slower than the traffic).",
    registry=REGISTRY,
)
