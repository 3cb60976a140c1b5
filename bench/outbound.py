"""Outbound webhooks figures: ``python -m bench.outbound``.

1. dispatcher: deliveries per second of one dispatcher, pinned to one core, from a SQLite (or
   ``--store`` PostgreSQL) outbox to nginx on 127.0.0.1 (target ≥ 500/s);
2. emit: the same proxied GET with and without ``emit:`` (configs/outbound), interleaved wrk
   rounds (target: the emitting route keeps ≥ 90 % of the plain route's requests/s).

Needs nginx and wrk (as ``python -m bench``); ``--only dispatcher|emit`` runs one part.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

from bench import servers, wrk
from gateway_engine.outbound.dispatcher import Dispatcher
from gateway_engine.outbound.outbox import body_of, new_id
from gateway_engine.outbound.settings import DeliverySettings
from gateway_engine.outbound.signing import new_secret
from gateway_engine.outbound.tables import deliveries, endpoints, messages
from gateway_engine.store import StoreSettings, acquire_store, async_url, migrate, release_store

CONFIG = Path(__file__).resolve().parent / "configs" / "outbound"
DISPATCH_TARGET = 500.0
EMIT_TARGET = 0.90


async def dispatcher_rate(store_url: str, receiver: str, messages_count: int, endpoint_count: int) -> dict:
    """Deliveries/s of one dispatcher draining ``messages_count`` messages to ``endpoint_count`` endpoints."""
    store = acquire_store(StoreSettings(store_url))
    try:
        await migrate(store)
        now = time.time()
        async with store.engine.begin() as conn:
            for table in (deliveries, messages, endpoints):
                await conn.execute(table.delete())
            for i in range(endpoint_count):
                await conn.execute(
                    endpoints.insert().values(
                        id=f"ep_bench{i}",
                        tenant="bench",
                        url=f"{receiver}/items?ep={i}",
                        description="",
                        events='["*"]',
                        headers="{}",
                        enabled=True,
                        secret=new_secret(),
                        created_at=now,
                        updated_at=now,
                    )
                )
            rows = []
            for _ in range(messages_count):
                message_id = new_id("msg")
                body = body_of(message_id, "bench.happened", {"n": 1}, now).decode()
                rows.append(
                    {
                        "id": message_id,
                        "tenant": "bench",
                        "event_type": "bench.happened",
                        "payload": body,
                        "created_at": now,
                        "fanned": False,
                    }
                )
            await conn.execute(messages.insert(), rows)
        settings = DeliverySettings(
            jitter=0,
            poll_interval=0.01,
            concurrency=64,
            per_endpoint=16,
            batch=500,
            allow=(ipaddress.ip_network("127.0.0.1/32"),),
        )
        dispatcher = Dispatcher(store.engine, settings, _no_operational_events)
        expected = messages_count * endpoint_count
        started = time.perf_counter()
        dispatcher.start()
        done = 0
        while done < expected and time.perf_counter() - started < 600:
            await asyncio.sleep(0.2)
            async with store.engine.connect() as conn:
                done = (
                    await conn.execute(
                        sa.select(sa.func.count()).select_from(deliveries).where(deliveries.c.status == "succeeded")
                    )
                ).scalar_one()
        elapsed = time.perf_counter() - started
        await dispatcher.stop()
        return {"deliveries": done, "expected": expected, "seconds": elapsed, "per_second": done / elapsed}
    finally:
        await release_store(store)


async def _no_operational_events(tenant: str, event_type: str, data: object) -> None:
    return None


def emit_cost(workdir: Path, upstream: servers.Server, args: argparse.Namespace) -> dict:
    env = {**os.environ, "BENCH_UPSTREAM_URL": upstream.base, "GATEWAY_DATA": str(workdir / "data")}
    gateway = servers.gateway("gateway-outbound", CONFIG, workdir, env, 1, 0)
    gateway.start()
    figures: dict[str, list[float]] = {"items": [], "emit": []}
    try:
        for _ in range(args.rounds):
            for name in ("items", "emit"):
                url = f"{gateway.base}/api/gateway/bench/{name}"
                wrk.run(url, args.warmup, args.connections, {}, 1)
                figures[name].append(wrk.run(url, args.duration, args.connections, {}, 1)["requests_per_sec"])
    finally:
        gateway.stop()
    plain, emitting = statistics.median(figures["items"]), statistics.median(figures["emit"])
    return {"plain_rps": plain, "emit_rps": emitting, "ratio": emitting / plain if plain else 0.0, "rounds": figures}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.outbound", description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["dispatcher", "emit"])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--endpoints", type=int, default=4)
    parser.add_argument("--store", help="a PostgreSQL URL (default: a SQLite file in a temporary directory)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args(argv)
    report: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="gw-bench-outbound-") as tmp:
        workdir = Path(tmp)
        upstream = servers.nginx(workdir, 1)
        upstream.start()
        try:
            if args.only in (None, "dispatcher"):
                if hasattr(os, "sched_setaffinity"):
                    os.sched_setaffinity(0, {0})  # the dispatcher gets one core; nginx has core 1
                url = async_url(args.store) if args.store else f"sqlite+aiosqlite:///{workdir / 'outbox.db'}"
                rate = asyncio.run(dispatcher_rate(url, upstream.base, args.messages, args.endpoints))
                rate["check"] = "PASS" if rate["per_second"] >= DISPATCH_TARGET else "FAIL"
                report["dispatcher"] = rate
                print(
                    f"dispatcher: {rate['per_second']:.0f} deliveries/s (target ≥ {DISPATCH_TARGET:.0f}) {rate['check']}"
                )
            if args.only in (None, "emit"):
                cost = emit_cost(workdir, upstream, args)
                cost["check"] = "PASS" if cost["ratio"] >= EMIT_TARGET else "FAIL"
                report["emit"] = cost
                print(
                    f"emit: {cost['emit_rps']:.0f} req/s vs {cost['plain_rps']:.0f} without emit = "
                    f"{cost['ratio']:.2f} (target ≥ {EMIT_TARGET:.2f}) {cost['check']}"
                )
        finally:
            upstream.stop()
    print(json.dumps(report, indent=2))
    return 0 if all(part.get("check") == "PASS" for part in report.values() if isinstance(part, dict)) else 1


if __name__ == "__main__":
    sys.exit(main())
