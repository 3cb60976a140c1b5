"""Who is connecting: the handshake runs the realtime plugin chain (the gateway's default chain with the
``server.plugins`` overrides, as on a route: the auth plugin's own verification of a JWT or key in a header),
or redeems a one-use ticket and runs that chain without ``auth``. The identity comes from there, never from
anything the client names about itself; an anonymous connection is refused.

A WebSocket or Socket.IO handshake runs the request phase only; the SSE and ticket endpoints run the whole
pipeline (CORS, request ids and logs in the response phase) around their answer.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol
from urllib.parse import parse_qsl

from gateway_engine.compiled.chains import chain_tables
from gateway_engine.compiled.model import PluginChain
from gateway_engine.foundation.context import RequestContext
from gateway_engine.foundation.envelope import error_reply
from gateway_engine.foundation.errors import GatewayError
from gateway_engine.foundation.plugin import Plugin
from gateway_engine.foundation.reply import Reply
from gateway_engine.runtime.app import run_pipeline

MAX_TICKET = 128


class Tickets(Protocol):
    ttl: float

    async def issue(self, identity: dict[str, Any]) -> str: ...

    async def redeem(self, ticket: str) -> dict[str, Any] | None: ...

    async def aclose(self) -> None: ...


class Handshake:
    def __init__(self, plugins: tuple[Plugin, ...], tickets: Tickets) -> None:
        self.chain = PluginChain(*chain_tables(plugins))
        # a ticket is the credential: the chain it runs with has no auth plugin to ask for another
        self.ticketed = PluginChain(*chain_tables(tuple(p for p in plugins if p.name != "auth")))
        self.tickets = tickets

    async def _redeem(self, ctx: RequestContext, ticket: str | None) -> PluginChain | GatewayError:
        """The chain to run: with a valid ticket, its identity is set and ``auth`` is left out."""
        if ticket is None:
            return self.chain
        if not 0 < len(ticket) <= MAX_TICKET:
            return _bad_ticket()
        try:
            identity = await self.tickets.redeem(ticket)
        except GatewayError as err:  # the ticket store is unreachable: a 503, never the 500 of a raised error
            return err
        if identity is None:
            return _bad_ticket()
        if expired(identity):
            return GatewayError(401, "TOKEN_EXPIRED", "The credential the ticket was issued for has expired.")
        ctx.identity = identity
        return self.ticketed

    async def identify(self, ctx: RequestContext, ticket: str | None) -> dict[str, Any] | GatewayError:
        """The request phase only (a WebSocket or Socket.IO handshake): the identity, or why it is refused."""
        chain = await self._redeem(ctx, ticket)
        if isinstance(chain, GatewayError):
            return chain
        ctx.state["_raw_params"] = {}
        for plugin in chain.request_plugins:
            result = await plugin.on_request(ctx)
            if isinstance(result, GatewayError):
                return result
            if isinstance(result, Reply):
                await result.aclose()
                return GatewayError(400, "HANDSHAKE_REFUSED", "The handshake was answered by a plugin.")
        return dict(ctx.identity) if ctx.identity else _anonymous()

    async def answer(
        self,
        ctx: RequestContext,
        config: Any,
        ticket: str | None,
        respond: Callable[[dict[str, Any]], Awaitable[Reply]],
    ) -> Reply:
        """The whole pipeline around ``respond(identity)`` (SSE, tickets), as for a route."""
        ctx.state["_raw_params"] = {}
        chain = await self._redeem(ctx, ticket)
        if isinstance(chain, GatewayError):
            failed = chain
            return await run_pipeline(ctx, self.ticketed, config, terminal=lambda: error_reply(ctx, failed))

        async def terminal() -> Reply:
            if not ctx.identity:
                return error_reply(ctx, _anonymous())
            return await respond(dict(ctx.identity))

        return await run_pipeline(ctx, chain, config, terminal=terminal)


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


def _anonymous() -> GatewayError:
    return GatewayError(401, "UNAUTHENTICATED", "Realtime connections must authenticate.")


def _bad_ticket() -> GatewayError:
    return GatewayError(401, "INVALID_TICKET", "The ticket is unknown, expired or already used.")
