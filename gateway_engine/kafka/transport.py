"""``transport: kafka``: REST over Kafka behind the engine's Transport seam.

The proxy sends an ordinary upstream request; which route it serves, and who asks, come from the
request being forwarded (``foundation.context.forwarding``), whose route settings the feature bound
here (``bind_routes``). A request without a route is the health probe: a metadata round trip.

- request-reply: produce with ``correlation-id``, ``reply-to`` and ``reply-partition``, then answer
  with the reply that carries the same correlation id; ``Prefer: respond-async`` answers 202 with a
  ``Location`` on the backend's result route instead, where the result waits until its retention ends,
  in the store (``reply.results: store``, the default: any worker or instance answers it) or in this
  worker's memory (``memory``);
- fire-and-forget: 202 once the broker acknowledged the message;
- result: the result of an asynchronous request, for the caller who made it (``Prefer: wait=N`` waits).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

import orjson
from aiokafka.errors import KafkaError

from gateway_engine.config.bodies import DEFAULT_DEPTH, TooDeep, too_deep
from gateway_engine.foundation.context import RequestContext, forwarding
from gateway_engine.foundation.errors import GatewayError
from gateway_engine.foundation.reply import Reply
from gateway_engine.upstreams.seam import Timeouts, timeout_error, unavailable_error
from gateway_engine.upstreams.services import json_reply

from .client import KafkaClient, kafka_error
from .definitions import RouteSettings
from .messages import (
    CORRELATION_ID,
    IDEMPOTENCY_KEY,
    REPLY_PARTITION,
    REPLY_TO,
    correlation_id,
    owner_of,
    preferences,
    reply_outcome,
    request_headers,
)
from .replies import Entry, Replies, StoredReply
from .results import SharedResults
from .settings import cluster_settings

if TYPE_CHECKING:
    from gateway_engine.store import StoreSettings


def _not_found() -> GatewayError:
    return GatewayError(404, "RESULT_NOT_FOUND", "No such result: it never existed, has expired, or is not yours.")


class KafkaTransport:
    """One cluster connection and one reply registry, shared by every route of the upstreams that use it."""

    def __init__(self, *, timeouts: Timeouts, max_connections: int = 100, options: dict[str, Any] | None = None):
        self.timeouts = timeouts
        self.settings = cluster_settings(options or {})
        self.routes: Mapping[str, RouteSettings] = {}
        s = self.settings
        self.replies = Replies(max_pending=s.max_pending, max_retained=s.max_retained, retention=s.retention)
        self.client = KafkaClient(s, timeouts, self._on_reply)
        self.shared: SharedResults | None = None

    def bind_routes(self, routes: Mapping[str, RouteSettings], store: StoreSettings | None = None) -> None:
        """The route settings of a config that compiled without errors (a reload binds its own), and its store."""
        self.routes = routes
        if store is not None and self.settings.results == "store" and self.shared is None:
            self.shared = SharedResults(store, self.settings.retention)

    async def send(
        self, method: str, url: str, headers: list[tuple[str, str]], body: bytes | AsyncIterator[bytes] | None
    ) -> Reply:
        ctx = forwarding.get()
        if ctx is None or ctx.route is None:  # not a route's request: the health probe
            return await self._health()
        route = self.routes.get(ctx.route.qualified_name)
        if route is None:  # its config was replaced by a reload that dropped the route
            raise GatewayError(503, "BACKEND_NOT_CONFIGURED", "This route is no longer configured.")
        try:
            if route.mode == "result":
                return await self._result(ctx, route)
            value = await _read_body(body, self.settings.max_message_bytes)
            content_type = next((v for k, v in headers if k == "content-type"), None)
            message = request_headers(ctx, content_type) + _rendered_headers(ctx, route, value)
            key = _render(route.key, ctx, route, value)
            if route.mode == "fire-and-forget":
                async with asyncio.timeout(self.timeouts.total):
                    await self.client.produce(route.topic, value, key.encode() if key else None, message)
                return json_reply(202, {"accepted": True})
            return await self._request_reply(ctx, route, value, key, message)
        except KafkaError as exc:
            raise kafka_error(exc) from None
        except TimeoutError:
            raise timeout_error(self.timeouts.total) from None

    async def _request_reply(
        self, ctx: RequestContext, route: RouteSettings, value: bytes, key: str | None, message: list
    ) -> Reply:
        owner = owner_of(ctx)
        cid = correlation_id(ctx, owner)
        asked_async, wait = preferences(ctx)
        asynchronous = asked_async and route.location is not None
        existing = self.replies.lookup(cid)
        if existing is not None and existing.owner == owner:  # the same Idempotency-Key again: the same answer
            if asynchronous:
                return await self._accepted_or_done(cid, existing, route, wait)
            return await self._answer(cid, existing, self.timeouts.total)
        await self.client.ensure_reader()
        # kept after it arrived when asked for later: asynchronously, or again under the same Idempotency-Key
        keep = asynchronous or IDEMPOTENCY_KEY in ctx.headers
        shared = self.shared if asynchronous else None
        entry = self.replies.register(cid, owner, keep=keep, wait=self.timeouts.total, shared=shared is not None)
        message += [
            (CORRELATION_ID, cid.encode()),
            (REPLY_TO, self.settings.reply_topic.encode()),
            (REPLY_PARTITION, str(self.settings.reply_partition).encode()),
        ]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeouts.total
        try:
            if shared is not None:  # recorded before it is produced, so no reply can come first
                await shared.accept(cid, owner)
            async with asyncio.timeout(self.timeouts.total):
                await self.client.produce(route.topic, value, key.encode() if key else None, message)
        except BaseException:
            self.replies.forget(cid, entry)
            if entry.keep:
                self.replies.pending.pop(cid, None)
            raise
        if asynchronous:
            return await self._accepted_or_done(cid, entry, route, wait)
        return await self._answer(cid, entry, max(0.0, deadline - loop.time()))

    async def _accepted_or_done(self, cid: str, entry: Entry, route: RouteSettings, wait: float | None) -> Reply:
        """``respond-async``: 202 and the Location, unless the reply comes within ``wait=N`` (bounded by the timeout)."""
        if not entry.done and wait:
            try:
                await asyncio.wait_for(asyncio.shield(entry.future), min(wait, self.timeouts.total))
            except TimeoutError:
                pass
        return _reply(entry.future.result()) if entry.done else _accepted(cid, route)

    async def _answer(self, cid: str, entry: Entry, wait: float) -> Reply:
        try:
            outcome = await asyncio.wait_for(asyncio.shield(entry.future), wait)
        except TimeoutError:
            raise timeout_error(self.timeouts.total) from None
        finally:
            self.replies.forget(cid, entry)
        return _reply(outcome)

    async def _result(self, ctx: RequestContext, route: RouteSettings) -> Reply:
        cid, owner, wait = ctx.params.get(route.id_param, ""), owner_of(ctx), preferences(ctx)[1]
        entry = self.replies.lookup(cid)
        if entry is not None and entry.owner == owner:  # accepted here: its future answers at once
            return await self._accepted_or_done(cid, entry, route, wait)
        if self.shared is None:
            raise _not_found()
        if wait:
            found = await self.shared.wait(cid, owner, min(wait, self.timeouts.total))
        else:
            found = await self.shared.fetch(cid, owner)
        if found is None:
            raise _not_found()
        return _accepted(cid, route) if isinstance(found, str) else _reply(found)

    async def _health(self) -> Reply:
        try:
            async with asyncio.timeout(self.timeouts.connect):
                brokers = await self.client.probe()
        except KafkaError:
            raise unavailable_error() from None
        return json_reply(200 if brokers else 503, {"status": "up" if brokers else "down", "brokers": brokers})

    def _on_reply(self, record: Any) -> None:
        cid, outcome = reply_outcome(record, self.settings.max_reply_bytes)
        if cid is not None:
            entry = self.replies.resolve(cid, outcome)
            if entry is not None and entry.shared and self.shared is not None:
                self.shared.complete(cid, outcome)

    async def aclose(self) -> None:
        await self.client.aclose()
        if self.shared is not None:
            await self.shared.aclose()


async def _read_body(body: bytes | AsyncIterator[bytes] | None, limit: int) -> bytes:
    too_large = GatewayError(413, "PAYLOAD_TOO_LARGE", f"The message body exceeds {limit} bytes.")
    if body is None or isinstance(body, bytes):
        if len(body or b"") > limit:
            raise too_large
        return body or b""
    chunks, size = [], 0
    async for chunk in body:
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def _variables(ctx: RequestContext, route: RouteSettings, value: bytes) -> dict[str, Any]:
    cached = ctx.state.get("_kafka_vars")
    if cached is None:
        try:
            body = orjson.loads(value) if value.strip() else None
        except orjson.JSONDecodeError:
            body = None  # a non-JSON message body is sent as it is; templates see no body
        if too_deep(body, DEFAULT_DEPTH, value):
            raise GatewayError(400, "BODY_TOO_DEEP", f"The request body nests deeper than {DEFAULT_DEPTH} levels.")
        strip = ctx.route.strip_headers if ctx.route is not None else frozenset()
        cached = ctx.state["_kafka_vars"] = {
            "body": body,
            "query": ctx.query,
            "params": ctx.params,
            "headers": {k: v for k, v in ctx.headers.items() if k not in strip},
            "identity": ctx.identity or {},
            "env": route.env,
        }
    return cached


def _render(render: Any, ctx: RequestContext, route: RouteSettings, value: bytes) -> str | None:
    if render is None:
        return None
    try:
        out = render(_variables(ctx, route, value))
    except TooDeep as exc:
        raise GatewayError(400, "BODY_TOO_DEEP", f"The request holds JSON text that {exc}.") from None
    return None if out is None or out == "" else str(out)


def _rendered_headers(ctx: RequestContext, route: RouteSettings, value: bytes) -> list[tuple[str, bytes]]:
    out = []
    for name, render in route.headers:
        text = _render(render, ctx, route, value)
        if text is not None:
            out.append((name, text.encode()))
    return out


def _reply(outcome: StoredReply | GatewayError) -> Reply:
    if isinstance(outcome, GatewayError):
        raise outcome
    return Reply(outcome.status, list(outcome.headers), outcome.body, from_upstream=True)


def _accepted(cid: str, route: RouteSettings) -> Reply:
    assert route.location is not None  # only asked for when the backend has a result route
    reply = json_reply(202, {"id": cid, "status": "pending"})
    reply.headers += [("location", route.location.replace("{id}", cid)), ("preference-applied", "respond-async")]
    return reply
