"""ip_filter: allow or deny clients by IP address or CIDR block (IPv4 and IPv6)."""

from __future__ import annotations

import ipaddress
from typing import Any

from gateway_engine import GatewayError, Plugin, RequestContext

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(items: list[str]) -> tuple[Network, ...]:
    """``10.0.0.0/8``, ``2001:db8::/32`` or a single address; ValueError names the bad item."""
    networks = []
    for item in items:
        try:
            networks.append(ipaddress.ip_network(item.strip(), strict=True))
        except ValueError as exc:
            hint = ""
            try:
                hint = f"; did you mean {ipaddress.ip_network(item.strip(), strict=False)}?"
            except ValueError:
                pass
            raise ValueError(f"{item!r} is not an IP address or CIDR block ({exc}){hint}") from None
    return tuple(networks)


def client_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The client IP as an address (IPv4-mapped IPv6 unwrapped), or None when it is not one."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class IpFilterPlugin(Plugin):
    """Runs first (priority 3000): a blocked client costs one lookup and nothing else.

    The client IP is ``ctx.client_ip``, so the gateway's ``trusted_proxies`` decides
    how much of ``X-Forwarded-For`` is believed. ``deny`` wins over ``allow``; with an
    ``allow`` list, an address that cannot be parsed is refused.
    """

    name = "ip_filter"
    priority = 3000
    runs_unrouted = True
    options_schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "allow": {
                "type": "array",
                "items": {"type": "string"},
                "default": [],
                "description": "Addresses or CIDR blocks allowed; when empty, every address not denied is allowed.",
            },
            "deny": {
                "type": "array",
                "items": {"type": "string"},
                "default": [],
                "description": "Addresses or CIDR blocks refused with 403 IP_FORBIDDEN; deny wins over allow.",
            },
        },
    }

    def __init__(self, options: dict[str, Any], gateway: Any) -> None:
        super().__init__(options, gateway)
        self.allow = parse_networks(options["allow"])
        self.deny = parse_networks(options["deny"])

    @classmethod
    def check_options(cls, options: dict[str, Any]) -> list[str]:
        problems = []
        for key in ("allow", "deny"):
            for item in options.get(key, []):
                try:
                    parse_networks([item])
                except ValueError as exc:
                    problems.append(f"{key}: {exc}")
        return problems

    def permits(self, text: str) -> bool:
        address = client_address(text)
        if address is None:
            return not self.allow
        if any(address in net for net in self.deny):
            return False
        return not self.allow or any(address in net for net in self.allow)

    async def on_request(self, ctx: RequestContext) -> GatewayError | None:
        if self.permits(ctx.client_ip):
            return None
        return GatewayError(403, "IP_FORBIDDEN", "Requests from this IP address are not allowed.")
