"""Short-lived, one-use connection tickets for browsers, which cannot set headers on a WebSocket or EventSource.

An authenticated caller asks for a ticket (a POST with its usual credentials) and connects with
``?ticket=...`` within seconds. A ticket is 256 random bits, stored by its SHA-256 digest, and redeemed at
most once (Redis ``GETDEL`` across instances); it carries the identity it was issued to, so a token's
expiry still closes the socket when that time comes.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections import OrderedDict
from typing import Any

import orjson
import redis.asyncio as aioredis

from gateway_engine.foundation.context import RequestContext
from gateway_engine.foundation.envelope import error_reply, success_body
from gateway_engine.foundation.errors import GatewayError
from gateway_engine.foundation.reply import Reply

_OUTSTANDING = 100000  # memory store bound: the oldest unredeemed ticket goes first
_UNREACHABLE = GatewayError(503, "REALTIME_STORE_UNAVAILABLE", "Tickets cannot be issued or checked right now; retry.")


def _digest(ticket: str) -> str:
    return hashlib.sha256(ticket.encode("utf-8", "replace")).hexdigest()


class MemoryTickets:
    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._tickets: OrderedDict[str, tuple[float, dict[str, Any]]] = OrderedDict()

    async def issue(self, identity: dict[str, Any]) -> str:
        now = time.monotonic()
        while self._tickets and (len(self._tickets) >= _OUTSTANDING or next(iter(self._tickets.values()))[0] < now):
            self._tickets.popitem(last=False)
        ticket = secrets.token_urlsafe(32)
        self._tickets[_digest(ticket)] = (now + self.ttl, identity)
        return ticket

    async def redeem(self, ticket: str) -> dict[str, Any] | None:
        found = self._tickets.pop(_digest(ticket), None)
        if found is None or found[0] < time.monotonic():
            return None
        return found[1]

    async def aclose(self) -> None:
        self._tickets.clear()


class RedisTickets:
    def __init__(self, url: str, prefix: str, ttl: float) -> None:
        self.ttl, self.prefix = ttl, prefix
        self._client: Any = aioredis.from_url(url)

    async def issue(self, identity: dict[str, Any]) -> str:
        ticket = secrets.token_urlsafe(32)
        value = orjson.dumps(identity, default=str)
        try:
            await self._client.set(f"{self.prefix}:{_digest(ticket)}", value, px=max(1, int(self.ttl * 1000)))
        except (aioredis.RedisError, OSError):
            raise _UNREACHABLE from None
        return ticket

    async def redeem(self, ticket: str) -> dict[str, Any] | None:
        try:
            raw = await self._client.getdel(f"{self.prefix}:{_digest(ticket)}")
        except (aioredis.RedisError, OSError):  # fail closed: a ticket that cannot be checked is no credential
            raise _UNREACHABLE from None
        return orjson.loads(raw) if raw else None

    async def aclose(self) -> None:
        await self._client.aclose()


class TicketEndpoint:
    """``POST <tickets path>`` with the caller's usual credentials → ``{ticket, expiresIn}`` (201, no-store)."""

    def __init__(self, handshake: Any, tickets: Any) -> None:
        self.handshake, self.tickets = handshake, tickets

    async def __call__(self, config: Any, ctx: RequestContext) -> Reply:
        ctx.state["builtin"] = "realtime-tickets"

        async def respond(identity: dict[str, Any]) -> Reply:
            if ctx.method != "POST":
                error = GatewayError(405, "METHOD_NOT_ALLOWED", "Use POST to get a ticket.", headers={"Allow": "POST"})
                return error_reply(ctx, error)
            ticket = await self.tickets.issue(identity)
            body = success_body(ctx, orjson.dumps({"ticket": ticket, "expiresIn": self.tickets.ttl}))
            return Reply(201, [("content-type", "application/json"), ("cache-control", "no-store")], body)

        return await self.handshake.answer(ctx, config, None, respond)  # never a ticket for a ticket
