"""The shared database handle: one async SQLAlchemy engine per URL and event loop, used by every feature.

Features write SQLAlchemy Core against ``Store.engine``; the store adds what every
backend needs alike: SQLite in WAL mode with a busy timeout (several processes may
share the file) and ``synchronous=NORMAL`` (a commit survives the process crashing; an
OS crash or power cut may undo the last ones), the data directory created, and
notifications (``notify.py``). ``transact`` runs a batch of writes as one transaction.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from .notify import Callback, Notifier
from .settings import StoreSettings

T = TypeVar("T")


class Store:
    """A database: its engine, its dialect name and its notification channels."""

    def __init__(self, settings: StoreSettings) -> None:
        self.settings = settings
        self.dialect = settings.dialect
        self.engine: AsyncEngine = _engine(settings.url)
        self.notifier = Notifier(self)
        self.migrated = False
        self._sync: Engine | None = None  # a SQLite file's synchronous engine, for ``transact``
        self._drivers: list[sqlite3.Connection] = []  # ``transact_driver``'s connections not in use now
        self._closed = False

    @functools.cached_property
    def sqlite_path(self) -> Path | None:
        """The database file of a SQLite store (None for a server database or in-memory SQLite)."""
        if self.dialect != "sqlite":
            return None
        database = make_url(self.settings.url).database
        return Path(database) if database and database != ":memory:" else None

    async def transact(self, work: Callable[[Connection], T]) -> T:
        """``work(connection)`` in one transaction, committed when this returns.

        On a SQLite file it runs whole on a worker thread with a synchronous connection: one thread
        hop per transaction, where the async driver makes one per statement (begin, execute, commit,
        reset), which is what a batch of small writes spends most of its time on. A cancelled caller
        never cuts the transaction short (it would leave the file locked): the thread finishes it."""
        if self.sqlite_path is None:
            async with self.engine.begin() as conn:
                return await conn.run_sync(work)
        return await asyncio.to_thread(_run, self._sync_engine(), work)

    async def transact_driver(self, work: Callable[[Any], T]) -> T:
        """``work(connection)`` in one transaction on a SQLite file, for its hottest writes.

        As ``transact`` (one thread hop), but ``work`` gets a bare ``sqlite3`` connection, kept by the
        store for these transactions alone: no SQLAlchemy ``Connection`` is built, begun and reset
        around it (a third of what a batch of 25 outbox inserts cost: 330 against 244 µs), and no pool
        checkout and checkin (120 µs of a 130-row batch's 1.1 ms, measured in a busy gateway). Each
        transaction takes a connection nobody is using and gives it back; SQLite files only."""
        path = self.sqlite_path
        if path is None:
            raise RuntimeError(f"transact_driver needs a SQLite file store, not {self.dialect}")
        return await asyncio.to_thread(self._run_driver, path, work)

    def _run_driver(self, path: Path, work: Callable[[sqlite3.Connection], T]) -> T:
        try:
            connection = self._drivers.pop()  # atomic under the GIL: no two threads get the same one
        except IndexError:
            connection = sqlite3.connect(path, timeout=30, check_same_thread=False)
            _pragmas(connection, None)
        try:
            result = work(connection)
            connection.commit()
        except BaseException:
            try:
                connection.rollback()
            except sqlite3.Error:
                connection.close()  # not given back: its state is unknown
            else:
                self._give_back(connection)
            raise
        self._give_back(connection)
        return result

    def _give_back(self, connection: sqlite3.Connection) -> None:
        if self._closed:  # the store closed while this transaction ran (one that outlived its timeout)
            connection.close()
        else:
            self._drivers.append(connection)

    def _sync_engine(self) -> Engine:
        if self._sync is None:
            url = f"sqlite:///{self.sqlite_path}"
            self._sync = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
            event.listen(self._sync, "connect", _pragmas)
        return self._sync

    async def notify(self, channel: str, payload: str) -> None:
        """Tell every process on this store (this one included) about a change; see ``notify.py``."""
        await self.notifier.notify(channel, payload)

    async def subscribe(self, channel: str, callback: Callback) -> None:
        """Call ``callback(payload)`` for each notification on ``channel`` (listening once this returns)."""
        await self.notifier.subscribe(channel, callback)

    def unsubscribe(self, channel: str, callback: Callback) -> None:
        self.notifier.unsubscribe(channel, callback)

    async def close(self) -> None:
        await self.notifier.close()
        await self.engine.dispose()
        if self._sync is not None:
            self._sync.dispose()
        self._closed = True
        while self._drivers:
            self._drivers.pop().close()

    def __repr__(self) -> str:
        return f"Store({self.settings!r})"


def _engine(url: str) -> AsyncEngine:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_async_engine(url, pool_pre_ping=True)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url, connect_args={"timeout": 30})
    event.listen(engine.sync_engine, "connect", _pragmas)
    return engine


def _pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")  # in WAL mode: durable across process crashes, no fsync per commit
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _run(engine: Engine, work: Callable[[Connection], T]) -> T:
    with engine.begin() as conn:
        return work(conn)


_open: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, list[Any]]]" = weakref.WeakKeyDictionary()


def acquire_store(settings: StoreSettings) -> Store:
    """The process's store for these settings on the running loop, shared by every feature and config.

    Each ``acquire_store`` is paired with a ``release_store``; the last release closes it. A
    reload acquires for the new config before the old one releases, so the engine survives it.
    """
    stores = _open.setdefault(asyncio.get_running_loop(), {})
    held = stores.get(settings.url)
    if held is None:
        held = stores[settings.url] = [Store(settings), 0]
    held[1] += 1
    return held[0]


async def release_store(store: Store) -> None:
    stores = _open.get(asyncio.get_running_loop(), {})
    held = stores.get(store.settings.url)
    if held is None or held[0] is not store:
        await store.close()
        return
    held[1] -= 1
    if held[1] <= 0:
        del stores[store.settings.url]
        await store.close()
