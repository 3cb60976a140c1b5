"""uvicorn's wsproto WebSocket protocol, lighter per open socket.

Once a WebSocket is open, wsproto still holds the upgrade's h11 connection and the initiating request
for the socket's whole life, though it never reads them again: every later event goes to the open
connection. That is ~0.9 KB per socket (9 MB at 10,000 sockets, docs/performance.md); this protocol
lets them go as soon as the accept is sent.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.websockets.wsproto_impl import WSProtocol


class LeanWSProtocol(WSProtocol):
    async def send(self, message: Any) -> None:
        await super().send(message)
        if message["type"] == "websocket.accept" and self.conn.connection is not None:
            handshake = self.conn.handshake  # no longer consulted: WSConnection routes to .connection
            handshake._h11_connection = None  # type: ignore[assignment]
            handshake._initiating_request = None


def websocket_protocol(implementation: str) -> str | type:
    """What uvicorn's ``ws`` option gets for ``server.websocket_implementation``."""
    return LeanWSProtocol if implementation == "wsproto" else implementation
