"""Who is connecting: the handshake runs the request phase of the configured plugin chain (the auth plugin's
own verification of a JWT or key in a header), or redeems a one-use ticket. The identity comes from there,
never from anything the client names about itself; an anonymous connection is refused.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Protocol
from urllib.parse import parse_qsl

from gateway_engine.foundation.context import RequestContext
from gateway_engine.foundation.errors import GatewayError
from gateway_engine.foundation.plugin import Plugin
from gateway_engine.foundation.reply import Reply

MAX_TICKET = 128


class Tickets(Protocol):
    ttl: float

    async def issue(self, identity: dict[str, Any]) -> str: ...

    async def redeem(self, ticket: str) -> dict[str, Any] | None: ...

    async def aclose(self) -> None: ...


class Handshake:
    def __init__(self, plugins: tuple[Plugin, ...], tickets: Tickets) -> None:
        self.plugins = tuple(p for p in plugins if type(p).on_request is not Plugin.on_request)
        self.tickets = tickets

    async def identify(self, ctx: RequestContext, ticket: str | None) -> dict[str, Any] | GatewayError:
        """The caller's identity, or the error that refuses it."""
        if ticket is not None:
            if not 0 < len(ticket) <= MAX_TICKET:
                return _bad_ticket()
            identity = await self.tickets.redeem(ticket)
            if identity is None:
                return _bad_ticket()
            if expired(identity):
                return GatewayError(401, "TOKEN_EXPIRED", "The credential the ticket was issued for has expired.")
            return identity
        ctx.state["_raw_params"] = {}
        for plugin in self.plugins:
            result = await plugin.on_request(ctx)
            if isinstance(result, GatewayError):
                return result
            if isinstance(result, Reply):
                await result.aclose()
                return GatewayError(400, "HANDSHAKE_REFUSED", "The handshake was answered by a plugin.")
        if not ctx.identity:
            return GatewayError(401, "UNAUTHENTICATED", "Realtime connections must authenticate.")
        return dict(ctx.identity)


def query_values(scope: Mapping[str, Any], name: str) -> list[str]:
    text = scope.get("query_string", b"").decode("latin-1")
    return [v for k, v in parse_qsl(text, keep_blank_values=True, errors="replace") if k == name]


def ticket_of(scope: Mapping[str, Any]) -> str | None:
    found = query_values(scope, "ticket")
    return found[-1] if found else None


def expires_at(identity: Mapping[str, Any]) -> float | None:
    """When the credential behind ``identity`` stops being valid (a JWT's ``exp``), as a UNIX time."""
    claims = identity.get("claims")
    exp = claims.get("exp") if isinstance(claims, Mapping) else None
    return float(exp) if isinstance(exp, (int, float)) and not isinstance(exp, bool) else None


def expired(identity: Mapping[str, Any]) -> bool:
    exp = expires_at(identity)
    return exp is not None and exp <= time.time()


def seconds_left(identity: Mapping[str, Any]) -> float | None:
    exp = expires_at(identity)
    return None if exp is None else max(0.0, exp - time.time())


def _bad_ticket() -> GatewayError:
    return GatewayError(401, "INVALID_TICKET", "The ticket is unknown, expired or already used.")
