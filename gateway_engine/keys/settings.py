"""The ``keys`` section of gateway.yaml, normalised once: prefix, cache, rotation, usage and request log."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway_engine.config.durations import parse_duration

from .keyformat import PREFIX


@dataclass(frozen=True)
class KeysSettings:
    prefix: str = "gk"  # of the keys this gateway issues
    accept_prefixes: frozenset[str] = frozenset({"gk"})  # of the keys it looks up (the prefix plus older ones)
    cache_size: int = 10_000
    cache_ttl: float = 30.0  # seconds a verified key is trusted without a store read (changes notify sooner)
    negative_ttl: float = 5.0  # seconds an unknown key is remembered as unknown
    rotation_grace: float = 86_400.0
    flush_interval: float = 1.0  # usage counters and the request log are written this often
    log_enabled: bool = True
    log_retention: float = 720 * 3600.0
    log_queue: int = 10_000  # request-log rows held between flushes; beyond that they are dropped (and counted)
    rate_limit_bounds: tuple[int, int] = (1, 1_000_000)  # a key's own limit (per minute) must fall in these


def keys_settings(section: Mapping[str, Any] | None) -> KeysSettings:
    """Raises ValueError naming the key at fault."""
    section = section or {}
    prefix = section.get("prefix", "gk")
    if not PREFIX.match(prefix):
        raise ValueError("prefix: 1-16 lower-case letters or digits, starting with a letter")
    accepted = frozenset([prefix, *section.get("accept_prefixes", [])])
    for other in accepted:
        if not PREFIX.match(other):
            raise ValueError(f"accept_prefixes: {other!r} is not a key prefix")
    cache = section.get("cache", {})
    log = section.get("request_log", {})
    return KeysSettings(
        prefix=prefix,
        accept_prefixes=accepted,
        cache_size=int(cache.get("size", 10_000)),
        cache_ttl=_seconds(cache.get("ttl", "30s"), "cache.ttl"),
        negative_ttl=_seconds(cache.get("negative_ttl", "5s"), "cache.negative_ttl"),
        rotation_grace=_seconds(section.get("rotation_grace", "24h"), "rotation_grace"),
        flush_interval=_seconds(section.get("flush_interval", "1s"), "flush_interval"),
        log_enabled=bool(log.get("enabled", True)),
        log_retention=_seconds(log.get("retention", "720h"), "request_log.retention"),
        log_queue=int(log.get("queue", 10_000)),
        rate_limit_bounds=_bounds(section.get("key_rate_limit", {})),
    )


def _bounds(section: Mapping[str, Any]) -> tuple[int, int]:
    low, high = int(section.get("min", 1)), int(section.get("max", 1_000_000))
    if low > high:
        raise ValueError("key_rate_limit: min must not exceed max")
    return low, high


def _seconds(value: Any, where: str) -> float:
    try:
        return parse_duration(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: {value!r} is not a duration such as 30s, 5m, 24h") from None
