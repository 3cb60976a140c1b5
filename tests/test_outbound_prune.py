"""upkeep.prune: the retention period's deletes are bounded, by primary key, a chunk per transaction,
on SQLite and a real PostgreSQL; what is still waited on is kept."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

from gateway_engine.outbound import dispatcher as dispatcher_module
from gateway_engine.outbound.dispatcher import Dispatcher
from gateway_engine.outbound.settings import DeliverySettings
from gateway_engine.outbound.tables import attempts, deliveries, messages
from gateway_engine.outbound.upkeep import prune
from gateway_engine.store import async_url
from gateway_engine.store.database import Store
from gateway_engine.store.migrations import migrate
from gateway_engine.store.settings import StoreSettings

OLD, NOW = 1_000.0, time.time()
RETENTION = 86_400.0


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return async_url(f"sqlite:///{tmp_path / 'o.db'}")
    return async_url(request.getfixturevalue("postgres_url"))


def _message(message_id: str, at: float, fanned: bool = True) -> dict:
    return {
        "id": message_id,
        "tenant": "acme",
        "event_type": "order.created",
        "payload": "{}",
        "created_at": at,
        "fanned": fanned,
        "enveloped": False,
    }


def _delivery(delivery_id: str, message_id: str, at: float, status: str) -> dict:
    return {
        "id": delivery_id,
        "message_id": message_id,
        "endpoint_id": "ep_1",
        "tenant": "acme",
        "status": status,
        "attempts": 1,
        "next_at": at,
        "created_at": at,
    }


def _attempt(delivery_id: str, message_id: str, at: float) -> dict:
    return {
        "delivery_id": delivery_id,
        "message_id": message_id,
        "endpoint_id": "ep_1",
        "tenant": "acme",
        "event_type": "order.created",
        "attempt": 1,
        "at": at,
        "outcome": "succeeded",
        "status": 200,
        "latency_ms": 1.0,
        "response": "",
    }


async def _filled(url: str) -> Store:
    """Seven old delivered messages, one old message still pending, one old not fanned out, two new ones."""
    store = Store(StoreSettings(url))
    await migrate(store)
    rows: dict[sa.Table, list[dict]] = {messages: [], deliveries: [], attempts: []}
    for n in range(7):
        rows[messages].append(_message(f"msg_old{n}", OLD + n))
        rows[deliveries].append(_delivery(f"dlv_old{n}", f"msg_old{n}", OLD + n, "succeeded"))
        rows[attempts].append(_attempt(f"dlv_old{n}", f"msg_old{n}", OLD + n))
    rows[messages] += [_message("msg_waited", OLD), _message("msg_unfanned", OLD, fanned=False)]
    rows[deliveries].append(_delivery("dlv_waited", "msg_waited", OLD, "pending"))
    for n in range(2):
        rows[messages].append(_message(f"msg_new{n}", NOW))
        rows[deliveries].append(_delivery(f"dlv_new{n}", f"msg_new{n}", NOW, "succeeded"))
        rows[attempts].append(_attempt(f"dlv_new{n}", f"msg_new{n}", NOW))
    async with store.engine.begin() as conn:
        for table, made in rows.items():
            await conn.execute(table.insert(), made)
    return store


async def _left(store: Store) -> dict[str, set]:
    async with store.engine.connect() as conn:
        return {
            "messages": set((await conn.execute(sa.select(messages.c.id))).scalars()),
            "deliveries": set((await conn.execute(sa.select(deliveries.c.id))).scalars()),
            "attempts": set((await conn.execute(sa.select(attempts.c.delivery_id))).scalars()),
        }


KEPT = {
    "messages": {"msg_waited", "msg_unfanned", "msg_new0", "msg_new1"},
    "deliveries": {"dlv_waited", "dlv_new0", "dlv_new1"},
    "attempts": {"dlv_new0", "dlv_new1"},
}


async def test_old_rows_are_deleted_by_key_a_chunk_per_transaction_and_what_is_waited_on_stays(store_url):
    store = await _filled(store_url)
    deletes: list[tuple[str, int]] = []

    def seen(conn, cursor, statement, parameters, context, executemany) -> None:
        if statement.lstrip().upper().startswith("DELETE"):
            deletes.append((statement, cursor.rowcount))

    sa.event.listen(store.engine.sync_engine, "after_cursor_execute", seen)
    try:
        calls = 1
        while await prune(store.engine, NOW - RETENTION, chunk=3, chunks=2):  # 4 deletes of ≤ 3: 2 calls and a last
            calls += 1
        assert await _left(store) == KEPT
    finally:
        await store.close()
    # 7 attempts (3, 3, 1), 7 deliveries (3, 3, 1), 7 messages (3, 3, 1): nine deletes, at most two a call
    assert calls == 5
    assert [count for _, count in deletes] == [3, 3, 1] * 3
    assert all(" IN (" in statement.upper() for statement, _ in deletes)  # by primary key, never by a range scan


async def test_nothing_old_deletes_nothing(store_url):
    store = await _filled(store_url)
    try:
        assert await prune(store.engine, OLD - 1, chunk=3) is False
        left = await _left(store)
    finally:
        await store.close()
    assert len(left["messages"]) == 11 and len(left["deliveries"]) == 10 and len(left["attempts"]) == 9


async def test_the_dispatcher_goes_on_pruning_in_its_next_round_while_old_rows_are_left(tmp_path, monkeypatch):
    """A prune that stopped at its bound is taken up by the next round, not PRUNE_EVERY later; once it is
    through, the next one waits PRUNE_EVERY."""
    store = Store(StoreSettings(async_url(f"sqlite:///{tmp_path / 'o.db'}")))
    await migrate(store)
    left = [True, True, False]  # what each prune reports: rows past the retention are left
    calls: list[float] = []

    async def bounded_prune(engine, older_than: float) -> bool:
        calls.append(older_than)
        return left.pop(0)

    monkeypatch.setattr(dispatcher_module, "prune", bounded_prune)
    dispatcher = Dispatcher(store.engine, DeliverySettings(retention=RETENTION), _no_events, store.transact)
    try:
        for _ in range(5):
            await dispatcher.step()
    finally:
        await dispatcher.stop()
        await store.close()
    assert len(calls) == 3 and all(abs(at - (time.time() - RETENTION)) < 60 for at in calls)


async def _no_events(tenant: str, event_type: str, data: object) -> None:
    return None
