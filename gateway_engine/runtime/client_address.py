"""Who the client is: the TCP peer, or the address the trusted proxies in front of the gateway appended."""

from __future__ import annotations

import ipaddress
from typing import Any


def client_ip(scope: dict[str, Any], peer: str, trusted: int) -> str:
    """The client address: ``trusted`` hops from the right of every X-Forwarded-For line read as one list (RFC 9110
    5.3: the client's own line comes first, each proxy appends). Fewer hops than trusted proxies, or an entry that is
    not an address, means the chain is not the proxies' own: the TCP peer is the client then, never a forged value."""
    if trusted <= 0:
        return peer
    hops: list[str] = []
    for k, v in scope["headers"]:
        if k.lower() == b"x-forwarded-for":
            hops += [h for h in (e.strip() for e in v.decode("latin-1").split(",")) if h]  # empty elements are ignored
    if len(hops) < trusted:
        return peer
    return address(hops[-trusted]) or peer


def address(text: str) -> str | None:
    """``text`` as a canonical IP address (``[v6]:port`` and ``v4:port`` as some proxies write them), or None."""
    if text.startswith("["):
        end = text.find("]")
        text = text[1:end] if end > 0 else ""
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None
