"""A real redis-server on a free 127.0.0.1 port for tests (CI installs it: apt-get install redis-server)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import free_port

_running: dict[str, subprocess.Popen[bytes]] = {}  # url -> the server this process started


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """Run in the foreground as this test's child, no persistence; stopped through its own Popen handle.

    Not daemonized with a pid file: a stale pid file (a Redis that died, its pid reused) would have the
    teardown signal some other process.
    """
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not Path(binary).exists():
        pytest.skip("redis-server is not installed (CI installs it: apt-get install redis-server)")
    port = free_port()
    argv = [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"]
    with (tmp_path / "redis.log").open("wb") as log:
        proc = subprocess.Popen([*argv, "--dir", str(tmp_path)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while not _ready(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {port}: {(tmp_path / 'redis.log').read_text()}")
            time.sleep(0.02)
        url = f"redis://127.0.0.1:{port}"
        _running[url] = proc
        yield url
    finally:
        _running.pop(f"redis://127.0.0.1:{port}", None)
        proc.terminate()  # Popen signals only while its child has not been reaped: never a reused pid
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _ready(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def stop_redis(url: str, tmp_path: Path) -> None:
    """Stop the `redis_url` server of this test (through its own Popen handle) and wait until its port refuses."""
    proc = _running[url]
    proc.terminate()
    proc.wait(10)
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    deadline = time.monotonic() + 10
    while _ready(port):
        if time.monotonic() > deadline:
            raise RuntimeError(f"redis-server on port {port} did not stop")
        time.sleep(0.02)
