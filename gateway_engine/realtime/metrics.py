"""The realtime instruments, in the gateway's registry (scraped with the rest at the metrics endpoint)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from gateway_engine.foundation.metrics import REGISTRY

CONNECTIONS = Gauge(
    "gateway_realtime_connections",
    "Open realtime connections on this worker, by transport (websocket, sse, socketio).",
    ["transport"],
    registry=REGISTRY,
    multiprocess_mode="livesum",
)
DELIVERED = Counter(
    "gateway_realtime_messages", "Messages queued to realtime connections.", ["transport"], registry=REGISTRY
)
SLOW_CONSUMERS = Counter(
    "gateway_realtime_slow_consumer",
    "Messages a full connection queue dropped (policy drop_oldest), or connections closed for it (disconnect).",
    ["transport", "action"],
    registry=REGISTRY,
)
REFUSED = Counter(
    "gateway_realtime_refused",
    "Realtime handshakes or subscriptions refused, by error code.",
    ["transport", "code"],
    registry=REGISTRY,
)
SOURCE_ERRORS = Counter(
    "gateway_realtime_source_errors",
    "Failures reading a message source or the backplane (each retried after a pause).",
    ["source"],
    registry=REGISTRY,
)
