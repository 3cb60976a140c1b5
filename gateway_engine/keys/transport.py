"""``transport: keys``: the key and tenant admin API behind the engine's Transport seam.

Routes declared in YAML send ordinary upstream requests to ``keys://NAME`` plus a path
that names the resource (the deployer picks the public paths):

    /platforms[/{id}]   /clients[/{id}]   /keys[/{id}[/rotate|/usage]]
    /rate-limits        /logs/requests    /logs/errors        / (health)

Who asks comes from the identity headers the auth plugin forwards (``caller.py``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from gateway_engine.foundation.errors import GatewayError
from gateway_engine.foundation.reply import Reply
from gateway_engine.upstreams.seam import Timeouts
from gateway_engine.upstreams.services import json_body, json_reply

from . import admin_keys, admin_tenants
from .caller import caller_of
from .requests import AdminRequest
from .runtime import KeysRuntime

_MAX_BODY = 64 * 1024
_UNAVAILABLE = GatewayError(503, "KEY_STORE_UNAVAILABLE", "The key store is not available.")


class KeysTransport:
    def __init__(self, *, timeouts: Timeouts, max_connections: int = 100) -> None:
        self.timeouts = timeouts
        self.runtime: KeysRuntime | None = None

    def bind_runtime(self, runtime: KeysRuntime) -> None:
        """The key store this transport serves (set when a config, or a reload, compiled without errors)."""
        self.runtime = runtime

    async def send(
        self, method: str, url: str, headers: list[tuple[str, str]], body: bytes | AsyncIterator[bytes] | None
    ) -> Reply:
        runtime = self.runtime
        if runtime is None or runtime.store is None:
            raise _UNAVAILABLE
        parts = urlsplit(url)
        path = [unquote(s) for s in parts.path.split("/") if s]
        if not path and method == "GET":
            async with runtime.reading() as conn:
                await conn.exec_driver_sql("SELECT 1")
            return json_reply(200, {"status": "SERVING"})
        values = {k.lower(): v for k, v in headers}
        request = AdminRequest(
            method=method,
            path=path,
            query=dict(parse_qsl(parts.query)),
            body=await json_body(body, _MAX_BODY) if method in ("POST", "PUT", "PATCH") else None,
            caller=caller_of(values),
        )
        try:
            status, answer = await dispatch(runtime, request)
        except GatewayError:
            raise
        except RuntimeError:  # the store closed under us (a shutdown)
            raise _UNAVAILABLE from None
        except Exception as exc:  # a database error or an unreachable one: never a traceback or SQL in the answer
            if isinstance(exc, OSError | TimeoutError) or exc.__class__.__module__.startswith(
                ("sqlalchemy", "asyncpg", "sqlite3", "aiosqlite")
            ):
                raise _UNAVAILABLE from None
            raise
        return json_reply(status, answer)

    async def aclose(self) -> None:
        return None


async def dispatch(rt: KeysRuntime, req: AdminRequest) -> tuple[int, Any]:
    head = req.path[0] if req.path else ""
    if head == "platforms":
        return await admin_tenants.platforms(rt, req)
    if head == "clients":
        return await admin_tenants.clients(rt, req)
    if head == "keys":
        return await admin_keys.keys(rt, req)
    if req.path == ["rate-limits"] and req.method == "GET":
        return await admin_keys.rate_limits(rt, req)
    if req.path in (["logs", "requests"], ["logs", "errors"]) and req.method == "GET":
        return await admin_keys.logs(rt, req, errors_only=req.path[1] == "errors")
    raise GatewayError(404, "ROUTE_NOT_FOUND", f"The key admin API has no {req.method} /{'/'.join(req.path)}.")
