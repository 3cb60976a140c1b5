"""What transports that answer in process (built-in services: workflows, keys, webhook subscriptions, Kafka
results) share: reading the client's JSON body within bounds, and answering JSON."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from gateway_engine.config.bodies import DEFAULT_DEPTH, too_deep
from gateway_engine.foundation.errors import GatewayError
from gateway_engine.foundation.reply import Reply


async def json_body(body: bytes | AsyncIterator[bytes] | None, limit: int) -> Any:
    """The body as JSON (``{}`` when empty): 413 past ``limit`` bytes, 400 when malformed or nested too deep."""
    if body is None or isinstance(body, bytes):
        raw = body or b""
    else:
        chunks, size = [], 0
        async for chunk in body:
            size += len(chunk)
            if size > limit:
                raise GatewayError(413, "PAYLOAD_TOO_LARGE", f"The request body exceeds {limit} bytes.")
            chunks.append(chunk)
        raw = b"".join(chunks)
    if len(raw) > limit:
        raise GatewayError(413, "PAYLOAD_TOO_LARGE", f"The request body exceeds {limit} bytes.")
    try:
        value = orjson.loads(raw) if raw.strip() else {}
    except orjson.JSONDecodeError:
        raise GatewayError(400, "INVALID_JSON", "The request body is not valid JSON.") from None
    if too_deep(value, DEFAULT_DEPTH, raw):
        raise GatewayError(400, "BODY_TOO_DEEP", f"The request body nests deeper than {DEFAULT_DEPTH} levels.")
    return value


def json_reply(status: int, value: Any) -> Reply:
    """A JSON answer as if from an upstream (the envelope and response mappings treat it so)."""
    return Reply(status, [("content-type", "application/json")], orjson.dumps(value), from_upstream=True)
