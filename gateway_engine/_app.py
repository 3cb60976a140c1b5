"""The ASGI application: match the route, run its frozen pipeline, write the reply."""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import quote

import orjson

from ._compile import CompiledConfig, CompiledRoute
from ._context import RequestContext
from ._errors import GatewayError
from ._proxy import decoded_params, forward
from ._reply import Reply
from ._respond import JSON, error_reply

log = logging.getLogger("gateway_engine")


class GatewayApp:
    """An ASGI app serving one CompiledConfig at a time.

    ``self.config`` is read once per request, so ``swap`` (a reload) is atomic:
    a request in flight finishes on the config it started with.
    """

    def __init__(self, config: CompiledConfig) -> None:
        self.config = config
        self._retired: list[CompiledConfig] = []
        self._started = False

    async def swap(self, config: CompiledConfig) -> None:
        old, self.config = self.config, config
        if self._started:
            await config.startup()
        self._retired.append(old)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.config.startup()
                    self._started = True
                except Exception as exc:  # report and refuse to start, rather than serve half a config
                    log.exception("startup failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                for config in [*self._retired, self.config]:
                    await config.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        config = self.config
        ctx: RequestContext | None = None
        try:
            raw = scope.get("raw_path")
            raw_path = raw.split(b"?", 1)[0].decode("latin-1") if raw else quote(scope["path"])
            client = scope.get("client")
            client_ip = _client_ip(scope, client[0] if client else "", config.trusted_proxies)
            builtin = _BUILTINS.get(raw_path[len(config.base_path):]) if raw_path.startswith(config.base_path) else None
            if builtin is not None:
                ctx = RequestContext(scope, receive, None, {}, client_ip)
                reply = builtin(config, ctx)
            else:
                matched = config.router.match(raw_path)
                if matched is None:
                    ctx = RequestContext(scope, receive, None, {}, client_ip)
                    reply = error_reply(ctx, GatewayError(404, "ROUTE_NOT_FOUND", f"No route matches {scope['path']!r}."))
                else:
                    methods, raw_params = matched
                    route = methods.get(scope["method"])
                    if route is None and scope["method"] == "HEAD":
                        route = methods.get("GET")
                    if route is None:
                        reply, ctx = await self._unrouted_method(scope, receive, client_ip, methods, raw_params, config)
                    else:
                        ctx = RequestContext(scope, receive, route, {}, client_ip)
                        ctx.state["_raw_params"] = raw_params
                        reply = await run_pipeline(ctx, route, config)
            await write_reply(reply, send, ctx)
        except Exception:  # last line of defence: no traceback ever reaches a client
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            ctx = ctx or RequestContext(scope, receive, None, {}, "")
            try:
                await write_reply(error_reply(ctx, GatewayError(500, "INTERNAL_ERROR", "The gateway failed to handle the request.")), send, ctx)
            except Exception:
                pass  # the response had already started; the connection is closed by the server

    async def _unrouted_method(self, scope, receive, client_ip, methods, raw_params, config) -> tuple[Reply, RequestContext]:
        allow = sorted(set(methods) | ({"HEAD"} if "GET" in methods else set()) | {"OPTIONS"})
        route = next(iter(methods.values()))
        ctx = RequestContext(scope, receive, route, {}, client_ip)
        ctx.state["_raw_params"] = raw_params
        if scope["method"] == "OPTIONS":
            # a preflight or an OPTIONS probe: plugins (cors) may answer; otherwise 204 with Allow
            ctx.state["options_fallback"] = True
            reply = await run_pipeline(ctx, route, config, terminal=lambda: Reply(204, [("allow", ", ".join(allow))], b""))
            return reply, ctx
        reply = error_reply(ctx, GatewayError(405, "METHOD_NOT_ALLOWED", f"{scope['method']} is not allowed here; allowed: {', '.join(allow)}.",
                                              headers={"Allow": ", ".join(allow)}))
        return reply, ctx


async def run_pipeline(ctx: RequestContext, route: CompiledRoute, config: CompiledConfig, terminal: Any = None) -> Reply:
    """Request phase in priority order, the upstream call, response phase in reverse."""
    chain = route.response_chains[-1]
    reply: Reply | None = None
    try:
        ctx.params = decoded_params(ctx.state["_raw_params"]) if ctx.state["_raw_params"] else {}
        for i, plugin in enumerate(route.request_plugins):
            result = await plugin.on_request(ctx)
            if result is not None:
                chain = route.response_chains[i]
                reply = error_reply(ctx, result) if isinstance(result, GatewayError) else result
                break
        if reply is None:
            reply = terminal() if terminal is not None else await forward(ctx, route, config)
    except GatewayError as err:
        reply = error_reply(ctx, err)
    for plugin in chain:
        try:
            await plugin.on_response(ctx, reply)
        except GatewayError as err:
            await reply.aclose()
            reply = error_reply(ctx, err)
    return reply


async def write_reply(reply: Reply, send: Any, ctx: RequestContext | None) -> None:
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in reply.headers if k != "content-length" or reply.stream is not None]
    if reply.stream is None:
        body = reply.body or b""
        headers.append((b"content-length", str(len(body)).encode()))
        head_only = ctx is not None and ctx.method == "HEAD"
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if head_only else body})
        return
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    try:
        await _pump_until_disconnect(reply, send, ctx.receive if ctx is not None else None)
    finally:
        await reply.aclose()


async def _pump_until_disconnect(reply: Reply, send: Any, receive: Any) -> None:
    """Stream the body; if the client goes away first, stop and so cancel the upstream request."""

    async def pump() -> None:
        async for chunk in reply.stream:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    async def disconnected() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    if receive is None:
        await pump()
        return
    pumping = asyncio.ensure_future(pump())
    watching = asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait({pumping, watching}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (pumping, watching):
            if not task.done():
                task.cancel()
        await asyncio.gather(pumping, watching, return_exceptions=True)
    if pumping.done() and not pumping.cancelled() and pumping.exception() is not None and not watching.done():
        raise pumping.exception()


def _client_ip(scope: dict[str, Any], peer: str, trusted: int) -> str:
    if trusted <= 0:
        return peer
    for k, v in scope["headers"]:
        if k == b"x-forwarded-for":
            hops = [h.strip() for h in v.decode("latin-1").split(",") if h.strip()]
            hops.append(peer)
            return hops[max(0, len(hops) - 1 - trusted)]
    return peer


def _health(config: CompiledConfig, ctx: RequestContext) -> Reply:
    body = {"status": "ok", "version": config.version,
            "routes": len(config.routes), "unconfigured": sorted({r.backend for r in config.routes if r.upstream is None})}
    return Reply(200, [("content-type", JSON), ("cache-control", "no-store")], orjson.dumps(body))


_BUILTINS = {"/health": _health}
