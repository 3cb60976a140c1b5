"""How the gateway delivers: the ``outbound_webhooks`` section of gateway.yaml, with Svix's defaults."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway_engine.config.durations import parse_duration

#: immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h (Svix)
SVIX_SCHEDULE = (0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
IN_PROCESS, WORKER_ONLY = "in_process", "worker_only"  # where the dispatcher runs (``dispatch``)


@dataclass(frozen=True)
class DeliverySettings:
    """The retry schedule, the endpoint rules and the dispatcher's bounds."""

    schedule: tuple[float, ...] = SVIX_SCHEDULE  # delay before attempt 1, 2, ... (seconds)
    jitter: float = 0.2  # each delay varies by up to ±this fraction
    timeout: float = 15.0  # one attempt, connect to last byte
    throttle_min: float = 60.0  # a timeout or a 429 waits at least this long
    disable_after: float = 5 * 86400.0  # continuous failure for this long disables the endpoint
    secret_overlap: float = 86400.0  # a rotated secret stays valid (and signed with) this long
    allow: tuple[Network, ...] = ()  # addresses allowed although private, loopback, ... (CIDRs)
    https_only: bool = False
    dispatch: str = IN_PROCESS  # also in every gateway process, or only in `gateway-engine worker`
    concurrency: int = 64  # attempts in flight per process
    per_endpoint: int = 4  # attempts in flight per endpoint per process
    poll_interval: float = 0.5  # seconds between looks for due work when idle
    write_linger: float = 0.02  # seconds an emit waits for the emits of the same moment (one transaction)
    batch: int = 100
    retention: float = 30 * 86400.0  # messages, finished deliveries and attempts older than this are deleted
    max_payload: int = 256 * 1024  # bytes of an event's JSON; a larger event is not emitted

    @property
    def lease(self) -> float:
        """How long a claimed attempt is this process's: longer than any attempt can take."""
        return self.timeout + 30.0


def delivery_settings(section: Mapping[str, Any]) -> DeliverySettings:
    """The settings of an ``outbound_webhooks`` section (schema-checked); ValueError names a bad CIDR."""
    kwargs: dict[str, Any] = {}
    if "schedule" in section:
        kwargs["schedule"] = tuple(_delay(d) for d in section["schedule"])
    for key in ("timeout", "throttle_min", "disable_after", "secret_overlap", "poll_interval", "retention"):
        if key in section:
            kwargs[key] = parse_duration(section[key])
    if "write_linger" in section:
        kwargs["write_linger"] = _delay(section["write_linger"])
    for key in ("jitter",):
        if key in section:
            kwargs[key] = float(section[key])
    if "https_only" in section:
        kwargs["https_only"] = bool(section["https_only"])
    if "dispatch" in section:
        kwargs["dispatch"] = str(section["dispatch"])
    for key in ("concurrency", "per_endpoint", "batch", "max_payload"):
        if key in section:
            kwargs[key] = int(section[key])
    if "allow_cidrs" in section:
        kwargs["allow"] = tuple(ipaddress.ip_network(c, strict=False) for c in section["allow_cidrs"])
    return DeliverySettings(**kwargs)


def _delay(value: Any) -> float:
    """A schedule entry: a duration, or 0 (immediately)."""
    return 0.0 if value in (0, "0", "0s") else parse_duration(value)
