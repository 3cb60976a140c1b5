"""The store: settings, migrations with one branch per feature under a lock, and notifications, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from gateway_engine.store import (
    Store,
    StoreSettings,
    async_url,
    current_revisions,
    migrate,
    migration_branches,
    store_settings,
)

EXTRA_REVISION = """
import sqlalchemy as sa
from alembic import op

revision = "extra_0001"
down_revision = None
branch_labels = ("extra",)
depends_on = None


def upgrade():
    op.create_table("extra_things", sa.Column("id", sa.Integer, primary_key=True))


def downgrade():
    op.drop_table("extra_things")
"""


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'data' / 'gateway.db'}"
    return async_url(request.getfixturevalue("postgres_url"))


def test_store_settings_default_to_a_sqlite_file_next_to_the_config(tmp_path):
    settings = store_settings({}, str(tmp_path), {})
    assert settings.url == f"sqlite+aiosqlite:///{tmp_path / 'data' / 'gateway.db'}"
    assert settings.dialect == "sqlite" and settings.migrate_on_start


def test_store_settings_data_env_and_url(tmp_path):
    assert (
        store_settings({}, str(tmp_path), {"GATEWAY_DATA": "/srv/gw"}).url == "sqlite+aiosqlite:////srv/gw/gateway.db"
    )
    relative = store_settings({"store": {"data_dir": "state"}}, str(tmp_path), {})
    assert relative.url.endswith(f"{tmp_path}/state/gateway.db")
    pg = store_settings({"store": {"url": "postgresql://u:secret@db/gw", "migrate_on_start": False}}, ".", {})
    assert pg.url == "postgresql+asyncpg://u:secret@db/gw" and not pg.migrate_on_start
    assert "secret" not in repr(pg)


@pytest.mark.parametrize("url", ["mysql://x/y", "not a url"])
def test_store_settings_refuse_other_databases(url):
    with pytest.raises(ValueError, match="store.url"):
        async_url(url)


async def test_store_migrates_every_branch_once(store_url, tmp_path):
    extra = tmp_path / "extra_versions"
    extra.mkdir()
    (extra / "extra_0001.py").write_text(EXTRA_REVISION)
    branches = {**migration_branches(), "extra": extra}
    store = Store(StoreSettings(store_url))
    try:
        assert await current_revisions(store) == set()
        applied = await migrate(store, branches)
        assert set(applied) >= {"store_0001", "extra_0001"}
        assert await current_revisions(store) >= {"store_0001", "extra_0001"}
        assert await migrate(store, branches) == []  # already at every head
        async with store.engine.begin() as conn:
            await conn.execute(text("INSERT INTO extra_things (id) VALUES (1)"))
            assert (await conn.execute(text("SELECT count(*) FROM extra_things"))).scalar() == 1
    finally:
        await store.close()


def test_store_concurrent_migrate_commands_take_turns(store_url, tmp_path):
    """Several gateways starting at once: the lock makes every migration run once, and all succeed."""
    (tmp_path / "gateway.yaml").write_text(
        f"version: 1\nstore: {{url: '{store_url}'}}\n" if "postgresql" in store_url else "version: 1\n"
    )
    (tmp_path / "routes.d").mkdir()
    argv = [
        sys.executable,
        "-m",
        "gateway_engine",
        "migrate",
        "--config",
        str(tmp_path),
        "--data",
        str(tmp_path / "data"),
    ]
    runs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outputs = [r.communicate(timeout=120) for r in runs]
    assert [r.returncode for r in runs] == [0, 0, 0], outputs
    assert sum("applied" in out for out, _ in outputs) == 1
    assert sum("up to date" in out for out, _ in outputs) == 2


async def test_store_notifications_reach_this_and_other_processes(store_url):
    """Two handles on one database stand for two processes: each sees the other's notifications."""
    first, second = (
        Store(StoreSettings(store_url, poll_interval=0.05)),
        Store(StoreSettings(store_url, poll_interval=0.05)),
    )
    try:
        await migrate(first)
        got_first: list[str] = []
        got_second: list[str] = []
        await first.subscribe("things", got_first.append)
        await second.subscribe("things", got_second.append)
        await first.notify("things", "changed:1")
        await first.notify("other", "ignored")
        for _ in range(200):
            if got_first and got_second:
                break
            await asyncio.sleep(0.02)
        assert "changed:1" in got_first and "changed:1" in got_second
        assert "ignored" not in got_first + got_second
    finally:
        await first.close()
        await second.close()


async def test_transact_driver_commits_on_return_and_rolls_back_on_raise(tmp_path):
    from gateway_engine.store import acquire_store, release_store

    store = acquire_store(StoreSettings(f"sqlite+aiosqlite:///{tmp_path / 'd.db'}"))
    try:
        await store.transact(lambda conn: conn.exec_driver_sql("CREATE TABLE t (n INTEGER)"))
        await store.transact_driver(lambda db: db.cursor().execute("INSERT INTO t VALUES (1)"))

        def fails(db):
            db.cursor().execute("INSERT INTO t VALUES (2)")
            raise ValueError("the batch failed halfway")

        with pytest.raises(ValueError):
            await store.transact_driver(fails)
        rows = await store.transact(lambda conn: conn.exec_driver_sql("SELECT n FROM t").fetchall())
        assert [tuple(r) for r in rows] == [(1,)]  # the half-written batch left nothing, the pool is clean
    finally:
        await release_store(store)


