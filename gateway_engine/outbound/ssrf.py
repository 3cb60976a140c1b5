"""Which addresses the gateway may deliver to: never private, loopback, link-local, multicast or reserved.

A host is refused if ANY of its addresses is (an attacker controlling DNS could otherwise mix a
public and a private one), IPv6 that carries an IPv4 address (mapped, 6to4, Teredo, NAT64) is
judged by that IPv4 address, and the connection
goes to the very addresses checked: ``CheckedResolver`` is the resolver the HTTP client uses, so
there is no second lookup for a rebinding DNS server to answer differently. The config's
``allow_cidrs`` lets chosen networks through (a partner on the private network, tests on 127.0.0.1).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from typing import Any

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from .settings import Network

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # well-known NAT64 prefix: the last 32 bits are an IPv4 address


class Refused(OSError):
    """A destination the rules forbid; the message says why, never which address (tenants read it)."""


def forbidden(address: Address) -> str | None:
    """Why ``address`` may not be delivered to, or None."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour or (address.teredo[1] if address.teredo else None)
        if embedded is None and address in NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:  # an IPv4 address in IPv6 clothing is judged as that IPv4 address
            return forbidden(embedded)
    for test, why in (
        (address.is_loopback, "loopback"),
        (address.is_private, "private"),
        (address.is_link_local, "link-local"),
        (address.is_multicast, "multicast"),
        (address.is_reserved, "reserved"),
        (address.is_unspecified, "unspecified"),
        (not address.is_global, "not globally routable"),
    ):
        if test:
            return why
    return None


def check(address: Address, allow: Sequence[Network]) -> None:
    """Raise ``Refused`` unless ``address`` is public or in an allowed network."""
    if any(address.version == net.version and address in net for net in allow):
        return
    why = forbidden(address)
    if why is not None:  # the address itself is not told: a tenant could map internal names with it
        raise Refused(f"an address of the host is {why}")


def literal(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


class CheckedResolver(AbstractResolver):
    """Resolves like the system does, then refuses the host if any address is forbidden."""

    def __init__(self, allow: Sequence[Network]) -> None:
        self.allow = tuple(allow)
        self.inner = ThreadedResolver()

    async def resolve(self, host: str, port: int = 0, family: Any = socket.AF_INET) -> list[ResolveResult]:
        found = await self.inner.resolve(host, port, family)
        if not found:
            raise Refused(f"{host} has no address")
        for entry in found:
            check(ipaddress.ip_address(entry["host"]), self.allow)
        return found

    async def close(self) -> None:
        await self.inner.close()


async def check_host(host: str, allow: Sequence[Network]) -> None:
    """Refuse ``host`` now (registration): an address literal, or every address it resolves to."""
    address = literal(host)
    if address is not None:
        check(address, allow)
        return
    resolver = CheckedResolver(allow)
    try:
        await resolver.resolve(host, 0, socket.AF_UNSPEC)
    except Refused:
        raise
    except OSError as exc:
        raise Refused(f"{host} does not resolve") from exc
    finally:
        await resolver.close()
