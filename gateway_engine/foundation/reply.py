"""The response travelling back through the plugin chain: buffered or streamed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from gateway_engine.foundation.errors import GatewayError

_UNSET: Any = object()


class Reply:
    """Status, headers and a body that is either bytes or a byte stream.

    Headers are a list of ``(lower-case name, value)`` pairs so repeated headers
    (``set-cookie``) survive. A plugin that needs the body calls ``await read()``;
    one that does not leaves a stream untouched, so large bodies are never held.
    """

    __slots__ = ("status", "headers", "body", "stream", "_json", "from_upstream", "close")

    def __init__(
        self,
        status: int,
        headers: list[tuple[str, str]] | None = None,
        body: bytes | None = b"",
        stream: AsyncIterator[bytes] | None = None,
        *,
        from_upstream: bool = False,
        close: Any = None,
    ) -> None:
        self.status = status
        self.headers = headers if headers is not None else []
        self.body = body if stream is None else None
        self.stream = stream
        self._json = _UNSET
        self.from_upstream = from_upstream
        self.close = close  # awaitable factory that releases an upstream connection

    # headers -----------------------------------------------------------
    def get_header(self, name: str, default: str | None = None) -> str | None:
        name = name.lower()
        for k, v in self.headers:
            if k == name:
                return v
        return default

    def set_header(self, name: str, value: str) -> None:
        """Replace every ``name`` header (repeated ones too) with one."""
        name = name.lower()
        self.headers = [h for h in self.headers if h[0] != name]
        self.headers.append((name, value))

    def set_headers(self, pairs: list[tuple[str, str]], remove: frozenset[str] = frozenset()) -> None:
        """Replace the headers named in ``pairs`` and drop those in ``remove``, in one pass.

        Names must be lower-case; a plugin that sets several headers per request saves a
        pass over the list per header this way.
        """
        names = remove.union([k for k, _ in pairs])
        self.headers = [h for h in self.headers if h[0] not in names]
        self.headers.extend(pairs)

    def add_header(self, name: str, value: str) -> None:
        self.headers.append((name.lower(), value))

    def remove_header(self, name: str) -> None:
        name = name.lower()
        if any(k == name for k, _ in self.headers):
            self.headers = [(k, v) for k, v in self.headers if k != name]

    @property
    def content_type(self) -> str:
        return (self.get_header("content-type") or "").split(";", 1)[0].strip().lower()

    @property
    def is_json(self) -> bool:
        ct = self.content_type
        return ct == "application/json" or (ct.startswith("application/") and ct.endswith("+json"))

    # body --------------------------------------------------------------
    async def read(self, limit: int) -> bytes:
        """Buffer the body (at most ``limit`` bytes, else 502 RESPONSE_TOO_LARGE)."""
        if self.stream is None:
            return self.body or b""
        declared = self.get_header("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            await self.aclose()
            raise _too_large(limit)
        chunks: list[bytes] = []
        size = 0
        try:
            async for chunk in self.stream:
                size += len(chunk)
                if size > limit:
                    raise _too_large(limit)
                chunks.append(chunk)
        finally:
            await self.aclose()
        self.stream = None
        self.body = b"".join(chunks)
        return self.body

    def json(self) -> Any:
        """The buffered body parsed as JSON (call ``read`` first); raises ValueError if invalid."""
        if self._json is _UNSET:
            self._json = orjson.loads(self.body or b"null")
        return self._json

    def set_json(self, value: Any) -> None:
        self._json = value
        self.body = orjson.dumps(value)
        self.stream = None
        self.set_header("content-type", "application/json")

    def set_body(self, body: bytes) -> None:
        self.body = body
        self.stream = None
        self._json = _UNSET

    async def aclose(self) -> None:
        if self.close is not None:
            close, self.close = self.close, None
            await close()


def _too_large(limit: int) -> GatewayError:
    return GatewayError(
        502,
        "RESPONSE_TOO_LARGE",
        f"The upstream response is larger than the {limit}-byte buffer this route allows; "
        "raise the route's response buffer or turn off body mapping/envelope for it.",
    )