async def test_transact_driver_keeps_its_connections_and_never_shares_one_between_transactions(tmp_path):
    import threading

    from gateway_engine.store import acquire_store, release_store

    store = acquire_store(StoreSettings(f"sqlite+aiosqlite:///{tmp_path / 'd.db'}"))
    try:
        await store.transact(lambda conn: conn.exec_driver_sql("CREATE TABLE t (n INTEGER)"))
        seen = []
        await store.transact_driver(lambda db: seen.append(db))
        await store.transact_driver(lambda db: seen.append(db))
        assert seen[0] is seen[1]  # one connection, opened once: no pool checkout per transaction
        assert seen[0].execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert seen[0].execute("PRAGMA busy_timeout").fetchone() == (30000,)

        def fails(db):
            db.execute("INSERT INTO t VALUES (2)")
            raise ValueError("the batch failed halfway")

        with pytest.raises(ValueError):
            await store.transact_driver(fails)
        reused = await store.transact_driver(lambda db: (db, db.in_transaction))
        assert reused == (seen[0], False)  # given back rolled back, and used again

        both_in = threading.Barrier(2, timeout=10)

        def held(db):
            both_in.wait()  # two transactions at once (a batch that outlived its timeout, and the next)
            return db

        first, second = await asyncio.gather(store.transact_driver(held), store.transact_driver(held))
        assert first is not second
        assert len(store._drivers) == 2
    finally:
        await release_store(store)
    assert not store._drivers
    with pytest.raises(sqlite3.ProgrammingError):  # closed with the store
        first.execute("SELECT 1")


async def test_a_driver_transaction_that_ends_after_the_store_closed_closes_its_connection(tmp_path):
    import threading

    from gateway_engine.store import acquire_store, release_store

    store = acquire_store(StoreSettings(f"sqlite+aiosqlite:///{tmp_path / 'd.db'}"))
    await store.transact(lambda conn: conn.exec_driver_sql("CREATE TABLE t (n INTEGER)"))
    closed, inside = threading.Event(), threading.Event()

    def slow(db):  # a batch that outlived its timeout: the store closes while it still runs
        inside.set()
        closed.wait(10)
        db.execute("INSERT INTO t VALUES (1)")
        return db

    running = asyncio.ensure_future(store.transact_driver(slow))
    await asyncio.to_thread(inside.wait, 10)
    await release_store(store)
    closed.set()
    connection = await running
    assert not store._drivers
    with pytest.raises(sqlite3.ProgrammingError):  # closed, not kept by a store nobody uses
        connection.execute("SELECT 1")
    with sqlite3.connect(tmp_path / "d.db") as db:
        assert db.execute("SELECT n FROM t").fetchall() == [(1,)]  # its transaction committed all the same


async def test_transact_driver_is_refused_for_a_store_that_is_not_a_sqlite_file():
    from gateway_engine.store import acquire_store, release_store

    store = acquire_store(StoreSettings("sqlite+aiosqlite:///:memory:"))
    try:
        with pytest.raises(RuntimeError, match="SQLite file"):
            await store.transact_driver(lambda db: None)
    finally:
        await release_store(store)


async def test_a_lazy_store_is_opened_once_however_many_callers_give_up_waiting(tmp_path, monkeypatch):
    """A migration slower than the callers' patience (an emit waits 5 s; a loaded machine migrates
    slower) must still finish: a caller that times out does not cancel it, and the next caller gets
    the store that one attempt opened. Before, each timeout cut the migration short and the next
    caller started over, so the store never opened."""
    import gateway_engine.store.migrations as migrations
    from gateway_engine.store import LazyStore

    started: list[float] = []
    migrate = migrations.ensure_migrated

    async def slow_migration(store):
        started.append(asyncio.get_running_loop().time())
        await asyncio.sleep(0.3)
        await migrate(store)

    monkeypatch.setattr(migrations, "ensure_migrated", slow_migration)
    lazy = LazyStore(lambda: StoreSettings(f"sqlite+aiosqlite:///{tmp_path / 'lazy.db'}"))
    try:
        for _ in range(3):  # three callers in turn, each giving up long before the migration ends
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(lazy.get(), 0.05)
        store = await asyncio.wait_for(lazy.get(), 10)
        assert len(started) == 1 and lazy.ready is store
        assert await store.transact(lambda conn: conn.exec_driver_sql("SELECT 1").scalar()) == 1
        assert await lazy.get() is store
    finally:
        await lazy.close()
    assert lazy.ready is None


async def test_a_lazy_store_whose_opening_failed_is_tried_again(tmp_path, monkeypatch):
    import gateway_engine.store.migrations as migrations
    from gateway_engine.store import LazyStore

    attempts: list[int] = []
    migrate = migrations.ensure_migrated

    async def fails_once(store):
        attempts.append(1)
        if len(attempts) == 1:
            raise OSError("the database is not reachable yet")
        await migrate(store)

    monkeypatch.setattr(migrations, "ensure_migrated", fails_once)
    lazy = LazyStore(lambda: StoreSettings(f"sqlite+aiosqlite:///{tmp_path / 'retry.db'}"))
    try:
        with pytest.raises(OSError, match="not reachable"):
            await lazy.get()
        assert (await lazy.get()) is lazy.ready and len(attempts) == 2
    finally:
        await lazy.close()
