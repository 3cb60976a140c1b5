"""The transport seam: how bytes reach an upstream, and the registry that finds transports by name.

The proxy only calls ``Transport.send``; a new kind of upstream is a new transport,
registered under the ``gateway_engine.transports`` entry-point group (the built-ins
too: ``http1``, ``aiohttp``, ``httpx``) or contributed by a feature. This module never
imports a transport: ``transport_factories`` loads the entry points when a config asks.
``http1`` (``http1.py``) is the default because it measured fastest here (see
docs/performance.md).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Protocol

from gateway_engine.foundation.errors import GatewayError
from gateway_engine.foundation.reply import Reply

#: bodies up to this size are read at once instead of streamed (fewer awaits per request)
_SMALL_BODY = 256 * 1024


@dataclass(frozen=True)
class Timeouts:
    """Seconds: ``connect`` to open a connection, ``read`` between bytes, ``total`` until the headers."""

    connect: float = 5.0
    read: float = 30.0
    total: float = 30.0


class Transport(Protocol):
    async def send(
        self, method: str, url: str, headers: list[tuple[str, str]], body: bytes | AsyncIterator[bytes] | None
    ) -> Reply: ...

    async def aclose(self) -> None: ...


def timeout_error(total: float) -> GatewayError:
    return GatewayError(504, "UPSTREAM_TIMEOUT", f"The upstream did not answer within {total:g}s.")


def unavailable_error() -> GatewayError:
    return GatewayError(502, "UPSTREAM_UNAVAILABLE", "The upstream refused or dropped the connection.")


def protocol_error(message: str = "The upstream sent an invalid or incomplete response.") -> GatewayError:
    return GatewayError(502, "UPSTREAM_ERROR", message)


#: a transport class (or factory) takes ``timeouts`` and ``max_connections`` keywords. Optional attributes:
#: ``schemes`` (the URL schemes it accepts), ``options`` (upstream keys it also gets, env resolved, as
#: ``options={...}``) and ``base_url(upstream) -> str`` (its address when the upstream has no ``url``)
TransportFactory = Callable[..., Transport]
ENTRY_POINT_GROUP = "gateway_engine.transports"
HTTP_SCHEMES = ("http://", "https://")
_installed: dict[str, TransportFactory] | None = None


def transport_factories() -> Mapping[str, TransportFactory]:
    """The installed transports by name, loaded from their entry points once per process."""
    global _installed
    if _installed is None:
        _installed = {ep.name: ep.load() for ep in entry_points(group=ENTRY_POINT_GROUP)}
    return _installed


def url_schemes(factory: TransportFactory) -> tuple[str, ...]:
    """The URL schemes a transport accepts (its ``schemes`` attribute; HTTP by default)."""
    return tuple(getattr(factory, "schemes", HTTP_SCHEMES))
