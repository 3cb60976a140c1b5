"""A Kafka upstream's settings, read once from its ``brokers`` and ``kafka`` keys (env already resolved).

Parsing never raises: a bad value becomes ``problem``, which the feature reports as a located
config error (the transport factory runs inside the compiler, where errors are collected).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gateway_engine.config.durations import parse_duration

MIB = 1024 * 1024


@dataclass(frozen=True)
class ClusterSettings:
    """How to reach the cluster, and where this instance's replies arrive."""

    brokers: tuple[str, ...] = ()
    group: str = "gateway-engine"
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = field(default=None, repr=False)
    sasl_password: str | None = field(default=None, repr=False)
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    max_message_bytes: int = MIB
    reply_topic: str = "gateway-engine.replies"
    reply_partition: int = 0
    max_reply_bytes: int = MIB
    max_pending: int = 10000
    retention: float = 300.0
    max_retained: int = 1000
    results: str = "store"  # where asynchronous results are kept: the store (every worker) or memory (this one)
    problem: str | None = None  # why the options are unusable, for `validate`


def cluster_settings(options: dict[str, Any]) -> ClusterSettings:
    """The settings from an upstream's resolved keys; ``problem`` says what is wrong, if anything."""
    try:
        return _parse(options)
    except (ValueError, TypeError) as exc:
        return ClusterSettings(problem=str(exc))


def _parse(options: dict[str, Any]) -> ClusterSettings:
    brokers = tuple(b.strip() for b in str(options.get("brokers", "")).split(",") if b.strip())
    for broker in brokers:
        host, _, port = broker.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"brokers must be host:port separated by commas (got {len(brokers)} entries)")
    spec = options.get("kafka", {})
    reply = spec.get("reply", {})
    sasl = spec.get("sasl")
    tls = spec.get("tls", {})
    group = spec.get("group", "gateway-engine")
    protocol = spec.get("security_protocol", "PLAINTEXT")
    if sasl is not None and not protocol.startswith("SASL_"):
        raise ValueError("kafka.sasl needs security_protocol SASL_PLAINTEXT or SASL_SSL")
    if protocol.startswith("SASL_") and sasl is None:
        raise ValueError(f"security_protocol {protocol} needs kafka.sasl")
    return ClusterSettings(
        brokers=brokers,
        group=group,
        security_protocol=protocol,
        sasl_mechanism=sasl.get("mechanism", "PLAIN") if sasl else None,
        sasl_username=sasl["username"] if sasl else None,
        sasl_password=sasl["password"] if sasl else None,
        ca_file=tls.get("ca_file"),
        cert_file=tls.get("cert_file"),
        key_file=tls.get("key_file"),
        max_message_bytes=_count(spec, "max_message_bytes", MIB, 1),
        reply_topic=reply.get("topic", f"{group}.replies"),
        reply_partition=_count(reply, "partition", 0, 0),
        max_reply_bytes=_count(reply, "max_bytes", MIB, 1),
        max_pending=_count(reply, "max_pending", 10000, 1),
        retention=parse_duration(reply.get("retention", "5m")),
        max_retained=_count(reply, "max_retained", 1000, 1),
        results=_results(reply.get("results", "store")),
    )


def _results(value: Any) -> str:
    if value not in ("store", "memory"):
        raise ValueError("kafka reply.results must be store or memory")
    return str(value)


def _count(spec: dict[str, Any], name: str, default: int, minimum: int) -> int:
    value = spec.get(name, default)
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"kafka {name} must be a whole number") from None
    if number < minimum:
        raise ValueError(f"kafka {name} must be at least {minimum}")
    return number
