"""Requests waiting for their reply, and asynchronous results kept for a while: both bounded.

A waiting request is an ``Entry`` keyed by its correlation id. When the reply arrives the entry's
future resolves; an asynchronous one (``Prefer: respond-async``) is then retained until its
retention ends, for the caller who asked (``owner``) to fetch. Nothing here does I/O.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from gateway_engine.foundation.errors import GatewayError

_SWEEP_EVERY = 1.0  # seconds between scans for abandoned asynchronous entries


@dataclass(frozen=True)
class StoredReply:
    """A reply as it goes back to the client: status, headers, body."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


Outcome = StoredReply | GatewayError


@dataclass
class Entry:
    owner: str  # who may read the result (the caller's consumer id; "" without auth)
    keep: bool  # retained after it arrived (an asynchronous request)
    expires: float  # monotonic time it is given up
    shared: bool = False  # its result is also written to the store, for every worker and instance
    future: asyncio.Future[Outcome] = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    @property
    def done(self) -> bool:
        return self.future.done()


class Replies:
    """The correlation ids this worker waits for (at most ``max_pending``) and its retained results."""

    def __init__(self, *, max_pending: int, max_retained: int, retention: float) -> None:
        self.max_pending = max_pending
        self.max_retained = max_retained
        self.retention = retention
        self.pending: dict[str, Entry] = {}
        self.retained: OrderedDict[str, Entry] = OrderedDict()
        self._swept = 0.0

    def lookup(self, cid: str) -> Entry | None:
        """The pending or retained entry of ``cid`` (None when unknown or expired)."""
        self._sweep()
        entry = self.pending.get(cid) or self.retained.get(cid)
        if entry is None or entry.expires < time.monotonic():
            return None
        return entry

    def register(self, cid: str, owner: str, *, keep: bool, wait: float, shared: bool = False) -> Entry:
        """A new waiting entry; 503 when ``max_pending`` requests already wait."""
        self._sweep()
        if len(self.pending) >= self.max_pending:
            raise GatewayError(503, "UPSTREAM_BUSY", "Too many requests are waiting for a reply; retry later.")
        entry = Entry(owner, keep, time.monotonic() + (self.retention if keep else wait + _SWEEP_EVERY * 5), shared)
        self.pending[cid] = entry
        return entry

    def resolve(self, cid: str, outcome: Outcome) -> Entry | None:
        """Hand an arrived reply to its waiter and return its entry; None when nobody here waits for ``cid``."""
        entry = self.pending.pop(cid, None)
        if entry is None:
            return None
        if not entry.future.done():
            entry.future.set_result(outcome)
        if entry.keep:
            entry.expires = time.monotonic() + self.retention
            self.retained[cid] = entry
            while len(self.retained) > self.max_retained:
                self.retained.popitem(last=False)
        return entry

    def forget(self, cid: str, entry: Entry) -> None:
        """A synchronous waiter gave up (timeout, client gone): its reply, if it comes, is dropped."""
        if not entry.keep and self.pending.get(cid) is entry:
            del self.pending[cid]

    def _sweep(self) -> None:
        now = time.monotonic()
        if now - self._swept < _SWEEP_EVERY:
            return
        self._swept = now
        for store in (self.pending, self.retained):
            for cid in [c for c, e in store.items() if e.expires < now]:
                del store[cid]
