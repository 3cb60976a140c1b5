"""The realtime feature: ``channels.d`` channels pushed to clients over WebSocket, SSE and Socket.IO."""

from __future__ import annotations

import dataclasses
from typing import Any

from gateway_engine.compiled.features import Feature, FeatureInput
from gateway_engine.compiled.model import AsgiEndpoint, Contribution, Endpoint, StateKey

from .backplane import RedisBackplane
from .connection import Closed
from .definitions import Declared, compile_channels
from .handshake import Handshake, Tickets
from .hub import Backplane, Hub, LocalBackplane
from .socketio_app import SocketIoEndpoint
from .sse import SseEndpoint
from .tickets import MemoryTickets, RedisTickets, TicketEndpoint
from .websocket import WebSocketEndpoint


class Realtime:
    """One config's realtime server: the hub, its sources and backplane, and the endpoints over them."""

    def __init__(self, declared: Declared, base_path: str) -> None:
        server = declared.server
        backplane_spec = server.get("backplane") or {}
        url = backplane_spec.get("url") or ""
        prefix = backplane_spec.get("channel", "gateway-realtime")
        self.backplane: Backplane = RedisBackplane(url, prefix) if url else LocalBackplane()
        self.tickets: Tickets = (
            RedisTickets(url, f"{prefix}:ticket", declared.ticket_ttl) if url else MemoryTickets(declared.ticket_ttl)
        )
        self.hub = Hub(declared.catalog, declared.limits, self.backplane)
        self.sources = declared.sources
        handshake = Handshake(declared.plugins, self.tickets)
        self.endpoints: dict[str, Endpoint] = {}
        self.asgi: dict[str, AsgiEndpoint] = {}
        self.websocket: WebSocketEndpoint | None = None
        if server.get("websocket"):
            self.websocket = WebSocketEndpoint(self.hub, handshake)
            self.asgi[base_path + server["websocket"]] = self.websocket
        if server.get("sse"):
            self.endpoints[base_path + server["sse"]] = SseEndpoint(self.hub, handshake)
        if server.get("tickets", {}).get("path"):
            self.endpoints[base_path + server["tickets"]["path"]] = TicketEndpoint(handshake, self.tickets)
        self.rows = [(p, "POST" if isinstance(e, TicketEndpoint) else "GET") for p, e in self.endpoints.items()]
        self.socketio: SocketIoEndpoint | None = None
        if declared.socketio is not None:
            path = base_path + declared.socketio.path.rstrip("/")
            self.socketio = SocketIoEndpoint(self.hub, handshake, dataclasses.replace(declared.socketio, path=path))
            self.asgi[path] = self.asgi[path + "/"] = self.socketio
        self.rows += [(p, "GET") for p in self.asgi]

    async def start(self) -> None:
        await self.backplane.start(self.hub)
        if self.websocket is not None:
            await self.websocket.start()
        for source in self.sources:
            await source.start(self.hub)

    async def stop(self) -> None:
        if self.socketio is not None:
            await self.socketio.aclose()
        self.hub.close_all(Closed(1012, "CONFIG_REPLACED"))  # clients reconnect to the config that replaced this
        if self.websocket is not None:
            await self.websocket.aclose()
        for source in self.sources:
            await source.aclose()
        await self.backplane.aclose()
        await self.tickets.aclose()


#: the config's realtime server: ``config.state(REALTIME)``
REALTIME: StateKey[Realtime] = StateKey("realtime")


class RealtimeFeature(Feature):
    name = "realtime"
    order = 120
    folder = "channels.d"
    schema = "channels"

    def compile(self, given: FeatureInput) -> Contribution:
        if not given.documents:
            return Contribution()
        declared = compile_channels(given.documents, given.core.env, given.errors, given.note_unset, given.plugin_chain)
        if given.errors or declared.server_doc is None:
            return Contribution()
        realtime = Realtime(declared, given.core.base_path)
        contribution = Contribution(
            endpoints=dict(realtime.endpoints),
            asgi=dict(realtime.asgi),
            startup=[realtime.start],
            shutdown=[realtime.stop],
            state=realtime,
        )
        for path, method in realtime.rows:
            if path in realtime.endpoints:
                contribution.openapi_paths[path] = {method.lower(): _operation(path, method)}
        contribution.listing += [
            {
                "methods": [method],
                "path": path,
                "backend": "realtime",
                "name": "realtime",
                "upstream": "channels.d",
                "configured": True,
                "plugins": [p.name for p in declared.plugins],
            }
            for path, method in realtime.rows
        ]
        return contribution


def _operation(path: str, method: str) -> dict[str, Any]:
    """The SSE stream and the ticket endpoint in the OpenAPI document (WebSocket and Socket.IO have no HTTP form)."""
    failed = {
        "description": "An error, as the error envelope.",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorEnvelope"}}},
    }
    if method == "POST":
        return {
            "operationId": "realtime.ticket",
            "tags": ["realtime"],
            "summary": "A one-use, short-lived ticket to connect with (?ticket= or Socket.IO auth), for browsers.",
            "responses": {
                "201": {
                    "description": "`{ticket, expiresIn}` in the success envelope.",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SuccessEnvelope"}}},
                },
                "default": failed,
            },
        }
    return {
        "operationId": "realtime.events",
        "tags": ["realtime"],
        "summary": "Server-sent events of one channel; Last-Event-ID resumes from its history.",
        "parameters": [
            {"name": "channel", "in": "query", "required": True, "schema": {"type": "string"}},
            {"name": "ticket", "in": "query", "required": False, "schema": {"type": "string"}},
            {"name": "Last-Event-ID", "in": "header", "required": False, "schema": {"type": "string"}},
        ],
        "responses": {
            "200": {"description": "The event stream.", "content": {"text/event-stream": {}}},
            "default": failed,
        },
    }
