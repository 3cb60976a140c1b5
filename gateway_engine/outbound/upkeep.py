"""The dispatcher's upkeep between rounds: the backlog gauge's count and the retention period's deletes."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from .tables import attempts, deliveries, messages


async def backlog(engine: AsyncEngine) -> int:
    """Deliveries waiting to be sent."""
    async with engine.connect() as conn:
        count = await conn.execute(
            sa.select(sa.func.count()).select_from(deliveries).where(deliveries.c.status == "pending")
        )
        return int(count.scalar_one())


PRUNE_CHUNK = 500  # rows per delete: each is a transaction of its own, so the write lock is held briefly
PRUNE_CHUNKS = 20  # deletes per call: a large backlog of old rows is deleted over several dispatcher rounds


async def prune(
    engine: AsyncEngine, older_than: float, *, chunk: int = PRUNE_CHUNK, chunks: int = PRUNE_CHUNKS
) -> bool:
    """Delete what the retention period has passed: attempts, finished deliveries, messages none waits on.
    True when such rows are left (this call deleted its ``chunks`` and stopped: call again).

    The rows are found by a read and deleted by primary key, ``chunk`` at a time, each delete a transaction
    of its own. One ``DELETE ... WHERE created_at < ?`` per table deleted every old row in one transaction
    and scanned the whole table (the time columns have no index: one would cost every emit an insert), all
    under SQLite's write lock: 0.94 s for a million old messages, 0.06 s per million rows scanned (file
    cached), so a large backlog of old rows held the emits behind it past their 5 s timeout. A reader
    does not block SQLite's writer."""
    waited_on = sa.exists().where(deliveries.c.message_id == messages.c.id, deliveries.c.status == "pending")
    old = [
        (attempts, attempts.c.at < older_than),
        (deliveries, sa.and_(deliveries.c.created_at < older_than, deliveries.c.status != "pending")),
        (messages, sa.and_(messages.c.created_at < older_than, messages.c.fanned.is_(True), ~waited_on)),
    ]
    for table, condition in old:
        while True:
            if chunks <= 0:
                return True
            async with engine.connect() as conn:
                ids = (await conn.execute(sa.select(table.c.id).where(condition).limit(chunk))).scalars().all()
            if ids:  # the condition is checked again where the rows are deleted: they may have changed since
                chunks -= 1
                async with engine.begin() as conn:
                    await conn.execute(sa.delete(table).where(table.c.id.in_(ids), condition))
            if len(ids) < chunk:
                break
    return False
