"""Calling a route in-process, by name: the same plugins, transport, upstream auth and mapping
as an HTTP request, without a socket. Workflow steps and webhook actions use it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import orjson

from gateway_engine.compiled.compiler import chain_tables
from gateway_engine.compiled.model import CompiledConfig, CompiledRoute
from gateway_engine.foundation.context import RequestContext
from gateway_engine.foundation.errors import GatewayError
from gateway_engine.runtime.after_answer import run_hooks
from gateway_engine.runtime.app import run_pipeline


@dataclass(frozen=True)
class Invocation:
    """The client-facing answer of an in-process call."""

    status: int
    body: Any  # parsed JSON (the envelope when the route has one), or text

    @property
    def ok(self) -> bool:
        return self.status < 400


def find_route(config: CompiledConfig, qualified_name: str) -> CompiledRoute:
    """``backend.route-name`` → the compiled route (KeyError names what exists); the table is built once per config."""
    route = config.gateway.shared("invoke.routes", lambda: {r.qualified_name: r for r in config.routes}).get(
        qualified_name
    )
    if route is not None:
        return route
    raise KeyError(f"no route {qualified_name!r}; routes are named backend.route-name")


def build_scope(
    method: str, raw_path: str, query: str, headers: list[tuple[str, str]], body: bytes | None
) -> dict[str, Any]:
    raw_headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]
    if body is not None:
        raw_headers.append((b"content-length", str(len(body)).encode()))
        if not any(k == b"content-type" for k, _ in raw_headers):
            raw_headers.append((b"content-type", b"application/json"))
    return {
        "type": "http",
        "method": method,
        "path": raw_path,
        "raw_path": raw_path.encode("latin-1"),
        "query_string": query.encode("latin-1"),
        "headers": raw_headers,
        "client": ("127.0.0.1", 0),
        "scheme": "http",
    }


def body_receiver(body: bytes | None) -> Any:
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body or b"", "more_body": False}

    return receive


async def invoke(
    config: CompiledConfig,
    qualified_name: str,
    *,
    params: dict[str, Any] | None = None,
    query: dict[str, Any] | None = None,
    body: Any = None,
    headers: dict[str, str] | None = None,
    identity: dict[str, Any] | None = None,
    upstream_headers: dict[str, str] | None = None,
    skip_plugins: frozenset[str] = frozenset({"auth", "rate_limit", "cors", "ip_filter"}),
) -> Invocation:
    """Run route ``qualified_name`` as if a client had called it.

    Client-facing plugins (auth, rate limiting, CORS, IP filter) are skipped by
    default: the caller is the gateway itself, and ``identity`` says on whose behalf.
    """
    route = find_route(config, qualified_name)
    params = {k: str(v) for k, v in (params or {}).items()}
    missing = [n for n in route.template.names if n not in params]
    if missing:
        raise GatewayError(
            400, "INVALID_PARAMETER", f"route {qualified_name} needs path parameter(s) {', '.join(missing)}"
        )
    raw_params = {n: quote(v, safe="/" if n == route.template.catch_all else "") for n, v in params.items()}
    path = route.path
    for name, value in raw_params.items():
        path = path.replace("{" + name + ":path}", value).replace("{" + name + "}", value)
    data = orjson.dumps(body) if body is not None else None
    scope = build_scope(route.methods[0], path, urlencode(query or {}, doseq=True), list((headers or {}).items()), data)
    ctx = RequestContext(scope, body_receiver(data), route, {}, "127.0.0.1")
    ctx.state["_raw_params"] = raw_params
    ctx.identity = identity
    ctx.upstream_headers.update(upstream_headers or {})  # sent as the gateway's own, as a plugin's would be
    if identity:
        ctx.consumer = str(identity.get("sub") or identity.get("user_id") or "") or None
    if skip_plugins:  # the reduced chain is built once per route and kept with the config
        route = config.gateway.shared(
            ("invoke", route.qualified_name, skip_plugins), lambda: _without(route, skip_plugins)
        )
    reply = await run_pipeline(ctx, route, config)
    raw = await reply.read(config.limits["response_body"])
    if route.after_answer:  # an in-process call emits what a client's would (a workflow step's, say)
        run_hooks(route, ctx, reply, raw)
    try:
        parsed: Any = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        parsed = raw.decode("utf-8", "replace")
    return Invocation(reply.status, parsed)


def _without(route: CompiledRoute, skip: frozenset[str]) -> CompiledRoute:
    kept = tuple(p for p in route.plugins if p.name not in skip)
    request_plugins, response_chains = chain_tables(kept)
    return dataclasses.replace(route, plugins=kept, request_plugins=request_plugins, response_chains=response_chains)
