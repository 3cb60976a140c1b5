"""``transport: temporal``: the workflows backend behind the engine's Transport seam.

The proxy sends it an ordinary upstream request; the URL is ``temporal://ADDRESS/NAMESPACE`` plus
the route's upstream path, which names the operation:

    POST /start    GET /list    GET /{id}    POST /{id}/signal    POST /{id}/cancel    GET / (health)

Who asks comes from the identity headers the auth plugin forwards (``access.py`` has the rule).
The API key for Temporal arrives as the upstream auth's bearer token.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from temporalio.service import RPCError, RPCStatusCode

from gateway_engine.foundation.errors import GatewayError
from gateway_engine.foundation.reply import Reply
from gateway_engine.upstreams.seam import Timeouts, timeout_error, unavailable_error
from gateway_engine.upstreams.services import json_body, json_reply

from . import operations
from .access import Caller, caller_of
from .client import Connection, SharedClient
from .definitions import WorkflowCatalog

_MAX_BODY = 1024 * 1024
_RPC_ERRORS = {
    RPCStatusCode.NOT_FOUND: (404, "WORKFLOW_NOT_FOUND", "No such workflow."),
    RPCStatusCode.UNAVAILABLE: (502, "UPSTREAM_UNAVAILABLE", "Temporal is unreachable."),
    RPCStatusCode.DEADLINE_EXCEEDED: (504, "UPSTREAM_TIMEOUT", "Temporal did not answer in time."),
    RPCStatusCode.UNAUTHENTICATED: (502, "UPSTREAM_ERROR", "Temporal refused the gateway's credentials."),
    RPCStatusCode.PERMISSION_DENIED: (502, "UPSTREAM_ERROR", "Temporal refused the gateway's credentials."),
    RPCStatusCode.RESOURCE_EXHAUSTED: (503, "UPSTREAM_BUSY", "Temporal is rate limiting the gateway."),
}


class TemporalTransport:
    """One lazily connected Temporal client shared by every route of the workflows backend."""

    def __init__(self, *, timeouts: Timeouts, max_connections: int = 100) -> None:
        self.timeouts = timeouts
        self.catalog = WorkflowCatalog({})
        self._client = SharedClient()

    def bind_catalog(self, catalog: WorkflowCatalog) -> None:
        """The workflows new starts use (set when a config, or a reload, compiled without errors)."""
        self.catalog = catalog

    async def send(
        self, method: str, url: str, headers: list[tuple[str, str]], body: bytes | AsyncIterator[bytes] | None
    ) -> Reply:
        parts = urlsplit(url)
        path = [unquote(s) for s in parts.path.split("/")[2:] if s]  # after /NAMESPACE
        values = {k: v for k, v in headers}
        scheme, _, token = values.get("authorization", "").partition(" ")
        conn = Connection.from_url(url, token.strip() if scheme.lower() == "bearer" else None)
        try:
            async with asyncio.timeout(self.timeouts.total):
                client = await self._client.get(conn)
                if method == "GET" and not path:
                    await client.service_client.check_health()
                    return json_reply(200, {"status": "SERVING"})
                caller = caller_of(values)
                query = dict(parse_qsl(parts.query))
                status, answer = await self._dispatch(client, method, path, query, caller, body)
        except TimeoutError:
            raise timeout_error(self.timeouts.total) from None
        except RuntimeError as exc:
            if str(exc).startswith("Failed client connect"):
                raise unavailable_error() from None
            raise
        except RPCError as exc:
            status_code, code, message = _RPC_ERRORS.get(
                exc.status, (502, "UPSTREAM_ERROR", "Temporal refused the request.")
            )
            raise GatewayError(status_code, code, message) from None
        return json_reply(status, answer)

    async def _dispatch(
        self,
        client: Any,
        method: str,
        path: list[str],
        query: dict[str, str],
        caller: Caller,
        body: bytes | AsyncIterator[bytes] | None,
    ) -> tuple[int, Any]:
        if path == ["start"] and method == "POST":
            return await operations.start(client, self.catalog, caller, await json_body(body, _MAX_BODY))
        if path == ["list"] and method == "GET":
            return 200, await operations.list_runs(client, self.catalog, caller, query)
        if len(path) == 1 and method == "GET":
            return 200, await operations.describe(client, caller, path[0])
        if len(path) == 2 and path[1] == "signal" and method == "POST":
            return 202, await operations.signal(client, self.catalog, caller, path[0], await json_body(body, _MAX_BODY))
        if len(path) == 2 and path[1] == "cancel" and method == "POST":
            return 202, await operations.cancel(client, caller, path[0])
        raise GatewayError(404, "ROUTE_NOT_FOUND", f"The workflows backend has no {method} /{'/'.join(path)}.")

    async def aclose(self) -> None:
        self._client.close()
