"""Server-sent events: ``GET <sse path>?channel=payments:u1`` streams one channel as ``text/event-stream``.

Each record's ``id`` names its message; a reconnecting client's ``Last-Event-ID`` replays what the
channel's bounded history holds after it (all of it when the id is older than the history). One channel
per stream, so an id always means a place in that channel. A comment line every heartbeat keeps proxies
from timing the stream out; an ``error`` event (TOKEN_EXPIRED, SLOW_CONSUMER, ...) ends it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator
from typing import Any

import orjson

from gateway_engine.foundation.context import RequestContext
from gateway_engine.foundation.envelope import error_reply
from gateway_engine.foundation.errors import GatewayError
from gateway_engine.foundation.reply import Reply

from .connection import Closed, Connection
from .handshake import Handshake, query_values, seconds_left, ticket_of
from .hub import Hub
from .metrics import REFUSED

_HEADERS = [
    ("content-type", "text/event-stream; charset=utf-8"),
    ("cache-control", "no-cache"),
    ("x-accel-buffering", "no"),  # nginx: pass each record on at once
]
MAX_EVENT_ID = 128


class SseEndpoint:
    def __init__(self, hub: Hub, handshake: Handshake) -> None:
        self.hub, self.handshake = hub, handshake

    async def __call__(self, config: Any, ctx: RequestContext) -> Reply:
        ctx.state["builtin"] = "realtime-sse"
        channels = query_values(ctx.scope, "channel")

        async def respond(identity: dict[str, Any]) -> Reply:
            if ctx.method != "GET":
                allow = {"Allow": "GET"}
                return error_reply(
                    ctx, GatewayError(405, "METHOD_NOT_ALLOWED", "Use GET for an event stream.", headers=allow)
                )
            if len(channels) != 1:
                return error_reply(
                    ctx, GatewayError(400, "INVALID_CHANNEL", "Name exactly one channel: ?channel=<name>.")
                )
            conn = self.hub.open(identity, "sse")
            if isinstance(conn, GatewayError):
                ctx.state["realtime_counted"] = True  # the hub counts its own refusals
                return error_reply(ctx, conn)
            found = self.hub.subscribe(conn, channels[0])
            if isinstance(found, GatewayError):
                self.hub.close(conn)
                ctx.state["realtime_counted"] = True
                return error_reply(ctx, found)
            last = ctx.headers.get("last-event-id")
            backlog = self.hub.since(channels[0], last) if last and len(last) <= MAX_EVENT_ID else []
            stream = self._stream(conn, [p.frame("sse") for p in backlog], seconds_left(identity))
            return Reply(200, list(_HEADERS), stream=stream, close=stream.aclose)

        reply = await self.handshake.answer(ctx, config, ticket_of(ctx.scope), respond)
        if reply.status >= 400 and not ctx.state.get("realtime_counted"):
            REFUSED.labels("sse", str(ctx.state.get("error_code", reply.status))).inc()
        return reply

    async def _stream(self, conn: Connection, backlog: list[bytes], left: float | None) -> AsyncGenerator[bytes, None]:
        try:
            yield b"retry: 3000\n\n" + b"".join(backlog)
            deadline = None if left is None else time.monotonic() + left
            while True:
                wait = self.hub.limits.heartbeat
                if deadline is not None:
                    wait = min(wait, deadline - time.monotonic())
                    if wait <= 0:
                        yield _error("TOKEN_EXPIRED", "The credential expired; reconnect with a fresh one.")
                        return
                try:
                    push = await conn.next(wait=wait)
                except Closed as closed:
                    yield _error(closed.reason, "The stream was closed by the gateway.")
                    return
                yield b": ping\n\n" if push is None else push.frame("sse")
        finally:
            self.hub.close(conn)


def _error(code: str, message: str) -> bytes:
    return b"event: error\ndata: %s\n\n" % orjson.dumps({"code": code, "message": message})
