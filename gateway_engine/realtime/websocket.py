"""The WebSocket endpoint (Starlette's ``WebSocket``): JSON frames to subscribe, unsubscribe and ping.

Client frames: ``{"type": "subscribe", "channel": "payments:u1", "last_id"?: "..."}``,
``{"type": "unsubscribe", "channel": ...}``, ``{"type": "ping"}`` (answered ``pong``), ``{"type": "pong"}``.
Server frames: ``message`` (id, channel, event, data), ``subscribed``, ``unsubscribed``, ``pong``, ``ping``
(every heartbeat when idle) and ``error`` (code, message). Close codes: 4401 the credential expired,
4408 nothing heard for two heartbeats, 4429 too slow a consumer, 1009 too large a frame, 1012 the config
was replaced (reconnect).

An idle socket costs no task of its own: its frames are written by a drain task that runs only while
messages wait, and one sweeper per endpoint sends heartbeats and closes silent or expired sockets.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from starlette.websockets import WebSocket, WebSocketDisconnect

from gateway_engine.foundation.errors import GatewayError
from gateway_engine.runtime.sockets import refuse_socket, socket_context

from .connection import Closed, Connection
from .handshake import Handshake, expires_at, ticket_of
from .hub import Hub
from .metrics import REFUSED

EXPIRED = Closed(4401, "TOKEN_EXPIRED")
SILENT = Closed(4408, "HEARTBEAT_TIMEOUT")
TOO_LARGE = Closed(1009, "MESSAGE_TOO_LARGE")
LEFT = Closed(1000, "CLIENT_LEFT")
_PING = orjson.dumps({"type": "ping"}).decode()
SWEEP = 1.0  # seconds between sweeps: the precision of expiry and heartbeats


class _Session:
    """One accepted socket: its connection, its clock, and its drain task while one runs."""

    __slots__ = ("ws", "conn", "expires", "heard", "sent", "ping", "drain")

    def __init__(self, ws: WebSocket, conn: Connection, expires: float | None, now: float) -> None:
        self.ws, self.conn, self.expires = ws, conn, expires
        self.heard = self.sent = now
        self.ping = False
        self.drain: asyncio.Task[None] | None = None

    def wake(self) -> None:
        if self.drain is None:
            self.drain = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        try:
            while True:
                if self.ping:
                    self.ping = False
                    await self.ws.send_text(_PING)
                push = self.conn.take()
                if push is None:
                    break
                await self.ws.send_text(push.text())
                self.sent = asyncio.get_running_loop().time()
            closed = self.conn.closed
            if closed is not None and closed is not LEFT:
                await self.ws.close(closed.code, closed.reason)
        except Exception:
            pass  # the client went away: its reader sees the disconnect and cleans up
        finally:
            self.drain = None


class WebSocketEndpoint:
    def __init__(self, hub: Hub, handshake: Handshake) -> None:
        self.hub, self.handshake = hub, handshake
        self.sessions: set[_Session] = set()
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep())

    async def aclose(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
            self._sweeper = None

    async def __call__(self, config: Any, scope: dict[str, Any], receive: Any, send: Any) -> None:
        identity = await self.handshake.identify(socket_context(scope), ticket_of(scope))
        if isinstance(identity, GatewayError):
            REFUSED.labels("websocket", identity.code).inc()
            await refuse_socket(scope, receive, send, identity)
            return
        conn = self.hub.open(identity, "websocket")
        if isinstance(conn, GatewayError):
            await refuse_socket(scope, receive, send, conn)
            return
        ws = WebSocket(scope, receive, send)
        session = _Session(ws, conn, expires_at(identity), asyncio.get_running_loop().time())
        conn.notify = session.wake
        try:
            await ws.accept()
            self.sessions.add(session)
            await self._read(session)
        except (WebSocketDisconnect, OSError, RuntimeError):
            pass  # the client went away
        finally:
            self.sessions.discard(session)
            conn.notify = None
            self.hub.close(conn, LEFT)
            if session.drain is not None:
                session.drain.cancel()

    async def _read(self, session: _Session) -> None:
        limit = self.hub.limits.message_bytes
        loop = asyncio.get_running_loop()
        while True:
            message = await session.ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            session.heard = loop.time()
            raw = message.get("text") if message.get("text") is not None else message.get("bytes")
            if raw is None or session.conn.closed is not None:
                continue  # closing: wait for the client's close
            if len(raw) > limit:
                self.hub.close(session.conn, TOO_LARGE)
                continue
            await self._handle(session.ws, session.conn, raw)

    async def _sweep(self) -> None:
        heartbeat = self.hub.limits.heartbeat
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(SWEEP)
            now, wall = loop.time(), time.time()
            for session in tuple(self.sessions):
                if session.conn.closed is not None:
                    continue
                if session.expires is not None and session.expires <= wall:
                    self.hub.close(session.conn, EXPIRED)
                elif now - session.heard > 2 * heartbeat:
                    self.hub.close(session.conn, SILENT)
                elif now - session.sent >= heartbeat:
                    session.sent = now
                    session.ping = True
                    session.wake()

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
                    await ws.send_text(push.text())
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


async def _send(ws: WebSocket, frame: dict[str, Any]) -> None:
    await ws.send_text(orjson.dumps(frame).decode())
