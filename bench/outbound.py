"""Outbound webhooks figures: ``python -m bench.outbound``.

1. dispatcher: deliveries per second of one dispatcher, pinned to one core, from a SQLite (or
   ``--store`` PostgreSQL) outbox to nginx on 127.0.0.1 (target ≥ 500/s);
2. emit: the same proxied GET with and without ``emit:`` (configs/outbound), with the dispatcher
   in the gateway process and in a ``gateway-engine worker`` of its own (target: the emitting
   route keeps ≥ 90 % of the plain route's requests/s). Each round measures both routes back to
   back, in ABBA order; the figure is the median of the rounds' own ratios, because this shared
   machine's speed drifts between rounds by more than an emit costs (in one run of 8 rounds the
   plain route made 3,842 to 6,751 req/s) while the two halves of a round see the same machine. ``--subscribed``
   gives the tenant an endpoint, so that each emit is also delivered. ``--store`` puts the
   gateway's and the worker's outbox on PostgreSQL, whose server then does the inserts.

Needs nginx and wrk (as ``python -m bench``); ``--only dispatcher|emit`` runs one part.

``--only instructions`` (not part of the default run; needs valgrind): the instructions the running
gateway executes per request of each route under wrk, counted by callgrind from a zeroed counter to a
dump (the writer's thread included, the dispatcher in a worker, ``--valgrind-linger`` so that the outbox
batches are as large under valgrind as at full speed). It is the same on a busy machine as on an idle
one, which the wrk ratio is not, and it leaves out only kernel time (the plain request's socket calls,
which an emit barely adds to): its plain/emit ratio is the emit figure on a core of the gateway's own, from
below.

``--only engine`` (not part of the default run, no target): what an emit adds to a request in
process, as ``bench.engine`` measures (the upstream stubbed, no sockets), in the process's CPU time,
the outbox batches' thread included. It moves with a change to the emit path by far less noise than
wrk's rounds on a shared machine, and it is where a change is compared before the wrk run.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa
import yaml

from bench import servers, wrk
from gateway_engine.outbound.dispatcher import Dispatcher
from gateway_engine.outbound.payload import body_of, new_id
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
        dispatcher = Dispatcher(store.engine, settings, _no_operational_events, store.transact)
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


def emit_cost(workdir: Path, upstream: servers.Server, args: argparse.Namespace, dispatch: str) -> dict:
    """The plain and the emitting route in interleaved wrk rounds; the dispatcher in the gateway process
    (``in_process``) or in a ``gateway-engine worker`` process of its own (``worker``). With ``--subscribed``
    the tenant has an endpoint (nginx), so every emit is also a delivery: an HTTP POST somebody pays for."""
    config = workdir / f"config-{dispatch}"
    shutil.copytree(CONFIG, config)
    if dispatch == "worker":
        gateway_yaml = config / "gateway.yaml"
        gateway_yaml.write_text(gateway_yaml.read_text().replace("dispatch: in_process", "dispatch: worker_only"))
    data = workdir / f"data-{dispatch}"
    store = args.store or f"sqlite:///{data / 'gateway.db'}"
    if args.store:  # the gateway and its worker on PostgreSQL
        gateway_yaml = config / "gateway.yaml"
        gateway_yaml.write_text(gateway_yaml.read_text() + yaml.safe_dump({"store": {"url": args.store}}))
    env = {**os.environ, "BENCH_UPSTREAM_URL": upstream.base, "GATEWAY_DATA": str(data)}
    gateway = servers.gateway(f"gateway-outbound-{dispatch}", config, workdir, env, 1, 0)
    gateway.start()
    worker = None
    figures: dict[str, list[float]] = {"items": [], "emit": []}
    cpu: dict[str, list[float]] = {"items": [], "emit": []}  # the gateway's CPU µs per request
    refused = {"items": 0, "emit": 0}  # non-2xx answers over the measured rounds
    try:
        if args.store:  # migrated by the gateway's start; emptied of an earlier part's rows
            asyncio.run(_statements(store, [table.delete() for table in (deliveries, messages, endpoints)]))
        if args.subscribed:
            _subscribe(store, f"{upstream.base}/hook")
        if dispatch == "worker":  # on the other core, with nginx and wrk: the gateway's core is its own
            command = [*servers.gateway_command(), "worker", "--only", "outbound", "--config", str(config)]
            log = (workdir / f"worker-{dispatch}.log").open("w")
            worker = subprocess.Popen(servers.pinned(command, 1), env=env, stdout=log, stderr=log)
        for round_ in range(args.rounds):
            for name in ("items", "emit") if round_ % 2 == 0 else ("emit", "items"):  # ABBA: a drift cancels out
                url = f"{gateway.base}/api/gateway/bench/{name}"
                wrk.run(url, args.warmup, args.connections, {}, 1)
                assert gateway.proc is not None
                before = cpu_seconds(gateway.proc.pid)
                result = wrk.run(url, args.duration, args.connections, {}, 1)
                rate = result["requests_per_sec"]
                refused[name] += result.get("non_2xx_3xx", 0)  # a 503 answered fast is not throughput
                figures[name].append(rate)
                cpu[name].append((cpu_seconds(gateway.proc.pid) - before) / (rate * args.duration) * 1e6)
        time.sleep(1.0)
        delivered, emitted = asyncio.run(
            _statements(
                store,
                [
                    sa.select(sa.func.count()).select_from(deliveries).where(deliveries.c.status == "succeeded"),
                    sa.select(sa.func.count()).select_from(messages).where(messages.c.event_type == "bench.happened"),
                ],
            )
        )
    finally:
        if worker is not None:
            worker.send_signal(signal.SIGTERM)
            worker.wait(30)
        gateway.stop()
    plain, emitting = statistics.median(figures["items"]), statistics.median(figures["emit"])
    plain_cpu, emit_cpu = statistics.median(cpu["items"]), statistics.median(cpu["emit"])
    return {
        "dispatch": dispatch,
        "subscribed": args.subscribed,
        "plain_rps": plain,
        "emit_rps": emitting,
        # each round's emit/plain (the two measured back to back), their median: the machine's speed,
        # which drifts by more than an emit costs between rounds, is the same within one round
        "ratio": paired_ratio(figures["emit"], figures["items"]),
        "ratio_of_medians": emitting / plain if plain else 0.0,
        "plain_cpu_us": plain_cpu,
        "emit_cpu_us": emit_cpu,
        "cpu_ratio": plain_cpu / emit_cpu if emit_cpu else 0.0,  # throughput ratio on a core of its own
        "non_2xx": refused,
        "emitted": emitted,
        "delivered": delivered,
        "rounds": figures,
    }


def paired_ratio(measured: list[float], baseline: list[float]) -> float:
    """The median of ``measured[i] / baseline[i]``: of figures taken in pairs, one right after the other."""
    return statistics.median(m / b if b else 0.0 for m, b in zip(measured, baseline, strict=True))


def engine_cost(args: argparse.Namespace) -> dict:
    """CPU µs per request of the plain and the emitting route in process (``bench.engine.measure_app``),
    the best batch of each round, alternating; the outbox is a SQLite file, as by default."""
    import uvloop

    from bench.engine import measure_app

    figures: dict[str, list[float]] = {"items": [], "emit": []}
    with tempfile.TemporaryDirectory(prefix="gw-bench-outbound-engine-") as tmp:
        config = Path(tmp) / "config"
        shutil.copytree(CONFIG, config)
        database = Path(tmp) / "gateway.db"
        gateway_yaml = config / "gateway.yaml"  # the store named in the config: no environment to set or restore
        gateway_yaml.write_text(gateway_yaml.read_text() + yaml.safe_dump({"store": {"url": f"sqlite:///{database}"}}))
        env = {"BENCH_UPSTREAM_URL": "http://127.0.0.1:9"}
        for _ in range(args.rounds):
            for name, found in figures.items():
                path = f"/api/gateway/bench/{name}"
                best, _median = uvloop.run(measure_app(str(config), env, path, {}, args.requests, cpu=True))
                found.append(best)
        with sqlite3.connect(database) as db:  # an emit path that wrote nothing is no figure
            (emitted,) = db.execute("SELECT count(*) FROM outbound_messages").fetchone()
    plain, emitting = min(figures["items"]), min(figures["emit"])
    return {
        "plain_cpu_us": plain,
        "emit_cpu_us": emitting,
        "extra_us": emitting - plain,
        "emitted": emitted,
        "rounds": figures,
    }


def instructions_cost(workdir: Path, upstream: servers.Server, args: argparse.Namespace) -> dict:
    """Instructions per request of the plain and the emitting route in the running gateway (callgrind)."""
    figures = {}
    for name in ("items", "emit"):
        config = workdir / f"config-instructions-{name}"
        shutil.copytree(CONFIG, config)
        gateway_yaml = config / "gateway.yaml"
        settings = f"dispatch: worker_only, write_linger: {args.valgrind_linger}"
        gateway_yaml.write_text(gateway_yaml.read_text().replace("dispatch: in_process", settings))
        env = {
            **os.environ,
            "BENCH_UPSTREAM_URL": upstream.base,
            "GATEWAY_DATA": str(workdir / f"data-instructions-{name}"),
            "PYTHONHASHSEED": "0",
        }
        out = workdir / f"callgrind-{name}.out"
        valgrind = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "--fair-sched=yes"]
        command = [*valgrind, sys.executable, "-m", "gateway_engine"]
        gateway = servers.gateway(f"gateway-instructions-{name}", config, workdir, env, 1, 0, command)
        gateway.ready_deadline = 600.0  # the engine's imports under valgrind
        gateway.start()
        try:
            url = f"{gateway.base}/api/gateway/bench/{name}"
            wrk.run(url, args.warmup, 4, {}, 1)
            assert gateway.proc is not None
            subprocess.run(["callgrind_control", "--zero", str(gateway.proc.pid)], check=True, capture_output=True)
            result = wrk.run(url, args.duration, 4, {}, 1)
            subprocess.run(["callgrind_control", "--dump", str(gateway.proc.pid)], check=True, capture_output=True)
            dumps = sorted(workdir.glob(f"{out.name}*"), key=lambda dump: dump.stat().st_mtime)
            if not dumps or not result["requests"]:
                raise SystemExit(f"callgrind wrote no dump for {name} (or wrk made no request)")
            figures[name] = {
                "requests": result["requests"],
                "per_request": callgrind_total(dumps[-1]) / result["requests"],
            }
        finally:
            gateway.stop()
    plain, emitting = figures["items"]["per_request"], figures["emit"]["per_request"]
    return {**figures, "ratio": plain / emitting, "linger": args.valgrind_linger}


def callgrind_total(dump: Path) -> int:
    """The instructions a callgrind dump counted (its ``summary:`` line, else ``totals:``)."""
    found: dict[str, int] = {}
    with dump.open(errors="replace") as lines:
        for line in lines:
            key, _, value = line.partition(":")
            if key in ("summary", "totals") and (words := value.split()):
                found.setdefault(key, int(words[0]))
    if not found:
        raise ValueError(f"{dump} has no summary or totals line")
    return found["summary"] if "summary" in found else found["totals"]


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its children so far (Linux /proc), to compare per request on a
    shared machine: what a request costs does not depend on who else wants the core."""
    total = 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except (FileNotFoundError, ProcessLookupError):
        return total
    return total + sum(cpu_seconds(int(child)) for child in children)


