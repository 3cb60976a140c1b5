"""Features' after-answer hooks: run once a route's answer was written, never on the client's path.

A hook that reads the answer's body gets a copy taken while the body streams to the client
(at most ``limits.response_body`` bytes), so the answer is neither buffered nor delayed for it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from gateway_engine.compiled.model import CompiledRoute
from gateway_engine.foundation.context import RequestContext
from gateway_engine.foundation.reply import Reply

log = logging.getLogger("gateway_engine")


class BodyCopy:
    """The body of ``reply`` as it goes out: its bytes once complete and within ``limit``, else None."""

    def __init__(self, reply: Reply, limit: int) -> None:
        self.limit = limit
        self.chunks: list[bytes] = []
        self.size = 0
        self.done = reply.stream is None
        self.whole = reply.body if reply.stream is None else None
        if reply.stream is not None:
            reply.stream = self._tee(reply.stream)

    async def _tee(self, inner: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        async for chunk in inner:
            if self.size <= self.limit:
                self.size += len(chunk)
                self.chunks.append(chunk)
            yield chunk
        self.done = True

    def body(self) -> bytes | None:
        if self.whole is not None:
            return self.whole
        if not self.done or self.size > self.limit:
            return None
        return b"".join(self.chunks)


def run_hooks(route: CompiledRoute, ctx: RequestContext, reply: Reply, body: bytes | None) -> None:
    """Every hook, each isolated: a failing hook is logged and never reaches the client or the others."""
    for hook in route.after_answer:
        try:
            hook(ctx, reply, body)
        except Exception:
            log.exception("an after-answer hook of route %s failed", route.qualified_name)
