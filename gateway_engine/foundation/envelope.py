"""The envelope: the one shape every client-facing answer has, and where errors become responses."""

from __future__ import annotations

import time
from typing import Any

import orjson

from gateway_engine.foundation.context import RequestContext
from gateway_engine.foundation.errors import GatewayError
from gateway_engine.foundation.reply import Reply

JSON = "application/json"


_clock: list = [-1, ""]  # the last millisecond formatted, and its text


def timestamp() -> str:
    """UTC ISO 8601 with milliseconds (``2026-11-23T16:00:00.000Z``), formatted once per millisecond."""
    now = time.time()
    ms = int(now * 1000)
    if ms != _clock[0]:
        _clock[0] = ms
        _clock[1] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{ms % 1000:03d}Z"
    return _clock[1]


def meta(ctx: RequestContext, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    out = {"source": ctx.backend, "timestamp": timestamp(), "requestId": ctx.request_id}
    if extra:
        out.update(extra)
    return out


def error_body(
    ctx: RequestContext, code: str, message: str, details: Any = None, extra_meta: dict[str, Any] | None = None
) -> bytes:
    error: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        error["details"] = details
    return orjson.dumps({"success": False, "error": error, "meta": meta(ctx, extra_meta)}, default=str)


def error_reply(ctx: RequestContext, err: GatewayError, extra_meta: dict[str, Any] | None = None) -> Reply:
    """The one place a GatewayError becomes a response (its code is kept in ``ctx.state`` for metrics)."""
    ctx.state["error_code"] = err.code
    headers = [("content-type", JSON), ("x-request-id", ctx.request_id)] + [
        (k.lower(), v) for k, v in err.headers.items()
    ]
    return Reply(err.status, headers, error_body(ctx, err.code, err.message, err.details, extra_meta))


def success_body(ctx: RequestContext, data_json: bytes, extra_meta: dict[str, Any] | None = None) -> bytes:
    """Splice already-serialised JSON ``data`` into the envelope without re-parsing it."""
    return (
        b'{"success":true,"data":' + data_json + b',"meta":' + orjson.dumps(meta(ctx, extra_meta), default=str) + b"}"
    )
