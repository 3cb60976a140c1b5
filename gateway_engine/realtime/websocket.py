"""The WebSocket endpoint (Starlette's ``WebSocket``): JSON frames to subscribe, unsubscribe and ping.

Client frames: ``{"type": "subscribe", "channel": "payments:u1", "last_id"?: "..."}``,
``{"type": "unsubscribe", "channel": ...}``, ``{"type": "ping"}`` (answered ``pong``), ``{"type": "pong"}``.
Server frames: ``message`` (id, channel, event, data), ``subscribed``, ``unsubscribed``, ``pong``, ``ping``
(every heartbeat when idle) and ``error`` (code, message). Close codes: 4401 the credential expired,
4408 nothing heard for two heartbeats, 4429 too slow a consumer, 1009 too large a frame, 1012 the config
was replaced (reconnect).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import orjson
from starlette.websockets import WebSocket, WebSocketDisconnect

from gateway_engine.foundation.errors import GatewayError
from gateway_engine.runtime.sockets import refuse_socket, socket_context

from .connection import Closed, Connection
from .handshake import Handshake, seconds_left, ticket_of
from .hub import Hub
from .metrics import REFUSED

EXPIRED = Closed(4401, "TOKEN_EXPIRED")
SILENT = Closed(4408, "HEARTBEAT_TIMEOUT")
TOO_LARGE = Closed(1009, "MESSAGE_TOO_LARGE")


class WebSocketEndpoint:
    def __init__(self, hub: Hub, handshake: Handshake) -> None:
        self.hub, self.handshake = hub, handshake

    async def __call__(self, config: Any, scope: dict[str, Any], receive: Any, send: Any) -> None:
        identity = await self.handshake.identify(socket_context(scope, receive), ticket_of(scope))
        if isinstance(identity, GatewayError):
            REFUSED.labels("websocket", identity.code).inc()
            await refuse_socket(scope, receive, send, identity)
            return
        conn = self.hub.open(identity, "websocket")
        if isinstance(conn, GatewayError):
            await refuse_socket(scope, receive, send, conn)
            return
        ws = WebSocket(scope, receive, send)
        try:
            await ws.accept()
            why = await self._run(ws, conn)
        except (WebSocketDisconnect, OSError, RuntimeError):
            why = None  # the client went away
        finally:
            self.hub.close(conn)
        if why is not None:
            with contextlib.suppress(Exception):
                await ws.close(why.code, why.reason)

    async def _run(self, ws: WebSocket, conn: Connection) -> Closed | None:
        tasks = [asyncio.create_task(self._read(ws, conn)), asyncio.create_task(self._write(ws, conn))]
        left = seconds_left(conn.identity)
        if left is not None:
            tasks.append(asyncio.create_task(_expire(left)))
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        first = next(iter(done))
        failure = first.exception()
        if isinstance(failure, Closed):
            return failure
        if failure is not None:
            raise failure
        return first.result()

    async def _read(self, ws: WebSocket, conn: Connection) -> Closed | None:
        limit = self.hub.limits.message_bytes
        while True:
            try:
                async with asyncio.timeout(2 * self.hub.limits.heartbeat):
                    message = await ws.receive()
            except TimeoutError:
                return SILENT
            if message["type"] == "websocket.disconnect":
                return None
            raw = message.get("text") if message.get("text") is not None else message.get("bytes")
            if raw is None:
                continue
            if len(raw) > limit:
                return TOO_LARGE
            await self._handle(ws, conn, raw)

    async def _handle(self, ws: WebSocket, conn: Connection, raw: str | bytes) -> None:
        try:
            frame = orjson.loads(raw)
        except orjson.JSONDecodeError:
            frame = None
        kind = frame.get("type") if isinstance(frame, dict) else None
        if kind == "ping":
            await _send(ws, {"type": "pong"})
        elif kind == "pong":
            pass
        elif kind == "subscribe":
            name = frame.get("channel") if isinstance(frame, dict) else None
            found = self.hub.subscribe(conn, name)
            if isinstance(found, GatewayError):
                await _send(ws, {"type": "error", "code": found.code, "message": found.message, "channel": name})
                return
            await _send(ws, {"type": "subscribed", "channel": name})
            last = frame.get("last_id") if isinstance(frame, dict) else None
            if isinstance(last, str) and isinstance(name, str):
                for push in self.hub.since(name, last):
                    await ws.send_text(push.frame("ws").decode())
        elif kind == "unsubscribe":
            name = frame.get("channel") if isinstance(frame, dict) else None
            self.hub.unsubscribe(conn, name)
            await _send(ws, {"type": "unsubscribed", "channel": name})
        else:
            await _send(
                ws,
                {
                    "type": "error",
                    "code": "BAD_MESSAGE",
                    "message": "Send JSON {type: subscribe|unsubscribe|ping|pong, channel?}.",
                },
            )

    async def _write(self, ws: WebSocket, conn: Connection) -> Closed | None:
        while True:
            push = await conn.next(wait=self.hub.limits.heartbeat)  # raises Closed once closed
            if push is None:
                await _send(ws, {"type": "ping"})
            else:
                await ws.send_text(push.frame("ws").decode())


async def _expire(after: float) -> Closed:
    await asyncio.sleep(after)
    return EXPIRED


async def _send(ws: WebSocket, frame: dict[str, Any]) -> None:
    await ws.send_text(orjson.dumps(frame).decode())
