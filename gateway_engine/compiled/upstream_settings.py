"""An upstream's settings read from YAML: timeouts, resilience policies, the base URL's shape, owned query names."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote_plus, urlsplit

from gateway_engine.compiled.model import Upstream, query_name
from gateway_engine.config.durations import parse_duration
from gateway_engine.config.env import Interpolation
from gateway_engine.upstreams.resilience import BreakerPolicy, BulkheadPolicy, RetryPolicy
from gateway_engine.upstreams.seam import Timeouts


def policies(spec: dict[str, Any]) -> tuple[RetryPolicy, BreakerPolicy, BulkheadPolicy]:
    r, b, h = spec.get("retry"), spec.get("circuit_breaker"), spec.get("bulkhead")
    retry = (
        RetryPolicy()
        if r is None
        else RetryPolicy(
            attempts=r.get("attempts", 3),
            statuses=frozenset(r.get("statuses", [502, 503, 504])),
            backoff=parse_duration(r.get("backoff", "100ms")),
            max_backoff=parse_duration(r.get("max_backoff", "2s")),
            idempotent_post=r.get("idempotent_post", False),
        )
    )
    breaker = (
        BreakerPolicy()
        if b is None
        else BreakerPolicy(
            failures=b.get("failures", 5),
            window=parse_duration(b.get("window", "30s")),
            open_for=parse_duration(b.get("open_for", "30s")),
            half_open_probes=b.get("half_open_probes", 1),
        )
    )
    bulkhead = (
        BulkheadPolicy()
        if h is None
        else BulkheadPolicy(
            max_concurrent=h["max_concurrent"], queue_timeout=parse_duration(h.get("queue_timeout", "1s"))
        )
    )
    return retry, breaker, bulkhead


def timeouts_of(value: Any, interp: Interpolation) -> Timeouts:
    if value is None:
        return Timeouts()
    if isinstance(value, dict):
        total = parse_duration(interp.tree(value.get("total", 30)))
        return Timeouts(
            connect=parse_duration(interp.tree(value.get("connect", min(5.0, total)))),
            read=parse_duration(interp.tree(value.get("read", total))),
            total=total,
        )
    total = parse_duration(interp.tree(value))
    return Timeouts(connect=min(5.0, total), read=total, total=total)


def owned_query(spec: Any, upstream: Upstream | None) -> frozenset[str]:
    owned = {query_name(k) for k in spec.get("set", {})} if isinstance(spec, dict) else set()
    auth_query = getattr(upstream.auth, "query", "") if upstream is not None else ""
    if auth_query:
        owned.add(query_name(unquote_plus(auth_query.partition("=")[0])))
    return frozenset(owned)


def url_problem(url: str, schemes: tuple[str, ...]) -> str | None:
    """Why ``url`` cannot be an upstream base (paths are appended to it as text), or None."""
    if not url.startswith(schemes):
        return f"must start with {' or '.join(schemes)}"
    if "?" in url or "#" in url:
        return "must not hold a query or fragment (send a key with upstream.auth style: query)"
    if "\\" in url or any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        return "must not hold a backslash, whitespace or control characters"
    parts = urlsplit(url)
    try:
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        port_ok = False
    if not port_ok:
        return "has an invalid port"
    return None if parts.hostname else "has no host"


def safe_url(url: str) -> str:
    """A URL as written, for messages: userinfo and query values masked (``${VAR}`` text stays as it is)."""
    url = re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://)?[^/?#@]*@", r"\1***@", url)
    return re.sub(r"([?&;][^=&#]*)=[^&#]*", r"\1=***", url)[:120]
