"""Backend health: every backend probed at once, each with a short timeout, the answer cached.

A probe is an HTTP GET of the backend's ``upstream.health.path`` (through the
route's own pooled transport and upstream auth) expecting ``expect``, or a TCP
connect (``tcp: true``, and the default when no path is given). The cache and a
single in-flight round mean a burst of health calls costs one round of probes.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from gateway_engine.compiled.model import CompiledConfig, Upstream
from gateway_engine.config.durations import parse_duration
from gateway_engine.foundation.envelope import timestamp
from gateway_engine.foundation.errors import GatewayError

_TRANSPORT_ERRORS = {
    "UPSTREAM_TIMEOUT": "timed out",
    "UPSTREAM_UNAVAILABLE": "connection refused or dropped",
    "UPSTREAM_ERROR": "invalid HTTP response",
}


@dataclass(frozen=True)
class Probe:
    """How one backend is checked; ``upstream`` is None when its env vars are unset."""

    backend: str
    upstream: Upstream | None
    missing: tuple[str, ...]
    path: str | None
    expect: int
    timeout: float
    critical: bool


class HealthChecker:
    """Probes of one config, the last result and the round in progress."""

    def __init__(self, config: CompiledConfig, *, cache_seconds: float, timeout: float) -> None:
        self.cache_seconds = cache_seconds
        upstreams = {u.backend: u for u in config.upstreams}
        probes: dict[str, Probe] = {}
        for route in config.routes:
            if route.backend in probes or route.handler is not None:  # a handler calls other backends' upstreams
                continue
            upstream = upstreams.get(route.backend)
            health = dict(upstream.health or {}) if upstream is not None else {}
            probes[route.backend] = Probe(
                backend=route.backend,
                upstream=upstream,
                missing=route.missing_env,
                path=None if health.get("tcp") else health.get("path"),
                expect=health.get("expect", 200),
                timeout=parse_duration(health["timeout"]) if "timeout" in health else timeout,
                critical=bool(health.get("critical", False)),
            )
        self.probes = tuple(probes.values())
        self._cached: tuple[float, int, dict[str, Any]] | None = None
        self._round: asyncio.Future[tuple[int, dict[str, Any]]] | None = None

    async def report(self) -> tuple[int, dict[str, Any]]:
        """``(http status, body)``: 503 when a critical backend is down, else 200."""
        cached = self._cached
        if cached is not None and time.monotonic() - cached[0] < self.cache_seconds:
            return cached[1], cached[2]
        if self._round is None or self._round.done():
            self._round = asyncio.ensure_future(self._probe_all())
        # shielded: a client that hangs up does not cancel the round the others are waiting for
        return await asyncio.shield(self._round)

    async def _probe_all(self) -> tuple[int, dict[str, Any]]:
        results = await asyncio.gather(*(_check(p) for p in self.probes))
        systems = {p.backend: r for p, r in zip(self.probes, results)}
        critical_down = any(p.critical and r["status"] == "down" for p, r in zip(self.probes, results))
        if critical_down:
            status = "down"
        elif any(r["status"] != "up" for r in results):
            status = "degraded"
        else:
            status = "operational"
        code = 503 if critical_down else 200
        body = {"status": status, "systems": systems}
        self._cached = (time.monotonic(), code, body)
        return code, body


async def _check(probe: Probe) -> dict[str, Any]:
    if probe.upstream is None:
        return {
            "status": "unconfigured",
            "latency_ms": None,
            "checked_at": timestamp(),
            "error": f"set {', '.join(probe.missing)}",
            "missing": list(probe.missing),
        }
    started = time.perf_counter()
    try:
        async with asyncio.timeout(probe.timeout):
            if probe.path is not None:
                error = await _http(probe.upstream, probe.path, probe.expect)
            else:
                error = await _tcp(probe.upstream.url)
    except TimeoutError:
        error = f"no answer within {probe.timeout:g}s"
    except OSError:
        error = "connection refused"
    except GatewayError as exc:
        error = _TRANSPORT_ERRORS.get(exc.code, "upstream error")
    out: dict[str, Any] = {
        "status": "down" if error else "up",
        "latency_ms": round((time.perf_counter() - started) * 1000, 1),
        "checked_at": timestamp(),
        "critical": probe.critical,
    }
    if error:
        out["error"] = error  # fixed phrases and status codes only: never a URL, header or body
    breaker = getattr(probe.upstream.transport, "breaker", None)
    if breaker is not None:
        out["circuit"] = breaker.state  # closed | open | half_open
    return out


async def _http(upstream: Upstream, path: str, expect: int) -> str | None:
    headers = [*upstream.headers, ("accept", "*/*"), ("user-agent", "gateway-engine-health")]
    url = upstream.auth.apply("GET", upstream.url + "/" + path.lstrip("/"), headers, None)
    reply = await upstream.transport.send("GET", url, headers, None)
    await reply.aclose()
    return None if reply.status == expect else f"HTTP {reply.status}, expected {expect}"


async def _tcp(url: str) -> str | None:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    _, writer = await asyncio.open_connection(parts.hostname, port)
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass  # the connect is what was asked; a reset on close does not make the backend down
    return None
