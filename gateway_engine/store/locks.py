"""The migration lock: one migrator at a time per database, across processes.

PostgreSQL: a session advisory lock on a dedicated connection. SQLite: an exclusive
``flock`` on ``<database>.lock`` beside the file (taken in a thread, so the event
loop keeps serving while it waits).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
from collections.abc import AsyncIterator

from sqlalchemy import text

from .database import Store

_ADVISORY_KEY = 0x6761_7465_7761_7931  # "gatewayl": any fixed 63-bit number shared by every gateway


@contextlib.asynccontextmanager
async def migration_lock(store: Store) -> AsyncIterator[None]:
    if store.dialect == "postgresql":
        async with store.engine.connect() as conn:
            await conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _ADVISORY_KEY})
            await conn.commit()
            try:
                yield
            finally:
                await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _ADVISORY_KEY})
                await conn.commit()
        return
    path = store.sqlite_path
    if path is None:  # in-memory: a single process by definition
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = await asyncio.to_thread(open, f"{path}.lock", "a+")
    try:
        await asyncio.to_thread(fcntl.flock, handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    finally:
        handle.close()
