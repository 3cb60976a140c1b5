"""Group commit: what is submitted while a transaction is under way goes into the next one, together.

The emits of one moment are one multi-row insert into the outbox; the outcomes of the attempts that
finished meanwhile are two statements for the lot. A batch is one ``Store.transact`` (on SQLite: one
hop to a thread for the whole transaction; the outbox's own inserts use ``Store.transact_driver``), so
the round trips (and the worker-thread hops of an embedded SQLite) are paid per batch, not per item.
Every batch waits ``linger`` for company, not only the first of a stream: a store that commits quickly
would otherwise write one row per transaction.

Two ways in. ``submit`` returns once the item's batch committed, so nothing is reported written
before it is durable (the dispatcher's outcomes, the in-process ``emit``). ``enqueue`` returns at
once (a route's emit: the client has its answer, and a request that waited for the commit would
hold its task, and its place under ``max_connections``, for the linger and the transaction); its
batch's outcome reaches ``committed`` or ``failed``. What is enqueued is bounded: past
``max_queued`` waiting items ``enqueue`` refuses, so a store slower than the traffic costs events
(counted, logged), never the gateway's memory. A failed batch fails each of its submitters and goes
to ``failed``; the next batch tries again.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from .outbox import deliveries_for, subscribed
from .payload import VARYING, Outgoing, rows, values
from .tables import deliveries, endpoints, messages

if TYPE_CHECKING:
    from gateway_engine.store import Store

log = logging.getLogger("gateway_engine.outbound")
T = TypeVar("T")
Transact = Callable[[Callable[[Connection], Any]], Awaitable[Any]]  # ``Store.transact``
MAX_BATCH = 500  # items per transaction: a burst larger than this is written in several
MAX_QUEUED = 10_000  # enqueued items waiting for a transaction; past it ``enqueue`` refuses


class GroupCommit(Generic[T]):
    def __init__(
        self,
        transact: Transact,
        apply: Callable[[Connection, Sequence[T]], None],
        committed: Callable[[Sequence[T]], None] = lambda _items: None,
        timeout: float | None = None,
        linger: float = 0.0,
        failed: Callable[[Sequence[T], Exception], None] = lambda _items, _exc: None,
        max_queued: int = MAX_QUEUED,
    ) -> None:
        self.transact = transact  # runs a function in one transaction (``Store.transact``)
        self.apply = apply  # writes one batch in the given transaction (synchronous: it may run on a thread)
        self.committed = committed  # called with each committed batch's items
        self.timeout = timeout  # a batch slower than this fails its submitters (its thread still finishes it)
        self.linger = linger  # seconds the first item of a batch waits for others to join it
        self.failed = failed  # called with a failed batch's enqueued items (submitters get the exception)
        self.max_queued = max_queued
        # what waits for the next batch, and beside each item its submitter's future (None: enqueued);
        # two lists, not a list of pairs: an emit then costs two appends and no tuple
        self._queue: list[T] = []
        self._waiting: list[asyncio.Future[None] | None] = []
        self._task: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> None:
        """Queue ``item``; returns once its batch committed (raises what the batch raised)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append(item)
        self._waiting.append(done)
        self._start()
        await done  # a cancelled submitter cancels only its own wait, never its neighbours' batch

    def enqueue(self, item: T) -> bool:
        """Queue ``item`` for the next batch and return at once; False (nothing queued) when the queue is full."""
        if len(self._queue) >= self.max_queued:
            return False
        self._queue.append(item)
        self._waiting.append(None)
        if self._task is None or self._task.done():  # ``_start``, inline: this runs on every route emit
            self._start()
        return True

    def _start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        while self._queue:
            if self.linger and len(self._queue) < MAX_BATCH:  # before every batch, not only the first: a
                await asyncio.sleep(self.linger)  # quick commit would otherwise take what came in meanwhile, one row
            items, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
            waiting, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
            work = asyncio.ensure_future(self.transact(functools.partial(_apply, self.apply, items)))
            work.add_done_callback(_retrieved)
            try:
                await asyncio.wait_for(asyncio.shield(work), self.timeout)
            except Exception as exc:
                for done in filter(None, waiting):
                    if not done.done():
                        done.set_exception(exc)
                        done.exception()  # retrieved here too: a submitter that went away logs nothing
                _report(self.failed, [item for item, done in zip(items, waiting) if done is None], exc)
                continue
            for done in filter(None, waiting):  # in C: a batch of route emits has none
                if not done.done():
                    done.set_result(None)
            _report(self.committed, items)

    async def close(self) -> None:
        """Let the batch under way (and what is queued) finish."""
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None


