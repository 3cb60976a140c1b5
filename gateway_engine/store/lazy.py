"""A store opened on first use: acquired once, migrated under a lock, released when its owner stops.

Features that may run while their database is down (the outbox, shared Kafka results) open the store
when they first need it rather than at startup; a failed migration is tried again on the next use.
SQLAlchemy is imported only then, so a config that never uses the store never loads it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .database import Store
    from .settings import StoreSettings


class LazyStore:
    def __init__(self, settings: Callable[[], StoreSettings]) -> None:
        self._settings = settings  # called once, at the first use (a bad URL raises there, as the store does)
        self._handle: Store | None = None  # acquired: released by ``close``
        self.ready: Store | None = None  # acquired and migrated
        self._opening: asyncio.Lock | None = None

    async def get(self) -> Store:
        """The store, migrated; raises while it cannot be reached (the next call tries again)."""
        if self.ready is None:
            from .database import acquire_store
            from .migrations import ensure_migrated

            self._opening = self._opening or asyncio.Lock()
            async with self._opening:
                if self.ready is None:
                    if self._handle is None:
                        self._handle = acquire_store(self._settings())
                    await ensure_migrated(self._handle)
                    self.ready = self._handle
        return self.ready

    async def close(self) -> None:
        if self._handle is not None:
            from .database import release_store

            store, self._handle, self.ready = self._handle, None, None
            await release_store(store)
