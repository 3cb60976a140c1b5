"""The ASGI application: match the route, run its frozen pipeline, write the reply."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import logging
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

from gateway_engine.compiled.model import CompiledConfig, CompiledRoute, PluginChain
from gateway_engine.foundation.context import RequestContext
from gateway_engine.foundation.envelope import error_reply
from gateway_engine.foundation.errors import GatewayError
from gateway_engine.foundation.metrics import IN_FLIGHT, MULTIPROCESS, record, watch_in_flight
from gateway_engine.foundation.reply import Reply
from gateway_engine.runtime.after_answer import BodyCopy, run_hooks
from gateway_engine.runtime.client_address import client_ip as _client_ip
from gateway_engine.runtime.config_log import log_started
from gateway_engine.runtime.proxy import decoded_params, forward
from gateway_engine.runtime.reload import Reloader
from gateway_engine.runtime.sockets import serve_socket

log = logging.getLogger("gateway_engine")


class GatewayApp:
    """An ASGI app serving one CompiledConfig at a time.

    ``self.config`` is read once per request, so ``swap`` (a reload) is atomic:
    a request in flight finishes on the config it started with.
    """

    def __init__(
        self, config: CompiledConfig, *, watch: bool = False, drain_timeout: float = 30.0, sighup: bool = False
    ) -> None:
        self.config = config
        self.watch = watch
        self.sighup = sighup  # reload on SIGHUP: what `serve` always does, with or without the file watcher
        self.drain_timeout = drain_timeout
        self._inflight: dict[int, int] = {}
        self._retiring: set[asyncio.Task] = set()
        self._reloader: Reloader | None = None
        self._started = False
        watch_in_flight(self.in_flight)

    def in_flight(self) -> int:
        """Requests being handled now, on any config."""
        return sum(self._inflight.values())

    async def swap(self, config: CompiledConfig) -> None:
        """Make ``config`` live; the old one is retired once its in-flight requests finished."""
        if self._started:
            await config.startup()
        old, self.config = self.config, config
        task = asyncio.get_running_loop().create_task(self._retire(old, config))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def _retire(self, old: CompiledConfig, new: CompiledConfig) -> None:
        deadline = asyncio.get_running_loop().time() + self.drain_timeout
        # a poll: the counter moves on the hot path, where an Event per request would cost more
        while self._inflight.get(id(old), 0) > 0 and asyncio.get_running_loop().time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        await old.shutdown(keep=new)

    async def reload(self, reason: str = "manual") -> bool:
        return await (self._reloader or Reloader(self)).reload(reason)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._serve(self.config, scope, receive, send)
        elif kind == "websocket":
            await serve_socket(self.config, scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    @property
    def started(self) -> bool:
        return self._started

    async def startup(self) -> None:
        """Start plugins, feature tasks and (with ``watch``) the reloader; the ASGI lifespan calls this."""
        await self.config.startup()
        self._started = True
        log_started(self.config)
        # the compiled config lives as long as the server: keep the collector from re-scanning
        # it (a full collection over it shows as a latency spike on whichever request runs it)
        gc.freeze()
        gc.set_threshold(20_000, 50, 100)  # requests allocate in bursts; collect young objects less often
        if self.watch or self.sighup:
            reloader = self._reloader = Reloader(self)
            await reloader.start(watch=self.watch, sighup=True)

    async def shutdown(self) -> None:
        if self._reloader is not None:
            await self._reloader.stop()
        await asyncio.gather(*self._retiring, return_exceptions=True)
        await self.config.shutdown()
        self._started = False

    @contextlib.asynccontextmanager
    async def lifespan(self, host: Any = None) -> AsyncIterator[None]:
        """The gateway's startup and shutdown for a host app that mounts it (Starlette does not pass
        lifespan events to mounted apps): ``Starlette(routes=[Mount("/", gateway)], lifespan=gateway.lifespan)``."""
        await self.startup()
        try:
            yield
        finally:
            await self.shutdown()

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:  # report and refuse to start, rather than serve half a config
                    log.exception("startup failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _serve(self, config: CompiledConfig, scope: dict[str, Any], receive: Any, send: Any) -> None:
        ctx: RequestContext | None = None
        reply: Reply | None = None
        key = id(config)  # counted per config, so a retired config knows when its last request finished
        self._inflight[key] = self._inflight.get(key, 0) + 1
        if MULTIPROCESS:
            IN_FLIGHT.inc()
        try:
            raw = scope.get("raw_path")
            raw_path = raw.split(b"?", 1)[0].decode("latin-1") if raw else quote(scope["path"])
            client = scope.get("client")
            client_ip = _client_ip(scope, client[0] if client else "", config.trusted_proxies)
            if (
                config.limits["header_bytes"]
                and sum(len(k) + len(v) for k, v in scope["headers"]) > config.limits["header_bytes"]
            ):
                ctx = RequestContext(scope, receive, None, {}, client_ip)
                reply = error_reply(
                    ctx,
                    GatewayError(
                        431, "HEADERS_TOO_LARGE", f"The request headers exceed {config.limits['header_bytes']} bytes."
                    ),
                )
                record(ctx, reply)
                await write_reply(reply, send, ctx)
                return
            if config.asgi and raw_path in config.asgi:  # a protocol a feature speaks itself (Socket.IO polling)
                await config.asgi[raw_path](config, scope, receive, send)
                return
            endpoint = config.endpoints.get(raw_path)  # what features serve: one dict lookup
            if endpoint is not None:
                ctx = RequestContext(scope, receive, None, {}, client_ip)
                reply = await endpoint(config, ctx)
            else:
                matched = config.router.match(raw_path)
                if matched is None:
                    ctx = RequestContext(scope, receive, None, {}, client_ip)
                    reply = await _unrouted(
                        ctx, config, GatewayError(404, "ROUTE_NOT_FOUND", f"No route matches {scope['path']!r}.")
                    )
                else:
                    methods, raw_params = matched
                    route = methods.get(scope["method"])
                    if route is None and scope["method"] == "HEAD":
                        route = methods.get("GET")
                    if route is None:
                        reply, ctx = await self._unrouted_method(scope, receive, client_ip, methods, raw_params, config)
                    else:
                        ctx = RequestContext(scope, receive, route, {}, client_ip)
                        ctx.state["_raw_params"] = own_names(route, raw_params)
                        reply = await run_pipeline(ctx, route, config)
                        if route.after_answer:  # features act on the answer once it is written (or the client left)
                            copy = BodyCopy(reply, config.limits["response_body"]) if route.after_answer_body else None
                            record(ctx, reply)
                            try:
                                await write_reply(reply, send, ctx)
                            finally:
                                run_hooks(route, ctx, reply, copy.body() if copy is not None else None)
                            return
            record(ctx, reply)
            await write_reply(reply, send, ctx)
        except Exception:  # last line of defence: no traceback ever reaches a client
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            ctx = ctx or RequestContext(scope, receive, None, {}, "")
            failed = error_reply(ctx, GatewayError(500, "INTERNAL_ERROR", "The gateway failed to handle the request."))
            if reply is None:  # not counted yet
                record(ctx, failed)
            try:
                await write_reply(failed, send, ctx)
            except Exception:
                pass  # the response had already started; the connection is closed by the server
        finally:
            self._inflight[key] -= 1
            if MULTIPROCESS:
                IN_FLIGHT.dec()

    async def _unrouted_method(
        self, scope, receive, client_ip, methods, raw_params, config
    ) -> tuple[Reply, RequestContext]:
        allow = sorted(set(methods) | ({"HEAD"} if "GET" in methods else set()) | {"OPTIONS"})
        route = next(iter(methods.values()))  # the path's route: metrics and logs attribute the answer to it
        ctx = RequestContext(scope, receive, route, {}, client_ip)
        if scope["method"] == "OPTIONS":
            ctx.state["_raw_params"] = raw_params
            # a preflight or an OPTIONS probe: plugins (cors) may answer; otherwise 204 with Allow
            ctx.state["options_fallback"] = True
            reply = await run_pipeline(
                ctx, route, config, terminal=lambda: Reply(204, [("allow", ", ".join(allow))], b"")
            )
            return reply, ctx
        reply = await _unrouted(
            ctx,
            config,
            GatewayError(
                405,
                "METHOD_NOT_ALLOWED",
                f"{scope['method']} is not allowed here; allowed: {', '.join(allow)}.",
                headers={"Allow": ", ".join(allow)},
            ),
        )
        return reply, ctx


def own_names(route: CompiledRoute, raw_params: dict[str, str]) -> dict[str, str]:
    """Parameters under this route's names (routes sharing a path shape may name them differently)."""
    if len(raw_params) == len(route.template.names) and all(n in raw_params for n in route.template.names):
        return raw_params
    return dict(zip(route.template.names, raw_params.values()))


