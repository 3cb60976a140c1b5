"""request_size_limit: refuse request bodies over a size cap, declared or streamed."""

from __future__ import annotations

import re
from typing import Any

from gateway_engine import GatewayError, Plugin, RequestContext

_SIZE = re.compile(r"^\s*(\d+)\s*([KMG]i?B|B)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "kb": 1024, "kib": 1024, "mb": 1024**2, "mib": 1024**2, "gb": 1024**3, "gib": 1024**3}


def parse_size(value: int | str) -> int:
    """``1048576``, ``"512KB"``, ``"1MB"`` → bytes (units are powers of 1024, as in nginx)."""
    if isinstance(value, int):
        size = value
    else:
        match = _SIZE.match(value)
        if match is None:
            raise ValueError(f"max_bytes {value!r} is not a size; use bytes (1048576) or a unit: 512KB, 1MB, 1GB")
        size = int(match.group(1)) * _UNITS[(match.group(2) or "").lower()]
    if size < 1:
        raise ValueError(f"max_bytes must be at least 1 byte, got {value!r}")
    return size


def too_large(limit: int) -> GatewayError:
    return GatewayError(
        413,
        "PAYLOAD_TOO_LARGE",
        f"The request body is larger than the {limit} bytes this route accepts.",
        details={"max_bytes": limit},
    )


class RequestSizeLimitPlugin(Plugin):
    """A declared ``Content-Length`` over the cap is refused before any byte is read.

    A chunked body has no declared length, so ``ctx.receive`` is wrapped to count
    bytes as they stream; past the cap the wrapper raises 413 and the proxy stops
    forwarding, so the upstream never gets a complete oversized body.
    """

    name = "request_size_limit"
    priority = 1500
    options_schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "max_bytes": {
                "type": ["integer", "string"],
                "minimum": 1,
                "default": "10MB",
                "description": "Largest request body accepted: bytes, or a size with a unit (`512KB`, `1MB`, `1GB`; powers of 1024).",
            },
        },
    }

    def __init__(self, options: dict[str, Any], gateway: Any) -> None:
        super().__init__(options, gateway)
        self.max_bytes = parse_size(options["max_bytes"])

    @classmethod
    def check_options(cls, options: dict[str, Any]) -> list[str]:
        try:
            parse_size(options["max_bytes"])
        except ValueError as exc:
            return [str(exc)]
        return []

    async def on_request(self, ctx: RequestContext) -> GatewayError | None:
        length = ctx.headers.get("content-length")
        if length is not None and length.isdigit():
            # the server holds the client to a declared length, so checking the number is enough
            return too_large(self.max_bytes) if int(length) > self.max_bytes else None
        ctx.receive = _counting(ctx.receive, self.max_bytes)
        return None


def _counting(receive: Any, limit: int) -> Any:
    """``receive`` that raises 413 once the body read so far passes ``limit``."""
    seen = 0

    async def counted() -> dict[str, Any]:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise too_large(limit)
        return message

    return counted
