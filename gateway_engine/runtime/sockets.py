"""WebSocket scopes: served by the raw ASGI handler a feature contributed for the path, or refused.

The gateway frames no WebSocket protocol itself; a feature does (``Contribution.asgi``). A refusal before the
handshake completes is the error envelope with its HTTP status where the server supports the ASGI
``websocket.http.response`` extension, and a close with ``4000 + status`` otherwise, so a client always
learns why.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

from gateway_engine.compiled.model import CompiledConfig
from gateway_engine.foundation.context import RequestContext
from gateway_engine.foundation.envelope import error_reply
from gateway_engine.foundation.errors import GatewayError

log = logging.getLogger("gateway_engine")


def socket_context(scope: dict[str, Any], client_ip: str = "") -> RequestContext:
    """A request context for a WebSocket handshake (a GET upgrade with no body), for plugins and envelopes.

    Its ``receive`` yields an empty body: a plugin reading one must never consume the socket's own messages."""
    if "method" not in scope:
        scope = {**scope, "method": "GET"}
    if not client_ip:
        client = scope.get("client")
        client_ip = client[0] if client else ""
    return RequestContext(scope, _no_body, None, {}, client_ip)


async def _no_body() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def refuse_socket(scope: dict[str, Any], receive: Any, send: Any, error: GatewayError) -> None:
    """Refuse a handshake that was not accepted yet, saying why."""
    message = await receive()
    if message["type"] != "websocket.connect":
        return  # the client left already
    if "websocket.http.response" in scope.get("extensions", {}):
        reply = error_reply(socket_context(scope), error)
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in reply.headers]
        await send({"type": "websocket.http.response.start", "status": reply.status, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": reply.body or b""})
        return
    await send({"type": "websocket.close", "code": 4000 + error.status, "reason": error.code})


async def serve_socket(config: CompiledConfig, scope: dict[str, Any], receive: Any, send: Any) -> None:
    raw = scope.get("raw_path")
    path = raw.split(b"?", 1)[0].decode("latin-1") if raw else quote(scope["path"])
    limit = config.limits["header_bytes"]
    if limit and sum(len(k) + len(v) for k, v in scope["headers"]) > limit:
        await refuse_socket(
            scope, receive, send, GatewayError(431, "HEADERS_TOO_LARGE", f"The request headers exceed {limit} bytes.")
        )
        return
    handler = config.asgi.get(path)
    if handler is None:
        await refuse_socket(
            scope, receive, send, GatewayError(404, "ROUTE_NOT_FOUND", f"No WebSocket endpoint at {scope['path']!r}.")
        )
        return
    try:
        await handler(config, scope, receive, send)
    except Exception:  # last line of defence: the socket closes, no traceback reaches the client
        log.exception("unhandled error on WebSocket %s", scope.get("path"))
        try:
            await send({"type": "websocket.close", "code": 1011, "reason": "INTERNAL_ERROR"})
        except Exception:
            pass  # already closed