def _subscribe(store: str, url: str) -> None:
    """One endpoint of the bench tenant for every event, written where the gateway's admin API would."""
    now = time.time()
    row = {
        "id": "ep_bench",
        "tenant": "bench",
        "url": url,
        "description": "",
        "events": '["*"]',
        "headers": "{}",
        "enabled": True,
        "secret": new_secret(),
        "created_at": now,
        "updated_at": now,
    }
    asyncio.run(_statements(store, [endpoints.insert().values(row)]))


async def _statements(url: str, statements: list) -> list:
    """Run ``statements`` in one transaction on the bench's store (a SQLite file or PostgreSQL); the
    scalar each query returned (None for the others)."""
    store = acquire_store(StoreSettings(async_url(url)))
    try:
        async with store.engine.begin() as conn:
            results = [await conn.execute(statement) for statement in statements]
            return [result.scalar() if result.returns_rows else None for result in results]
    finally:
        await release_store(store)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.outbound", description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["dispatcher", "emit", "engine", "instructions"])
    parser.add_argument("--requests", type=int, default=20_000, help="the engine part's requests per round")
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--endpoints", type=int, default=4)
    parser.add_argument(
        "--store", help="a PostgreSQL URL for both parts (default: a SQLite file in a temporary directory)"
    )
    parser.add_argument(
        "--rounds", type=int, default=8, help="the emit part's rounds: each measures both routes, in ABBA order"
    )
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--dispatch",
        action="append",
        choices=["in_process", "worker"],
        help="where the emit part's dispatcher runs (repeatable; default both: in the gateway, and in a worker)",
    )
    parser.add_argument(
        "--subscribed", action="store_true", help="the emit part's tenant has an endpoint: every emit is delivered"
    )
    parser.add_argument(
        "--valgrind-linger",
        default="1s",
        help="the instructions part's write_linger: batches under valgrind (~100 req/s) as large as at full speed",
    )
    args = parser.parse_args(argv)
    args.dispatch = args.dispatch or ["in_process", "worker"]
    report: dict[str, object] = {}
    if args.only == "engine":  # in process: no nginx, no wrk
        cost = engine_cost(args)
        if not cost["emitted"]:
            raise SystemExit("the emitting route wrote no event: the figure measures nothing")
        print(
            f"emit in process: {cost['emit_cpu_us']:.1f} vs {cost['plain_cpu_us']:.1f} µs CPU/request "
            f"(+{cost['extra_us']:.1f} µs an emit)"
        )
        print(json.dumps({"engine": cost}, indent=2))
        return 0
    if args.only == "instructions" and not (shutil.which("valgrind") and shutil.which("callgrind_control")):
        raise SystemExit("--only instructions needs valgrind (apt-get install valgrind)")
    with tempfile.TemporaryDirectory(prefix="gw-bench-outbound-") as tmp:
        workdir = Path(tmp)
        upstream = servers.nginx(workdir, 1)
        upstream.start()
        try:
            if args.only == "instructions":
                counted = instructions_cost(workdir, upstream, args)
                counted["check"] = "PASS" if counted["ratio"] >= EMIT_TARGET else "FAIL"
                report["instructions"] = counted
                print(
                    f"emit in the running gateway: {counted['emit']['per_request']:,.0f} vs "
                    f"{counted['items']['per_request']:,.0f} instructions/request without emit (callgrind, "
                    f"write_linger {args.valgrind_linger}) = {counted['ratio']:.3f} on a core of its own, kernel time "
                    f"left out (target ≥ {EMIT_TARGET:.2f}) {counted['check']}"
                )
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
                if hasattr(os, "sched_setaffinity"):
                    os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
                for dispatch in args.dispatch:
                    cost = emit_cost(workdir, upstream, args, dispatch)
                    clean = not any(cost["non_2xx"].values())
                    cost["check"] = "PASS" if cost["ratio"] >= EMIT_TARGET and clean else "FAIL"
                    report[f"emit-{dispatch}"] = cost
                    print(
                        f"emit (dispatcher {dispatch}, {'one' if args.subscribed else 'no'} subscriber): "
                        f"{cost['emit_rps']:.0f} req/s vs {cost['plain_rps']:.0f} without emit (medians); median of the "
                        f"{args.rounds} rounds' ratios {cost['ratio']:.2f} (target ≥ {EMIT_TARGET:.2f}) {cost['check']}; "
                        f"ratio of the medians {cost['ratio_of_medians']:.2f}; gateway CPU {cost['emit_cpu_us']:.0f} vs "
                        f"{cost['plain_cpu_us']:.0f} µs/request = {cost['cpu_ratio']:.2f}; "
                        f"{cost['delivered']} of {cost['emitted']} delivered; non-2xx {cost['non_2xx']}"
                    )
        finally:
            upstream.stop()
    print(json.dumps(report, indent=2))
    return 0 if all(part.get("check") == "PASS" for part in report.values() if isinstance(part, dict)) else 1


if __name__ == "__main__":
    sys.exit(main())
