"""Reading the client's request body: capped, within its deadline, parsed once and checked for depth."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson

from gateway_engine.compiled.model import BODY_METHODS, CompiledConfig
from gateway_engine.config.bodies import too_deep
from gateway_engine.foundation.context import RequestContext
from gateway_engine.foundation.errors import GatewayError

log = logging.getLogger("gateway_engine.proxy")


class BodyError:
    """Holds an error raised while streaming the client body, so the proxy can report it."""

    __slots__ = ("error",)

    def __init__(self) -> None:
        self.error: GatewayError | None = None


def declared_length(ctx: RequestContext) -> int:
    length = ctx.headers.get("content-length", "")
    return int(length) if length.isdigit() else 1 << 62  # chunked: unknown, so stream it


def has_body(ctx: RequestContext) -> bool:
    if ctx.method not in BODY_METHODS:
        return False
    length = ctx.headers.get("content-length")
    return (length is not None and length != "0") or "chunked" in ctx.headers.get("transfer-encoding", "")


async def stream_body(ctx: RequestContext, holder: BodyError) -> AsyncIterator[bytes]:
    try:
        while True:
            message = await ctx.receive()
            if message["type"] == "http.disconnect":
                raise GatewayError(
                    400, "CLIENT_DISCONNECTED", "The client closed the connection while sending the body."
                )
            chunk = message.get("body", b"")
            if chunk:
                yield chunk
            if not message.get("more_body", False):
                return
    except GatewayError as exc:
        holder.error = exc
        raise


async def read_body(ctx: RequestContext, limit: int) -> bytes:
    """Buffer the client body once (413 past ``limit``, checked before and while reading)."""
    if ctx.body is not None:
        return ctx.body
    length = ctx.headers.get("content-length")
    if length and length.isdigit() and int(length) > limit:
        raise GatewayError(413, "PAYLOAD_TOO_LARGE", f"The request body exceeds {limit} bytes.")
    upstream = ctx.route.upstream if ctx.route is not None else None
    if upstream is None:  # no route deadline: the server's body timeout bounds the pauses
        return await _read_chunks(ctx, limit)
    total = upstream.timeouts.total
    try:  # a buffered body must arrive within the route's total, counted from the request's start
        async with asyncio.timeout(ctx.started + total - time.perf_counter()):
            return await _read_chunks(ctx, limit)
    except TimeoutError:
        raise GatewayError(
            408,
            "REQUEST_TIMEOUT",
            f"The request body did not arrive within {total:g}s.",
            headers={"connection": "close"},
        ) from None


async def _read_chunks(ctx: RequestContext, limit: int) -> bytes:
    chunks, size = [], 0
    while True:
        message = await ctx.receive()
        if message["type"] == "http.disconnect":
            raise GatewayError(400, "CLIENT_DISCONNECTED", "The client closed the connection while sending the body.")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise GatewayError(413, "PAYLOAD_TOO_LARGE", f"The request body exceeds {limit} bytes.")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    ctx.body = b"".join(chunks)
    return ctx.body


async def parse_json_body(ctx: RequestContext, config: CompiledConfig) -> Any:
    """The client body as JSON: 415 for a non-JSON content type, 400 with the position for bad JSON."""
    if ctx.body_json is not None:
        return ctx.body_json
    raw = await read_body(ctx, config.limits["request_body"])
    if not raw.strip():
        return None
    content_type = ctx.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type != "application/json" and not content_type.endswith("+json"):
        raise GatewayError(
            415,
            "UNSUPPORTED_MEDIA_TYPE",
            f"This route expects a JSON body (Content-Type: application/json), got {content_type or 'none'!r}.",
        )
    depth = config.limits["body_depth"]
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if exc.msg.startswith("depth limit"):  # orjson's own limit (1024) is past ours
            raise _body_too_deep(depth) from None
        raise GatewayError(
            400,
            "INVALID_JSON",
            f"The request body is not valid JSON: {exc.msg}",
            details={"line": exc.lineno, "column": exc.colno, "position": exc.pos},
        ) from None
    if too_deep(body, depth, raw):
        raise _body_too_deep(depth)
    ctx.body_json = body
    return body


def _body_too_deep(depth: int) -> GatewayError:
    return GatewayError(400, "BODY_TOO_DEEP", f"The request body nests deeper than {depth} levels.")
