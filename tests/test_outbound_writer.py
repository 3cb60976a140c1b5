"""outbound.writer.GroupCommit: awaited and fire-and-forget items share batches; the queue is bounded."""

from __future__ import annotations

import asyncio
import sqlite3
import time

import orjson
import pytest

from gateway_engine.outbound.writer import GroupCommit
from tests.outbound_support import endpoint_row


class Store:
    """A ``transact`` that records each batch, and fails while ``down``."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.down = False

    async def transact(self, work):
        await asyncio.sleep(0.01)
        if self.down:
            raise ConnectionError("the store is down")
        return work(self)


async def test_enqueued_and_submitted_items_commit_together_and_are_reported():
    store = Store()
    committed: list[list[int]] = []
    writer = GroupCommit(store.transact, lambda conn, items: conn.batches.append(list(items)), committed.append)
    assert all(writer.enqueue(n) for n in range(3))
    await writer.submit(3)
    await writer.close()
    assert store.batches == [[0, 1, 2, 3]] and committed == [[0, 1, 2, 3]]


async def test_a_failed_batch_reaches_failed_for_enqueued_items_and_raises_for_submitters():
    store = Store()
    store.down = True
    failures: list[tuple[list[int], str]] = []
    writer = GroupCommit(
        store.transact,
        lambda conn, items: conn.batches.append(list(items)),
        failed=lambda items, exc: failures.append((list(items), type(exc).__name__)),
    )
    writer.enqueue(1)
    with pytest.raises(ConnectionError):
        await writer.submit(2)
    await writer.close()
    assert failures == [([1], "ConnectionError")]  # the submitter counts its own
    store.down = False
    assert writer.enqueue(3)
    await writer.close()
    assert store.batches == [[3]]  # the next batch tries again


async def test_the_queue_refuses_past_max_queued_and_takes_items_again_once_written():
    store = Store()
    writer = GroupCommit(store.transact, lambda conn, items: conn.batches.append(list(items)), max_queued=5)
    assert [writer.enqueue(n) for n in range(7)] == [True] * 5 + [False] * 2
    await writer.close()
    assert store.batches == [[0, 1, 2, 3, 4]] and writer.enqueue(9)
    await writer.close()


async def test_every_batch_lingers_not_only_the_first():
    """An item that arrives just after a batch was taken waits for the next one's linger: a store that
    commits quickly must not turn a steady stream into one transaction per row."""
    batches: list[list[int]] = []
    loop = asyncio.get_running_loop()
    linger = 0.05

    async def transact(work):
        result = work(None)
        if batches == [[0]]:
            writer.enqueue(1)  # arrives while the first transaction is under way
        return result

    def committed(items):
        if items == [0]:  # 2 arrives a moment after that commit, well within the linger
            loop.call_later(linger / 10, writer.enqueue, 2)

    writer = GroupCommit(transact, lambda conn, items: batches.append(list(items)), committed, linger=linger)
    writer.enqueue(0)
    await writer.close()
    assert batches == [[0], [1, 2]]


async def test_a_raising_callback_never_stops_the_batches_after_it():
    store = Store()

    def committed(items):
        raise RuntimeError("a broken subscriber")

    writer = GroupCommit(store.transact, lambda conn, items: conn.batches.append(list(items)), committed)
    writer.enqueue(1)
    await writer.close()
    await writer.submit(2)
    assert store.batches == [[1], [2]]


async def test_a_route_emit_past_the_queue_bound_is_counted_as_backlog_and_logged(tmp_path, caplog):
    from gateway_engine import load_config
    from gateway_engine.outbound import metrics
    from gateway_engine.outbound.service import OUTBOUND
    from tests.outbound_support import KEYS, gateway_yaml, write_outbound_config

    root = write_outbound_config(tmp_path / "cfg", gateway_yaml(f"sqlite:///{tmp_path / 'o.db'}"), "http://127.0.0.1:9")
    config = load_config(root, KEYS)
    service = config.state(OUTBOUND)
    backlog = metrics.EMITTED.labels("backlog")
    await config.startup(workers=False)
    try:
        service._writer_for(await service.store()).max_queued = 2
        before = backlog._value.get()
        for n in range(5):
            service.emit_soon("acme", "order.created", {"n": n})
        assert backlog._value.get() - before == 3
    finally:
        await config.shutdown()  # drains what was queued
    assert sum("events are waiting for the outbox already" in r.getMessage() for r in caplog.records) == 1
    with sqlite3.connect(tmp_path / "o.db") as db:
        assert db.execute("SELECT count(*) FROM outbound_messages").fetchone() == (2,)


async def test_a_written_route_emit_reaches_other_subscribers_of_its_type_once_committed(tmp_path):
    """The outbox publishes what it wrote on the event seam (realtime channels listen there) only where
    something besides itself subscribes, and only after the commit."""
    from gateway_engine import load_config
    from gateway_engine.foundation import events
    from gateway_engine.outbound.service import OUTBOUND, WRITTEN_HEADER
    from tests.outbound_support import KEYS, gateway_yaml, write_outbound_config

    root = write_outbound_config(tmp_path / "cfg", gateway_yaml(f"sqlite:///{tmp_path / 'o.db'}"), "http://127.0.0.1:9")
    config = load_config(root, KEYS)
    service = config.state(OUTBOUND)
    got: list[events.Message] = []
    await config.startup(workers=False)
    try:
        assert not events.listened("order.created", besides=service._from_seam)
        writer = service._writer_for(await service.store())
        service.emit_soon("acme", "order.created", {"n": 1})  # nobody else listens: written, not published
        await writer.close()
        stop = events.subscribe("order.created", got.append)
        try:
            service.emit_soon("acme", "order.created", {"n": 2})
            assert got == []  # not before its batch committed
            await writer.close()
        finally:
            stop()
    finally:
        await config.shutdown()
    with sqlite3.connect(tmp_path / "o.db") as db:
        ids = {row[0] for row in db.execute("SELECT id FROM outbound_messages")}
    assert [(m.value, m.headers["tenant"]) for m in got] == [({"n": 2}, "acme")]
    assert len(ids) == 2 and got[0].headers[WRITTEN_HEADER] in ids


@pytest.fixture(params=["sqlite", "postgresql"])
def outbox_url(request, tmp_path) -> str:
    """A SQLite file (the writer's ``sqlite3`` path) or a real PostgreSQL (its SQLAlchemy path)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'o.db'}"
    from gateway_engine.store import async_url

    return async_url(request.getfixturevalue("postgres_url"))


async def test_a_routes_emits_are_fanned_out_in_the_transaction_that_writes_them(tmp_path, outbox_url):
    """Each written emit gets one pending delivery per enabled endpoint of its own tenant whose patterns
    match, in its batch's own transaction (no dispatcher runs here), and is written fanned out; another
    tenant's endpoints, a disabled one and a non-matching pattern get nothing."""
    import sqlalchemy as sa

    from gateway_engine import load_config
    from gateway_engine.outbound.service import OUTBOUND
    from gateway_engine.outbound.tables import deliveries, endpoints, messages
    from tests.outbound_support import KEYS, gateway_yaml, write_outbound_config

    yaml = gateway_yaml(outbox_url, schedule="[2s, 5s]", extra="  write_linger: 30ms\n")
    root = write_outbound_config(tmp_path / "cfg", yaml, "http://x")
    config = load_config(root, KEYS)
    service = config.state(OUTBOUND)
    await config.startup(workers=False)
    try:
        engine = (await service.store()).engine
        now = time.time()
        subscribed = [  # id, tenant, events, enabled
            ("ep_orders", "acme", ["order.*"], True),
            ("ep_cancelled", "acme", ["order.cancelled"], True),
            ("ep_off", "acme", ["*"], False),
            ("ep_globex", "globex", ["*"], True),
        ]
        async with engine.begin() as conn:
            for endpoint_id, tenant, patterns, enabled in subscribed:
                await conn.execute(
                    endpoints.insert().values(
                        endpoint_row(endpoint_id, tenant, patterns=tuple(patterns), enabled=enabled)
                    )
                )
        writer = service._writer_for(await service.store())
        assert writer.linger == 0.03  # outbound_webhooks.write_linger
        for tenant in ("acme", "acme", "globex", "initech"):
            service.emit_soon(tenant, "order.created", {"tenant": tenant})
        await writer.close()  # one batch
        async with engine.connect() as conn:
            written = (await conn.execute(sa.select(messages.c.id, messages.c.tenant, messages.c.fanned))).all()
            made = (await conn.execute(sa.select(deliveries))).mappings().all()
    finally:
        await config.shutdown()
    tenant_of = {row.id: row.tenant for row in written}
    assert len(written) == 4 and all(row.fanned for row in written)
    assert sorted((tenant_of[d["message_id"]], d["endpoint_id"]) for d in made) == [
        ("acme", "ep_orders"),
        ("acme", "ep_orders"),
        ("globex", "ep_globex"),
    ]
    assert all(d["tenant"] == tenant_of[d["message_id"]] for d in made)
    assert all((d["status"], d["attempts"], d["lease_owner"]) == ("pending", 0, None) for d in made)
    assert all(now + 2 <= d["next_at"] <= time.time() + 2 for d in made)  # the schedule's first delay
    assert len({d["id"] for d in made}) == 3


def test_a_sqlalchemy_sqlite_connection_writes_a_batch_as_the_driver_does():
    """On SQLite with no file (in memory: ``Store.transact``, not ``transact_driver``) a batch is the same
    multi-row INSERT, its rows fanned out and composed when sent (``enveloped`` false), with a delivery
    per subscribed endpoint. Its parameters are one set (a list would be taken for many, and refused)."""
    import sqlalchemy as sa

    from gateway_engine.outbound.payload import outgoing
    from gateway_engine.outbound.tables import deliveries, endpoints, messages, metadata
    from gateway_engine.outbound.writer import _insert_messages

    engine = sa.create_engine("sqlite://")
    metadata.create_all(engine)
    items = [outgoing(tenant, "order.created", {"n": n}, limit=None) for n, tenant in enumerate(["acme"] * 3 + ["x"])]
    with engine.begin() as conn:
        conn.execute(endpoints.insert().values(endpoint_row("ep_1", "acme")))
        _insert_messages(conn, items, 5.0)
    with engine.connect() as conn:
        written = conn.execute(sa.select(messages).order_by(messages.c.id)).mappings().all()
        made = conn.execute(sa.select(deliveries.c.message_id, deliveries.c.endpoint_id)).all()
    assert [row["id"] for row in written] == sorted(item.id for item in items)
    for row, item in zip(written, sorted(items, key=lambda i: i.id), strict=True):
        assert (row["tenant"], row["event_type"], row["created_at"]) == (item.tenant, "order.created", item.at)
        assert (orjson.loads(row["payload"]), row["fanned"], row["enveloped"]) == (item.data, True, False)
    assert sorted(made) == sorted((item.id, "ep_1") for item in items if item.tenant == "acme")
    assert [item.deliveries for item in items] == [1, 1, 1, 0]


class RecordingCursor:
    """A real ``sqlite3`` cursor that keeps the text of every statement it is given (not expanded)."""

    def __init__(self, cursor: sqlite3.Cursor, seen: list[str]) -> None:
        self.cursor, self.seen = cursor, seen

    def execute(self, sql, parameters=()):
        self.seen.append(sql)
        return self.cursor.execute(sql, parameters)


def test_batches_of_every_size_are_written_in_statements_of_few_sizes_that_the_driver_keeps_compiled(tmp_path):
    """Batches of 1 to ``MAX_BATCH`` emits, each with a delivery, are written whole, every row once, in
    INSERTs of powers of two rows: nine texts for the messages in all, so the ``sqlite3`` statement
    cache (128) holds each. A text of a size not seen before is compiled again, which cost a busy
    gateway more than running it (``writer._pieces``)."""
    import sqlalchemy as sa

    from gateway_engine.outbound.payload import outgoing
    from gateway_engine.outbound.tables import endpoints, metadata
    from gateway_engine.outbound.writer import MAX_BATCH, _insert_sqlite

    path = tmp_path / "outbox.db"
    engine = sa.create_engine(f"sqlite:///{path}")
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(endpoints.insert().values(endpoint_row("ep_1", "acme")))
    connection = sqlite3.connect(path)
    seen: list[str] = []
    dbapi = type("Driver", (), {"cursor": lambda _self: RecordingCursor(connection.cursor(), seen)})()
    sizes = [*range(1, MAX_BATCH, 13), MAX_BATCH]
    # what a client can put in templated data: SQL, quotes, a NUL, text that looks like a parameter
    hostile = ["'); DROP TABLE outbound_messages; --", '"?", (?, ?)', "\x00", "é" * 300]
    expected: dict[str, tuple] = {}
    for size in sizes:
        items = [
            outgoing("acme", "order.created", {"n": n, "text": hostile[n % len(hostile)]}, limit=None)
            for n in range(size)
        ]
        _insert_sqlite(dbapi, items, 5.0)
        connection.commit()
        expected |= {item.id: ("acme", "order.created", item.data_json, item.at) for item in items}
        assert [item.deliveries for item in items] == [1] * size
    rows = connection.execute("SELECT id, tenant, event_type, payload, created_at FROM outbound_messages").fetchall()
    made = connection.execute("SELECT message_id, endpoint_id FROM outbound_deliveries").fetchall()
    written = list(expected)
    assert len(expected) == sum(sizes)  # every id new
    assert {row[0]: tuple(row[1:]) for row in rows} == expected and len(rows) == sum(sizes)  # each row whole, once
    assert sorted(made) == sorted((message_id, "ep_1") for message_id in written)
    inserts = {sql for sql in seen if sql.startswith("INSERT INTO outbound_messages")}
    assert len(inserts) <= 9  # 1, 2, 4, ... 256 rows
    assert {sql.count("(?") for sql in inserts} <= {2**k for k in range(9)}
    assert len({sql for sql in seen if sql.startswith("INSERT INTO outbound_deliveries")}) <= 9


def test_pieces_cover_every_row_once_in_powers_of_two_largest_first():
    from gateway_engine.outbound.writer import _pieces

    for count in range(0, 2100):
        pieces = _pieces(count, 1024)
        assert [start for start, _ in pieces] == [sum(size for _, size in pieces[:i]) for i in range(len(pieces))]
        assert sum(size for _, size in pieces) == count
        sizes = [size for _, size in pieces]
        assert sizes == sorted(sizes, reverse=True)
        assert all(0 < size <= 1024 and size & (size - 1) == 0 for size in sizes)  # powers of two
        assert len(pieces) <= count // 1024 + 10


def test_values_are_the_varying_columns_of_each_row_in_order_and_rows_the_whole_rows():
    """``values`` is one flat parameter list, five a row in ``VARYING``'s order; ``rows`` adds the two
    literals; every id is new, sorts by its emit's time and is the id of the item."""
    import re

    from gateway_engine.outbound.payload import VARYING, outgoing, rows, values
    from gateway_engine.outbound.tables import messages

    assert (*VARYING, "fanned", "enveloped") == tuple(c.name for c in messages.columns)
    items = [outgoing("acme", "order.created", {"n": n}, limit=None) for n in range(3)]
    for n, item in enumerate(items):
        item.at = 1_796_278_509.000_001 + n
    flat = values(items)
    assert len(flat) == 5 * len(items)
    for n, item in enumerate(items):
        message_id, tenant, event_type, payload, created_at = flat[5 * n : 5 * n + 5]
        assert (message_id, tenant, event_type, payload, created_at) == (
            item.id,
            "acme",
            "order.created",
            f'{{"n":{n}}}',
            item.at,
        )
        assert re.fullmatch(r"msg_[0-9a-f]{30}", message_id)
        assert int(message_id[4:18], 16) == round(item.at * 1_000_000)
    again = rows(items)
    assert [row[1:] for row in again] == [(*flat[5 * n + 1 : 5 * n + 5], True, False) for n in range(3)]
    assert not {row[0] for row in again} & set(flat[::5])  # each call gives new ids


async def test_the_dispatchers_fan_out_reads_only_the_partial_index_of_messages_not_fanned_out(outbox_url):
    """Migrated to ``outbound_0002``, the outbox's index holds only the messages not fanned out yet, and
    the dispatcher's query for them uses it (on PostgreSQL: can use it, a tiny table being scanned)."""
    import sqlalchemy as sa

    from gateway_engine.outbound.outbox import unfanned
    from gateway_engine.store import StoreSettings, acquire_store, async_url, release_store
    from gateway_engine.store.migrations import current_revisions, ensure_migrated

    store = acquire_store(StoreSettings(async_url(outbox_url)))
    try:
        await ensure_migrated(store)
        assert "outbound_0003" in await current_revisions(store)  # the head, past the index's outbound_0002
        async with store.engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                await conn.exec_driver_sql("SET enable_seqscan = off")
            query = unfanned(10).compile(conn.engine, compile_kwargs={"literal_binds": True})
            prefix = "EXPLAIN QUERY PLAN " if conn.dialect.name == "sqlite" else "EXPLAIN "
            plan = " ".join(str(row[-1]) for row in await conn.exec_driver_sql(prefix + str(query)))
            indexes = await conn.run_sync(lambda sync: sa.inspect(sync).get_indexes("outbound_messages"))
    finally:
        await release_store(store)
    assert "outbound_messages_unfanned" in plan
    assert [index["name"] for index in indexes] == ["outbound_messages_unfanned"]


async def test_waiting_sees_a_message_not_fanned_out_or_a_due_attempt_whose_lease_is_free_and_nothing_else(
    outbox_url,
):
    """The idle dispatcher's one read (``outbox.waiting``): a round runs on what it says, so anything a
    round would take must make it true, and what a round would leave must not."""
    import sqlalchemy as sa

    from gateway_engine.outbound.outbox import delivery_row, waiting
    from gateway_engine.outbound.payload import message_row
    from gateway_engine.outbound.tables import deliveries, messages
    from gateway_engine.store import StoreSettings, acquire_store, async_url, release_store
    from gateway_engine.store.migrations import ensure_migrated

    store = acquire_store(StoreSettings(async_url(outbox_url)))
    try:
        await ensure_migrated(store)
        async with store.engine.begin() as conn:
            for table in (deliveries, messages):
                await conn.execute(table.delete())
        assert not await waiting(store.transact)
        now = time.time()
        left = [  # what a round would not take: sent, due later, leased to a live owner
            {**delivery_row("msg_a", "ep_1", "acme", now - 1), "status": "succeeded"},
            delivery_row("msg_a", "ep_1", "acme", now + 60),
            {**delivery_row("msg_a", "ep_1", "acme", now - 1), "lease_owner": "disp_x", "lease_until": now + 60},
        ]
        async with store.engine.begin() as conn:
            await conn.execute(messages.insert().values(message_row("acme", "order.created", {}, fanned=True)))
            for row in left:  # one by one: an executemany takes its columns from the first row alone
                await conn.execute(deliveries.insert().values(row))
        assert not await waiting(store.transact)
        for row in (
            delivery_row("msg_a", "ep_1", "acme", now - 1),  # due
            {**delivery_row("msg_a", "ep_1", "acme", now - 1), "lease_owner": "disp_x", "lease_until": now - 1},
        ):
            async with store.engine.begin() as conn:
                await conn.execute(deliveries.insert().values(row))
            assert await waiting(store.transact)
            async with store.engine.begin() as conn:
                await conn.execute(deliveries.delete().where(deliveries.c.id == row["id"]))
            assert not await waiting(store.transact)
        async with store.engine.begin() as conn:  # a keyed write, fanned out by the dispatcher
            await conn.execute(messages.insert().values(message_row("acme", "order.created", {})))
        assert await waiting(store.transact)
        async with store.engine.begin() as conn:
            await conn.execute(sa.update(messages).values(fanned=True))
        assert not await waiting(store.transact)
    finally:
        await release_store(store)


async def test_the_dispatcher_is_woken_by_a_batch_that_made_deliveries_not_by_one_that_made_none(tmp_path):
    """A batch whose tenants have no endpoint gives the dispatcher nothing to do: waking it would cost it
    two transactions per batch for nothing (its poll still finds retries). A keyed write, which the
    dispatcher fans out itself, wakes it."""
    import types

    from gateway_engine import load_config
    from gateway_engine.outbound.service import OUTBOUND
    from gateway_engine.outbound.tables import endpoints
    from tests.outbound_support import KEYS, gateway_yaml, write_outbound_config

    root = write_outbound_config(tmp_path / "cfg", gateway_yaml(f"sqlite:///{tmp_path / 'o.db'}"), "http://x")
    config = load_config(root, KEYS)
    service = config.state(OUTBOUND)
    await config.startup(workers=False)
    wakes: list[str] = []
    try:
        store = await service.store()
        async with store.engine.begin() as conn:
            await conn.execute(endpoints.insert().values(endpoint_row("ep_acme", "acme")))
        service.dispatcher = types.SimpleNamespace(wake=lambda: wakes.append("woken"))
        await service.emit("initech", "order.created", {"n": 1})  # nobody subscribed: no delivery
        assert wakes == []
        await service.emit("acme", "order.created", {"n": 2})
        assert wakes == ["woken"]
        await service.write("initech", "order.created", {"n": 3}, key="source:evt_1")
        assert wakes == ["woken", "woken"]
    finally:
        service.dispatcher = None
        await config.shutdown()


async def test_a_body_is_composed_when_sent_and_a_body_written_before_outbound_0003_is_sent_as_it_is(
    outbox_url, tmp_path
):
    """A route's emit keeps only its data's JSON (``enveloped`` false) and the sender composes the body:
    the bytes ``orjson`` writes for the whole body. A message written whole before the migration
    (``outbound_0002``, no ``enveloped`` column) reads as enveloped and is sent as stored."""
    import shutil

    import sqlalchemy as sa

    from gateway_engine.outbound.outbox import claim, delivery_row
    from gateway_engine.outbound.payload import body_of, outgoing, rows
    from gateway_engine.outbound.tables import deliveries, endpoints, messages
    from gateway_engine.outbound.writer import engine_transact
    from gateway_engine.store import StoreSettings, acquire_store, async_url, release_store
    from gateway_engine.store.migrations import current_revisions, migrate, migration_branches

    branches = migration_branches()
    before = tmp_path / "outbound-before-0003"
    shutil.copytree(branches["outbound"], before, ignore=shutil.ignore_patterns("outbound_0003*", "__pycache__"))
    store = acquire_store(StoreSettings(async_url(outbox_url)))
    old_body = body_of("msg_old", "order.created", {"n": "old"}, 1_796_278_509.123)
    try:
        await migrate(store, {**branches, "outbound": before})
        assert "outbound_0002" in await current_revisions(store)
        async with store.engine.begin() as conn:
            columns = {c["name"] for c in await conn.run_sync(lambda s: sa.inspect(s).get_columns(messages.name))}
            assert "enveloped" not in columns
            await conn.exec_driver_sql(
                f"INSERT INTO {messages.name} (id, tenant, event_type, payload, created_at, fanned) "
                f"VALUES ('msg_old', 'acme', 'order.created', '{old_body.decode()}', 1796278509.123, true)"
            )
        await migrate(store)
        assert "outbound_0003" in await current_revisions(store)
        item = outgoing("acme", "order.created", {"n": "new", "text": "é\u2028"}, limit=None)
        [row] = rows([item])
        assert row[3] == orjson.dumps(item.data).decode() and row[6] is False  # the data only
        now = time.time()
        async with store.engine.begin() as conn:
            await conn.execute(messages.insert().values(dict(zip([c.name for c in messages.columns], row))))
            await conn.execute(endpoints.insert().values(endpoint_row("ep_1", "acme", url="http://127.0.0.1:9/hook")))
            for message_id in ("msg_old", item.id):
                await conn.execute(deliveries.insert().values(delivery_row(message_id, "ep_1", "acme", now - 1)))
        taken = await claim(engine_transact(store.engine), "disp_test", 30.0, 10)
    finally:
        await release_store(store)
    bodies = {t.message_id: t.body for t in taken}
    assert bodies["msg_old"] == old_body
    assert bodies[item.id] == body_of(item.id, "order.created", item.data, item.at)
    composed = orjson.loads(bodies[item.id])
    assert composed["id"] == item.id and composed["data"] == {"n": "new", "text": "é\u2028"}