async def _unrouted(ctx: RequestContext, config: CompiledConfig, error: GatewayError) -> Reply:
    """A 404 or 405 through the gateway-wide plugins that run on every answer (ids, headers, logs)."""
    ctx.state["_raw_params"] = {}
    return await run_pipeline(ctx, config.unrouted, config, terminal=lambda: error_reply(ctx, error))


async def run_pipeline(
    ctx: RequestContext, route: CompiledRoute | PluginChain, config: CompiledConfig, terminal: Any = None
) -> Reply:
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
            if terminal is not None:  # a plain function, or one a feature awaits (realtime tickets)
                reply = terminal()
                if inspect.isawaitable(reply):
                    reply = await reply
            else:
                assert isinstance(route, CompiledRoute)  # a bare PluginChain always comes with its terminal
                reply = await (forward if route.handler is None else route.handler)(ctx, route, config)
    except GatewayError as err:
        reply = error_reply(ctx, err)
    except Exception:  # a bug, not a bad request: a 500 that still runs the response phase (ids, access log)
        reply = _internal_error(ctx, f"{ctx.method} {ctx.path}")
    for plugin in chain:
        try:
            await plugin.on_response(ctx, reply)
        except GatewayError as err:
            await reply.aclose()
            reply = error_reply(ctx, err)
        except Exception:
            await reply.aclose()
            reply = _internal_error(ctx, f"{ctx.method} {ctx.path} in plugin {plugin.name}")
    return reply


