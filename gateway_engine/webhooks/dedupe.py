"""Remembering event ids, so an event runs once: in memory (one process) or in Redis (every instance).

An id goes through three states. ``claim`` takes it for one delivery (``processing``, with
a lease so a crashed instance cannot hold it forever); ``finish`` marks it ``done`` for the
dedupe window; ``release`` frees it when an action failed, so the sender's retry runs it.
Each action that succeeded is marked too, so a retry after a partial failure skips it.
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Awaitable
from typing import Any, Literal, Protocol

Claim = Literal["claimed", "done", "busy"]
_DONE = "done"


class StoreError(Exception):
    """The store could not be reached; exactly-once cannot be promised, so the delivery is refused (503)."""


class StoreFull(StoreError):
    """The memory store holds ``max_entries`` ids still inside their window: forgetting one would let its replay
    run again, so a new event is refused (503, the sender retries later) until some expire."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after  # seconds until the first entry expires


class EventStore(Protocol):
    async def claim(self, key: str, token: str, lease: float) -> Claim: ...
    async def finish(self, key: str, window: float) -> None: ...
    async def release(self, key: str, token: str) -> None: ...
    async def action_done(self, key: str, index: int) -> bool: ...
    async def mark_action(self, key: str, index: int, window: float) -> None: ...
    async def aclose(self) -> None: ...


class MemoryStore:
    """A dict with expiry times. Every operation runs without awaiting, so it is atomic on the event loop.

    An entry is never dropped before it expires. ``claim`` of a new id is where the size is held: it first
    drops the expired entries (a heap of expiry times, so each costs O(log n) once), and raises StoreFull when
    ``max_entries`` are still stored. ``finish`` and ``mark_action`` of a claimed event always store, so the
    size may pass ``max_entries`` by the marks of the events in flight.
    """

    def __init__(self, max_entries: int = 100_000) -> None:
        self.entries: dict[str, tuple[str, float]] = {}
        self.expiries: list[tuple[float, str]] = []  # heap; an item whose entry was rewritten or removed is skipped
        self.max_entries = max_entries

    def _get(self, key: str) -> str | None:
        entry = self.entries.get(key)
        if entry is None or entry[1] <= time.monotonic():
            return None
        return entry[0]

    def _set(self, key: str, value: str, ttl: float) -> None:
        expires = time.monotonic() + ttl
        self.entries[key] = (value, expires)
        heapq.heappush(self.expiries, (expires, key))

    def _expire(self) -> None:
        now, heap = time.monotonic(), self.expiries
        while heap and heap[0][0] <= now:
            expires, key = heapq.heappop(heap)
            entry = self.entries.get(key)
            if entry is not None and entry[1] == expires:
                del self.entries[key]

    async def claim(self, key: str, token: str, lease: float) -> Claim:
        self._expire()
        current = self._get(key)
        if current is not None:
            return "done" if current == _DONE else "busy"
        if len(self.entries) >= self.max_entries:
            wait = math.ceil(self.expiries[0][0] - time.monotonic()) if self.expiries else 1
            raise StoreFull(
                f"the memory webhook store holds {self.max_entries} entries still inside their window",
                min(max(wait, 1), 3600),
            )
        self._set(key, token, lease)
        return "claimed"

    async def finish(self, key: str, window: float) -> None:
        self._set(key, _DONE, window)

    async def release(self, key: str, token: str) -> None:
        if self._get(key) == token:
            del self.entries[key]

    async def action_done(self, key: str, index: int) -> bool:
        return self._get(f"{key}#{index}") is not None

    async def mark_action(self, key: str, index: int, window: float) -> None:
        self._set(f"{key}#{index}", _DONE, window)

    async def aclose(self) -> None:
        return None


def _ms(seconds: float) -> int:
    """A Redis PX: at least 1 ms (0 is an error there, which would refuse every delivery)."""
    return max(1, math.ceil(seconds * 1000))


_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


class RedisStore:
    """The same states in Redis (``SET NX PX`` to claim, a compare-and-delete script to release)."""

    def __init__(self, url: str, prefix: str = "gateway:webhook:") -> None:
        import redis.asyncio as aioredis  # only configs that use Redis import it

        self.client = aioredis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0, decode_responses=True)
        self.prefix = prefix
        self.errors = (aioredis.RedisError, OSError)

    async def _run(self, call: Awaitable[Any]) -> Any:
        try:
            return await call
        except self.errors as exc:
            raise StoreError(f"webhook store unreachable: {type(exc).__name__}") from None

    async def claim(self, key: str, token: str, lease: float) -> Claim:
        if await self._run(self.client.set(self.prefix + key, token, nx=True, px=_ms(lease))):
            return "claimed"
        return "done" if await self._run(self.client.get(self.prefix + key)) == _DONE else "busy"

    async def finish(self, key: str, window: float) -> None:
        await self._run(self.client.set(self.prefix + key, _DONE, px=_ms(window)))

    async def release(self, key: str, token: str) -> None:
        await self._run(self.client.eval(_RELEASE, 1, self.prefix + key, token))

    async def action_done(self, key: str, index: int) -> bool:
        return bool(await self._run(self.client.exists(f"{self.prefix}{key}#{index}")))

    async def mark_action(self, key: str, index: int, window: float) -> None:
        await self._run(self.client.set(f"{self.prefix}{key}#{index}", _DONE, px=_ms(window)))

    async def aclose(self) -> None:
        await self.client.aclose()


_memory: dict[str, MemoryStore] = {}


def open_store(url: str, scope: str, capacity: int = 100_000) -> EventStore:
    """The store at ``url``. A memory store is kept per ``scope`` (the config directory) for the
    life of the process, so a hot reload does not forget which events already ran."""
    if url.startswith(("redis://", "rediss://")):
        return RedisStore(url)
    store = _memory.setdefault(scope, MemoryStore(capacity))
    store.max_entries = capacity  # a reload may change it; the ids it holds stay
    return store
