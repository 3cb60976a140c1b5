"""``transport: webhooks-admin``: the subscriptions API behind the engine's Transport seam.

Routes in YAML call it like any upstream (``url: webhooks-admin://local``); the route's upstream
path names the operation:

    POST /endpoints               GET /endpoints              GET|PATCH|PUT|DELETE /endpoints/{id}
    POST /endpoints/{id}/test     POST /endpoints/{id}/rotate-secret
    GET /deliveries               GET /endpoints/{id}/deliveries      POST /messages/{id}/replay
    GET / (health: the store answers)

The tenant is the caller's, from the identity headers the auth plugin forwards (``validate``
insists on them; clients cannot send them): the platform (tenant) id, else the user id.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from sqlalchemy.exc import SQLAlchemyError

from gateway_engine.foundation.errors import GatewayError
from gateway_engine.foundation.reply import Reply
from gateway_engine.upstreams.seam import Timeouts
from gateway_engine.upstreams.services import json_body, json_reply

TENANT_HEADERS = {"platform": "x-platform-id", "user_id": "x-user-id"}  # identity field -> forwarded header
_MAX_BODY = 64 * 1024


def tenant_of(headers: dict[str, str]) -> str:
    platform = headers.get(TENANT_HEADERS["platform"])
    if platform:
        return platform
    user = headers.get(TENANT_HEADERS["user_id"])
    if user:
        return f"user:{user}"
    raise GatewayError(403, "FORBIDDEN", "Webhook subscriptions belong to a tenant: authenticate as one.")


class AdminTransport:
    """Answers the subscriptions API from the bound config's outbound service."""

    def __init__(self, *, timeouts: Timeouts, max_connections: int = 100) -> None:
        self.timeouts = timeouts
        self.admin: Any = None

    def bind_admin(self, admin: Any) -> None:
        """The API of the config that compiled last without errors."""
        self.admin = admin

    async def send(
        self, method: str, url: str, headers: list[tuple[str, str]], body: bytes | AsyncIterator[bytes] | None
    ) -> Reply:
        if self.admin is None:
            raise GatewayError(503, "UPSTREAM_UNAVAILABLE", "Outbound webhooks are not configured.")
        parts = urlsplit(url)
        path = [unquote(s) for s in parts.path.split("/") if s]
        query = dict(parse_qsl(parts.query))
        try:
            if method == "GET" and not path:  # the health probe (`health: {path: /}`): the store answers
                status, answer = 200, await self.admin.health()
            else:
                status, answer = await self._dispatch(method, path, query, tenant_of(dict(headers)), body)
        except (SQLAlchemyError, OSError, TimeoutError):
            raise GatewayError(503, "STORE_UNAVAILABLE", "The webhook store cannot be reached; try again.") from None
        return json_reply(status, answer)

    async def _dispatch(
        self, method: str, path: list[str], query: dict[str, str], tenant: str, body: Any
    ) -> tuple[int, Any]:
        admin = self.admin
        if path == ["endpoints"]:
            if method == "POST":
                return 201, await admin.register(tenant, await json_body(body, _MAX_BODY))
            if method == "GET":
                return 200, await admin.list(tenant, query)
        elif len(path) == 2 and path[0] == "endpoints":
            if method == "GET":
                return 200, await admin.get(tenant, path[1])
            if method in ("PATCH", "PUT"):
                return 200, await admin.update(tenant, path[1], await json_body(body, _MAX_BODY))
            if method == "DELETE":
                return 200, await admin.delete(tenant, path[1])
        elif len(path) == 3 and path[0] == "endpoints" and method == "POST" and path[2] == "test":
            return 200, await admin.test(tenant, path[1])
        elif len(path) == 3 and path[0] == "endpoints" and method == "POST" and path[2] == "rotate-secret":
            return 200, await admin.rotate(tenant, path[1], await json_body(body, _MAX_BODY))
        elif len(path) == 3 and path[0] == "endpoints" and method == "GET" and path[2] == "deliveries":
            return 200, await admin.delivery_log(tenant, query, path[1])
        elif path == ["deliveries"] and method == "GET":
            return 200, await admin.delivery_log(tenant, query)
        elif len(path) == 3 and path[0] == "messages" and path[2] == "replay" and method == "POST":
            return 202, await admin.replay(tenant, path[1], await json_body(body, _MAX_BODY))
        raise GatewayError(404, "ROUTE_NOT_FOUND", f"The webhooks admin has no {method} /{'/'.join(path)}.")

    async def aclose(self) -> None:
        self.admin = None
