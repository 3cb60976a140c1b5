"""Change notifications between every process on one store: PostgreSQL LISTEN/NOTIFY, or a polled SQLite table.

A feature that caches what it read (verified keys, say) calls ``notify`` after a
change and ``subscribe``\\ s to drop its cache entries. On PostgreSQL a dedicated
connection LISTENs, so a change reaches other instances in milliseconds. SQLite has
no such channel: the notification is delivered to this process at once and written
to ``store_notifications``, which other processes on the same file poll every
``poll_interval`` seconds (rows older than a minute are pruned). Delivery is at least
once: a callback must be idempotent. Callbacks run on the event loop and must not block.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy import text

if TYPE_CHECKING:
    from .database import Store

log = logging.getLogger("gateway_engine.store")
Callback = Callable[[str], None]
_KEEP_SECONDS = 60.0


class Notifier:
    def __init__(self, store: "Store") -> None:
        self.store = store
        self.callbacks: dict[str, list[Callback]] = {}
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._connection: Any = None  # the LISTEN connection (PostgreSQL)

    async def notify(self, channel: str, payload: str) -> None:
        async with self.store.engine.begin() as conn:
            if self.store.dialect == "postgresql":
                await conn.execute(text("SELECT pg_notify(:c, :p)"), {"c": channel, "p": payload})
                return
            await conn.execute(
                text("INSERT INTO store_notifications (channel, payload, created_at) VALUES (:c, :p, :t)"),
                {"c": channel, "p": payload, "t": time.time()},
            )
        self._deliver(channel, payload)  # this process at once; the others when they poll

    async def subscribe(self, channel: str, callback: Callback) -> None:
        """Deliver ``channel``'s notifications to ``callback`` from now on; returns once listening."""
        self.callbacks.setdefault(channel, []).append(callback)
        if self._task is None:
            listen = self._listen_postgresql if self.store.dialect == "postgresql" else self._poll_sqlite
            self._task = asyncio.create_task(listen())
        elif self._connection is not None and len(self.callbacks[channel]) == 1:
            await self._connection.add_listener(channel, self._on_pg)
        await self._ready.wait()

    def _deliver(self, channel: str, payload: str) -> None:
        for callback in self.callbacks.get(channel, ()):
            try:
                callback(payload)
            except Exception:  # one subscriber's bug must not stop the others
                log.exception("store notification callback failed on channel %s", channel)

    def _on_pg(self, _connection: Any, _pid: int, channel: str, payload: str) -> None:
        self._deliver(channel, payload)

    async def _listen_postgresql(self) -> None:
        import asyncpg

        dsn = self.store.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        while True:
            try:
                lost = asyncio.Event()
                self._connection = await asyncpg.connect(dsn)
                self._connection.add_termination_listener(lambda _c, lost=lost: lost.set())
                for channel in self.callbacks:
                    await self._connection.add_listener(channel, self._on_pg)
                self._ready.set()
                await lost.wait()
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("store LISTEN connection lost (%s); reconnecting", type(exc).__name__)
            finally:
                self._connection = None
            self._ready.set()  # never keep a subscriber waiting on a database that is down
            await asyncio.sleep(1.0)

    async def _poll_sqlite(self) -> None:
        last = await self._scalar("SELECT COALESCE(MAX(id), 0) FROM store_notifications", {})
        self._ready.set()
        polls = 0
        while True:
            await asyncio.sleep(self.store.settings.poll_interval)
            try:
                async with self.store.engine.begin() as conn:
                    rows = (
                        await conn.execute(
                            text(
                                "SELECT id, channel, payload FROM store_notifications WHERE id > :last ORDER BY id LIMIT 1000"
                            ),
                            {"last": last},
                        )
                    ).all()
                    polls += 1
                    if polls % 200 == 0:
                        await conn.execute(
                            text("DELETE FROM store_notifications WHERE created_at < :t"),
                            {"t": time.time() - _KEEP_SECONDS},
                        )
            except Exception as exc:  # a locked or vanished file: try again on the next tick
                log.warning("store notification poll failed (%s)", type(exc).__name__)
                continue
            for row_id, channel, payload in rows:
                last = row_id
                self._deliver(channel, payload)

    async def _scalar(self, sql: str, params: dict[str, Any]) -> Any:
        async with self.store.engine.connect() as conn:
            return (await conn.execute(text(sql), params)).scalar()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.close()
