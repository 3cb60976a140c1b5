"""One client connection's bounded queue and its slow-consumer policy, whatever the transport.

A message is never awaited by the publisher: ``offer`` is synchronous and O(1). A full queue either drops
its oldest message (``drop_oldest``) or marks the connection overflowed so its writer closes it
(``disconnect``); both count in ``gateway_realtime_slow_consumer``.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from .metrics import DELIVERED, SLOW_CONSUMERS


@dataclass
class Push:
    """One message on one concrete channel; its frames are encoded once, whoever receives it."""

    id: str
    channel: str
    event: str
    data: Any
    _frames: dict[str, bytes] = field(default_factory=dict, repr=False)
    _text: str | None = field(default=None, repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "channel": self.channel, "event": self.event, "data": self.data}

    def text(self) -> str:
        """The WebSocket text frame, decoded once."""
        cached = self._text
        if cached is None:
            cached = self._text = self.frame("ws").decode()
        return cached

    def frame(self, kind: str) -> bytes:
        """``ws``: the JSON text frame; ``sse``: the event-stream record."""
        cached = self._frames.get(kind)
        if cached is None:
            if kind == "ws":
                cached = orjson.dumps({"type": "message", **self.as_dict()}, default=str)
            else:
                data = orjson.dumps({"channel": self.channel, "data": self.data}, default=str)
                cached = b"id: %s\nevent: %s\ndata: %s\n\n" % (self.id.encode(), self.event.encode(), data)
            self._frames[kind] = cached
        return cached


class Closed(Exception):
    """The connection was closed; ``code`` and ``reason`` say why (WebSocket close codes)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


SLOW_CONSUMER = Closed(4429, "SLOW_CONSUMER")


class Connection:
    """A subscriber: its identity, its channels, and the messages waiting for its writer.

    A writer either awaits ``next`` (one task per connection), or sets ``notify`` and drains with ``take``
    when called (no task while the connection is idle: what lets one worker hold many sockets).
    """

    __slots__ = (
        "identity",
        "owner",
        "transport",
        "channels",
        "notify",
        "_queue",
        "_size",
        "_policy",
        "_ready",
        "_closed",
        "_delivered",
    )

    def __init__(self, identity: Mapping[str, Any], owner: str, transport: str, size: int, policy: str) -> None:
        self.identity = identity
        self.owner = owner  # who counts against the per-identity limit
        self.transport = transport
        self.channels: set[str] = set()
        self.notify: Callable[[], None] | None = None
        self._queue: deque[Push] | None = None  # made on the first message, dropped once drained (~0.5 KB idle)
        self._size, self._policy = size, policy
        self._ready: asyncio.Event | None = None  # made by the first ``next``
        self._closed: Closed | None = None
        self._delivered = DELIVERED.labels(transport)

    def offer(self, push: Push) -> None:
        if self._closed is not None:
            return
        queue = self._queue
        if queue is None:
            queue = self._queue = deque()
        if len(queue) >= self._size:
            if self._policy == "disconnect":
                SLOW_CONSUMERS.labels(self.transport, "disconnected").inc()
                self.close(SLOW_CONSUMER)
                return
            queue.popleft()
            SLOW_CONSUMERS.labels(self.transport, "dropped").inc()
        queue.append(push)
        self._delivered.inc()
        self._wake()

    def close(self, why: Closed) -> None:
        if self._closed is None:
            self._closed = why
            self._queue = None
            self._wake()

    def _wake(self) -> None:
        if self.notify is not None:
            self.notify()
        elif self._ready is not None:
            self._ready.set()

    @property
    def closed(self) -> Closed | None:
        return self._closed

    def take(self) -> Push | None:
        """The next waiting message, or None."""
        queue = self._queue
        if not queue:
            self._queue = None
            return None
        return queue.popleft()

    async def next(self, wait: float | None = None) -> Push | None:
        """The next message (None after ``wait`` seconds without one); raises Closed once closed."""
        if self._ready is None:
            self._ready = asyncio.Event()
        while not self._queue:
            if self._closed is not None:
                raise self._closed
            self._ready.clear()
            try:
                async with asyncio.timeout(wait):
                    await self._ready.wait()
            except TimeoutError:
                return None
        if self._closed is not None:
            raise self._closed
        return self._queue.popleft()