def _internal_error(ctx: RequestContext, where: str) -> Reply:
    """The 500 envelope for an unexpected exception, its traceback logged once (never sent to the client)."""
    log.exception("unhandled error on %s", where)
    return error_reply(ctx, GatewayError(500, "INTERNAL_ERROR", "The gateway failed to handle the request."))


async def write_reply(reply: Reply, send: Any, ctx: RequestContext | None) -> None:
    if reply.stream is None:  # the length of the body as it is now (plugins may have rewritten it)
        body = reply.body or b""
        head_only = ctx is not None and ctx.method == "HEAD"
        # a HEAD answer has no body but keeps the length a GET would have (RFC 9110 9.3.2)
        length = reply.get_header("content-length") if head_only and not body else None
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in reply.headers if k != "content-length"]
        headers.append((b"content-length", length.encode("latin-1") if length is not None else b"%d" % len(body)))
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if head_only else body})
        return
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in reply.headers]
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    try:
        await _pump_until_disconnect(reply, send, ctx.receive if ctx is not None else None)
    finally:
        await reply.aclose()


async def _pump_until_disconnect(reply: Reply, send: Any, receive: Any) -> None:
    """Stream the body; if the client goes away first, stop and so cancel the upstream request."""

    stream = reply.stream
    assert stream is not None  # only a streamed reply is pumped

    async def pump() -> None:
        async for chunk in stream:
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
    failure = pumping.exception() if pumping.done() and not pumping.cancelled() else None
    if failure is not None and not watching.done():
        raise failure
