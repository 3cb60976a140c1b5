"""A load-time check for built-in services that read the caller's identity from forwarded headers.

Such a service (workflows, the key admin API, webhook subscriptions) trusts only the identity headers the
auth plugin sets, never a client's copy: every route to it must run ``auth`` (not optional) forwarding
exactly those headers, or the config is refused with the route's file and line.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from gateway_engine.compiled.model import CompiledRoute
from gateway_engine.foundation.errors import ConfigError


def check_identity_forwarding(
    routes: Iterable[CompiledRoute], required: Mapping[str, str], what: str, errors: list[ConfigError]
) -> None:
    """Report each route that does not forward ``required`` (identity field → header name) through auth."""
    for route in routes:
        auth = next((p for p in route.plugins if p.name == "auth"), None)
        forward = (auth.options.get("forward_identity") or {}) if auth is not None else {}
        headers = {k: v.lower() for k, v in forward.get("headers", {}).items()}
        wrong = [k for k, v in required.items() if headers.get(k) != v]
        if auth is None or auth.options.get("optional") or not forward.get("enabled") or wrong:
            errors.append(
                ConfigError(
                    f"a {what} route needs the auth plugin (not optional) with forward_identity enabled and headers "
                    + ", ".join(f"{k}: {v}" for k, v in required.items()),
                    file=route.source_file,
                    line=route.source_line,
                    col=5,
                    path=f"routes[{route.name}]",
                )
            )