def _report(callback: Callable[..., None], items: Sequence[Any], *more: Any) -> None:
    """``callback(items, *more)`` unless there are no items; one that raises is logged, and the batches
    after it are written all the same."""
    if not items:
        return
    try:
        callback(items, *more)
    except Exception:
        log.exception("the outbox writer's %s callback failed", getattr(callback, "__name__", "batch"))


def _retrieved(work: "asyncio.Future[None]") -> None:
    if not work.cancelled():
        work.exception()  # a batch that failed after its timeout: its submitters were failed already


def _apply(apply: Callable[[Connection, Sequence[T]], None], items: Sequence[T], conn: Connection) -> None:
    apply(conn, items)


def _insert_messages(conn: Connection, items: Sequence[Outgoing], first_delay: float) -> None:
    """The batch's messages, fanned out as they are written (``_fan_out``). Its rows are plain tuples, so
    SQLAlchemy's per-row parameter processing (half the cost of a small insert) is skipped; on SQLite
    multi-row INSERTs (``_pieces``): ``executemany`` steps once per row, and each step gives up the GIL
    and waits to get it back from a busy event loop (up to the 5 ms switch interval), so a batch of
    hundreds took seconds while the loop was saturated and the queue of emits grew."""
    if conn.dialect.name == "sqlite":  # one parameter set each: a tuple (a list is taken for many)
        flat = values(items)
        for sql, start, end in _message_statements(len(items)):
            conn.exec_driver_sql(sql, tuple(flat[start:end]))
    else:
        conn.exec_driver_sql(_insert_sql(conn.dialect), rows(items))
    made = _fan_out(items, conn.execute(subscribed({item.tenant for item in items})).all(), first_delay)
    if made:
        conn.execute(deliveries.insert(), made)


def _insert_sqlite(dbapi: Any, items: Sequence[Outgoing], first_delay: float) -> None:
    """``_insert_messages`` on the bare ``sqlite3`` connection of ``Store.transact_driver``."""
    cursor = dbapi.cursor()
    flat = values(items)
    for sql, start, end in _message_statements(len(items)):
        cursor.execute(sql, flat[start:end])
    tenants = sorted({item.tenant for item in items})
    endpoint_rows = cursor.execute(_SUBSCRIBED_SQL.format(", ".join("?" * len(tenants))), tenants).fetchall()
    made = [tuple(row.get(c) for c in _DELIVERY_COLUMNS) for row in _fan_out(items, endpoint_rows, first_delay)]
    for start, size in _pieces(len(made), _DELIVERIES_PER_STATEMENT):
        cursor.execute(*_sqlite_statement(deliveries, made[start : start + size]))


_DELIVERY_COLUMNS = tuple(c.name for c in deliveries.columns)
_DELIVERIES_PER_STATEMENT = 1024  # 10 columns each: far below SQLite's 32,766 parameters per statement
_MESSAGES_PER_STATEMENT = 1 << (MAX_BATCH.bit_length() - 1)  # the largest power of two a batch can hold
# ``outbox.subscribed`` in the ``sqlite3`` driver's own terms (its IN list has one ``?`` per tenant)
_SUBSCRIBED_SQL = f"SELECT id, tenant, events FROM {endpoints.name} WHERE enabled = 1 AND tenant IN ({{}})"


def _pieces(count: int, largest: int) -> list[tuple[int, int]]:
    """``(start, size)`` of the statements ``count`` rows are written in: sizes that are powers of two,
    largest first (at most ``largest``, itself one), so that the few INSERTs the writer ever sends stay
    in the driver's statement cache. A multi-row INSERT of a size not seen before is compiled again, and
    SQLite took longer to compile one than to run it: in a gateway under wrk, whose batches are each of
    another size, compiling cost about 7,000 instructions an emit (callgrind: ``sqlite3Parser`` and its
    kin, their allocations), where the three or four statements of a batch of 100-200 cost about 200
    more than one."""
    made: list[tuple[int, int]] = []
    start, size = 0, largest
    while start < count:
        while size > count - start:
            size //= 2
        made.append((start, size))
        start += size
    return made


