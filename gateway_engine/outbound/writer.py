"""Group commit: what is submitted while a transaction is under way goes into the next one, together.

The emits of one moment are one ``executemany`` into the outbox; the outcomes of the attempts that
finished meanwhile are two statements for the lot. A submitter awaits the commit of the batch that
holds its item, so nothing is reported written before it is durable, while the round trips (and the
worker-thread hops of an embedded SQLite) are paid per batch, not per item. A failed batch fails each
of its submitters (each logs and counts its own); the next batch tries again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from .tables import messages

T = TypeVar("T")
MAX_BATCH = 500  # items per transaction: a burst larger than this is written in several


class GroupCommit(Generic[T]):
    def __init__(
        self,
        engine: AsyncEngine,
        apply: Callable[[AsyncConnection, Sequence[T]], Awaitable[None]],
        committed: Callable[[int], None] = lambda _count: None,
    ) -> None:
        self.engine = engine
        self.apply = apply  # writes one batch in the given transaction
        self.committed = committed  # called with the batch's size after each commit
        self._queue: list[tuple[T, asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> None:
        """Queue ``item``; returns once its batch committed (raises what the batch raised)."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._queue.append((item, done))
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._drain())
        await asyncio.shield(done)  # a cancelled submitter never cancels its neighbours' batch

    async def _drain(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
            try:
                async with self.engine.begin() as conn:
                    await self.apply(conn, [item for item, _ in batch])
            except Exception as exc:
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                        done.exception()  # retrieved here too: a submitter that went away logs nothing
                continue
            for _, done in batch:
                if not done.done():
                    done.set_result(None)
            self.committed(len(batch))

    async def close(self) -> None:
        """Let the batch under way (and what is queued) finish."""
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None


async def _insert_messages(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    await conn.execute(messages.insert(), list(rows))


def outbox_writer(engine: AsyncEngine, committed: Callable[[int], None]) -> GroupCommit[dict[str, Any]]:
    """Batches ``outbound_messages`` rows (``outbox.message_row``) into one insert per transaction."""
    return GroupCommit(engine, _insert_messages, committed)
