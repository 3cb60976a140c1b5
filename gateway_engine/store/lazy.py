"""A store opened on first use: acquired once, migrated by one shared attempt, released when its owner stops.

Features that may run while their database is down (the outbox, shared Kafka results) open the store
when they first need it rather than at startup; a failed migration is tried again on the next use.
SQLAlchemy is imported only then, so a config that never uses the store never loads it.

The opening is a task of its own that every caller waits on (shielded): a caller that gives up (an
emit's 5 s timeout) does not cut the migration short. Before, the caller holding the lock was the
one migrating, so on a machine where migrating takes longer than a caller waits, every attempt was
cancelled halfway and the next caller started again: the store never opened.
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
        self._opening: asyncio.Task[Store] | None = None  # the attempt under way (or the last, failed, one)

    async def get(self) -> Store:
        """The store, migrated; raises while it cannot be reached (the next call tries again)."""
        if self.ready is not None:
            return self.ready
        opening = self._opening
        if opening is None or opening.done() or opening.get_loop() is not asyncio.get_running_loop():
            opening = self._opening = asyncio.get_running_loop().create_task(self._open())
            opening.add_done_callback(_retrieved)
        return await asyncio.shield(opening)

    async def _open(self) -> Store:
        from .database import acquire_store
        from .migrations import ensure_migrated

        if self._handle is None:
            self._handle = acquire_store(self._settings())
        await ensure_migrated(self._handle)
        self.ready = self._handle
        return self.ready

    async def close(self) -> None:
        opening, self._opening = self._opening, None
        if opening is not None and not opening.done() and opening.get_loop() is asyncio.get_running_loop():
            opening.cancel()  # the owner stops: nobody waits for the store any more
            await asyncio.gather(opening, return_exceptions=True)
        if self._handle is not None:
            from .database import release_store

            store, self._handle, self.ready = self._handle, None, None
            await release_store(store)


def _retrieved(task: asyncio.Task[Store]) -> None:
    """A failed attempt's exception reaches its waiters; one nobody waited for logs nothing."""
    if not task.cancelled():
        task.exception()