@functools.lru_cache(maxsize=MAX_BATCH)
def _message_statements(count: int) -> tuple[tuple[str, int, int], ...]:
    """The INSERTs of ``count`` messages (``_pieces``): each with the slice of ``payload.values`` it binds."""
    width = len(VARYING)
    pieces = _pieces(count, _MESSAGES_PER_STATEMENT)
    return tuple((_sqlite_messages(size), start * width, (start + size) * width) for start, size in pieces)


def _fan_out(items: Sequence[Outgoing], endpoint_rows: Sequence[Any], first_delay: float) -> list[dict[str, Any]]:
    """The batch's deliveries (``outbox.deliveries_for``: the endpoints subscribed when it is written),
    counted on each item for ``Outbound._written``."""
    if not endpoint_rows:  # the common case, tenants with no endpoint: nothing per item
        return []
    made = deliveries_for(((i.id, i.tenant, i.event_type) for i in items), endpoint_rows, time.time() + first_delay)
    by_id = {item.id: item for item in items}
    for row in made:
        by_id[row["message_id"]].deliveries += 1
    return made


@functools.cache
def _insert_sql(dialect: Any) -> str:
    """The messages INSERT in the dialect's own parameter style, compiled once per dialect."""
    columns = [c.name for c in messages.columns]
    insert = messages.insert().values({c: sa.bindparam(c) for c in columns})
    return str(insert.compile(dialect=dialect, compile_kwargs={"render_postcompile": True}))


@functools.lru_cache(maxsize=16)
def _sqlite_messages(count: int) -> str:
    """The INSERT of ``count`` messages written by a route (``payload.values``): ``VARYING`` as parameters,
    ``fanned`` true and ``enveloped`` false as literals (two parameters a row fewer to bind)."""
    row = "(" + ", ".join("?" * len(VARYING)) + ", 1, 0)"
    columns = ", ".join((*VARYING, "fanned", "enveloped"))  # ``tables.messages``' order (a test holds them equal)
    return f"INSERT INTO {messages.name} ({columns}) VALUES " + ", ".join([row] * count)


@functools.lru_cache(maxsize=32)
def _sqlite_insert(table: sa.Table, count: int) -> str:
    """``INSERT ... VALUES (?, ...), (?, ...)`` for ``count`` rows (SQLite's qmark style; ``MAX_BATCH``
    messages of 7 columns stay far below its 32,766 parameters)."""
    columns = [c.name for c in table.columns]
    row = "(" + ", ".join("?" * len(columns)) + ")"
    return f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES " + ", ".join([row] * count)


def _sqlite_statement(table: sa.Table, made: Sequence[tuple[Any, ...]]) -> tuple[str, list[Any]]:
    """The multi-row INSERT of ``made`` (rows in ``table``'s column order) and its parameters, row after row."""
    parameters: list[Any] = []
    for row in made:
        parameters += row
    return _sqlite_insert(table, len(made)), parameters


def outbox_writer(
    store: Store,
    committed: Callable[[Sequence[Outgoing]], None],
    failed: Callable[[Sequence[Outgoing], Exception], None],
    timeout: float,
    first_delay: float,
    linger: float,
) -> GroupCommit[Outgoing]:
    """Batches emits (``payload.Outgoing``) into one transaction: their rows (made there, ``payload.rows``)
    and their deliveries, the first attempt due ``first_delay`` seconds on; on a SQLite file, through its
    driver connection (``Store.transact_driver``)."""
    if store.sqlite_path is not None:
        apply = functools.partial(_insert_sqlite, first_delay=first_delay)
        return GroupCommit(store.transact_driver, apply, committed, timeout, linger, failed)
    apply = functools.partial(_insert_messages, first_delay=first_delay)
    return GroupCommit(store.transact, apply, committed, timeout, linger, failed)


def engine_transact(engine: AsyncEngine) -> Transact:
    """``transact`` over a bare engine (where no ``Store`` is at hand)."""

    async def transact(work: Callable[[Connection], Any]) -> Any:
        async with engine.begin() as conn:
            return await conn.run_sync(work)

    return transact
