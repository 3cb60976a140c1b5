"""A Socket.IO server (python-socketio's ASGI app) on one namespace, for clients written against Socket.IO.

At connect the caller authenticates as on every realtime endpoint (a header credential, or
``auth={"ticket": ...}``), and joins its own rooms: the configured channel patterns filled from its identity
(``payments:{user}`` with its own user id). Each channel message is emitted as its event name
(``payment-status-update``) with its data. A ``register_event`` (``register-user``) naming anyone but the
caller is refused; naming the caller is acknowledged and changes nothing, since the rooms came from the
identity already.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway_engine.foundation.errors import GatewayError
from gateway_engine.runtime.sockets import socket_context

from .channels import Channel
from .connection import Closed, Connection
from .handshake import Handshake, seconds_left
from .hub import Hub
from .metrics import REFUSED


@dataclass(frozen=True)
class SocketIoSettings:
    path: str  # full path of the Socket.IO endpoint, e.g. /socket.io
    namespace: str
    rooms: tuple[Channel, ...]
    register_event: str | None
    origins: tuple[str, ...] | None  # None: same origin only


class SocketIoEndpoint:
    def __init__(self, hub: Hub, handshake: Handshake, settings: SocketIoSettings) -> None:
        import socketio  # loads only for configs with a Socket.IO server

        self.hub, self.handshake, self.settings = hub, handshake, settings
        self.refused = socketio.exceptions.ConnectionRefusedError
        self.server = socketio.AsyncServer(
            async_mode="asgi",
            cors_allowed_origins=list(settings.origins) if settings.origins is not None else None,
            ping_interval=hub.limits.heartbeat,
            ping_timeout=min(20.0, hub.limits.heartbeat),
            max_http_buffer_size=hub.limits.message_bytes,
            namespaces=[settings.namespace],
            logger=False,
            engineio_logger=False,
        )
        self.app = socketio.ASGIApp(self.server, socketio_path=settings.path.strip("/"))
        self.sessions: dict[str, tuple[Connection, asyncio.Task[None]]] = {}
        ns = settings.namespace
        self.server.on("connect", self._connect, namespace=ns)
        self.server.on("disconnect", self._disconnect, namespace=ns)
        if settings.register_event:
            self.server.on(settings.register_event, self._register, namespace=ns)

    async def __call__(self, config: Any, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)

    async def _connect(self, sid: str, environ: Mapping[str, Any], auth: Any = None) -> None:
        ticket = auth.get("ticket") if isinstance(auth, dict) and isinstance(auth.get("ticket"), str) else None
        scope = environ["asgi.scope"]
        identity = await self.handshake.identify(socket_context(scope), ticket)
        if isinstance(identity, GatewayError):
            REFUSED.labels("socketio", identity.code).inc()
            raise self.refused({"code": identity.code, "message": identity.message})
        conn = self.hub.open(identity, "socketio")
        if isinstance(conn, GatewayError):
            raise self.refused({"code": conn.code, "message": conn.message})
        for room in self.settings.rooms:
            name = room.name(own_values(room, identity))
            joined = self.hub.subscribe(conn, name) if name is not None else None
            if not isinstance(joined, Channel):
                self.hub.close(conn)
                raise self.refused({"code": "FORBIDDEN", "message": f"This identity has no room of {room.pattern}."})
        self.sessions[sid] = (conn, asyncio.create_task(self._pump(sid, conn, seconds_left(identity))))

    async def _pump(self, sid: str, conn: Connection, left: float | None) -> None:
        ns = self.settings.namespace
        deadline = None if left is None else asyncio.get_running_loop().time() + left
        try:
            while True:
                wait = None if deadline is None else deadline - asyncio.get_running_loop().time()
                if wait is not None and wait <= 0:
                    raise Closed(4401, "TOKEN_EXPIRED")
                push = await conn.next(wait=wait)
                if push is not None:
                    await self.server.emit(push.event, push.data, to=sid, namespace=ns)
        except Closed as closed:
            await self.server.emit("error", {"code": closed.reason}, to=sid, namespace=ns)
            await self.server.disconnect(sid, namespace=ns)

    async def _disconnect(self, sid: str, *args: Any) -> None:
        session = self.sessions.pop(sid, None)
        if session is not None:
            conn, pump = session
            self.hub.close(conn)
            if pump is not asyncio.current_task():
                pump.cancel()

    async def _register(self, sid: str, data: Any = None) -> dict[str, Any]:
        session = self.sessions.get(sid)
        named = data.get("userId", data.get("user_id")) if isinstance(data, dict) else data
        own = set()
        if session is not None:
            own = {str(v) for room in self.settings.rooms for v in own_values(room, session[0].identity).values()}
        if not isinstance(named, (str, int)) or isinstance(named, bool) or str(named) not in own:
            REFUSED.labels("socketio", "FORBIDDEN").inc()
            error = {"code": "FORBIDDEN", "message": "A connection registers only as its authenticated identity."}
            await self.server.emit("error", error, to=sid, namespace=self.settings.namespace)
            return {"success": False, "error": error}
        return {"success": True, "data": {"userId": str(named)}}

    async def aclose(self) -> None:
        for sid in list(self.sessions):
            await self.server.disconnect(sid, namespace=self.settings.namespace)


def own_values(room: Channel, identity: Mapping[str, Any]) -> dict[str, Any]:
    """The room's parameters filled from the identity fields they are bound to."""
    return {param: identity.get(field) for param, field in room.identity.items()}
