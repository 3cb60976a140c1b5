"""A graceful shutdown loses no request that a load balancer already sent on a pooled keep-alive connection.

On SIGTERM the listener closes first (the balancer's new connections are refused and go to another instance);
an idle keep-alive connection is not dropped at once: a request arriving on it is answered with
``Connection: close``, and a connection that stays idle is closed after a short grace, so the drain ends.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from tests.gateway_process import GatewayProcess
from tests.servers import write_config

GUARD = 30.0  # only a bound for a broken build; nothing here measures time
HEALTH = b"GET /api/health HTTP/1.1\r\nhost: lb\r\n\r\n"


@pytest.fixture
def gateway(tmp_path: Path):
    root = write_config(tmp_path / "config", "version: 1\nbase_path: /api\nplugins: [envelope]\n", {})
    with GatewayProcess(root, tmp_path / "gateway.log", args=["--drain-timeout", "10"]) as gw:
        yield gw


async def answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    async with asyncio.timeout(GUARD):
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        lines = head.split("\r\n")
        headers = dict(line.lower().split(": ", 1) for line in lines[1:] if line)
        await reader.readexactly(int(headers["content-length"]))
        return int(lines[0].split()[1]), headers


async def pooled_connection(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A keep-alive connection that served one request and is now idle, as in a balancer's pool."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(HEALTH)
    status, headers = await answer(reader)
    assert status == 200 and headers.get("connection") != "close"
    return reader, writer


async def listener_closed(port: int) -> None:
    """Until a new connection is refused: uvicorn has begun its shutdown (and asked every connection to drain)."""
    async with asyncio.timeout(GUARD):
        while True:
            try:
                _, probe = await asyncio.open_connection("127.0.0.1", port)
            except (ConnectionRefusedError, ConnectionResetError):
                # refused: the listener is gone; reset: this connect was in its backlog as it closed (seen in
                # CI). Linux drops a SYN past a full backlog (no reset), so a reset means closed, not busy.
                return
            probe.close()
            await asyncio.sleep(0.02)


async def test_a_request_sent_on_an_idle_pooled_connection_after_sigterm_is_answered(gateway: GatewayProcess):
    reader, writer = await pooled_connection(gateway.port)
    gateway.signal(signal.SIGTERM)
    await listener_closed(gateway.port)
    writer.write(HEALTH)  # the balancer picked this pooled connection just as the instance began to drain
    status, headers = await answer(reader)
    assert status == 200 and headers["connection"] == "close"
    async with asyncio.timeout(GUARD):
        assert await reader.read() == b""  # then closed by the gateway, cleanly
    writer.close()
    assert gateway.proc is not None and gateway.proc.wait(GUARD) in (0, -signal.SIGTERM)


async def test_an_idle_pooled_connection_is_closed_after_the_grace_and_the_drain_ends(gateway: GatewayProcess):
    connections = [await pooled_connection(gateway.port) for _ in range(3)]
    gateway.signal(signal.SIGTERM)
    async with asyncio.timeout(GUARD):
        for reader, _ in connections:
            assert await reader.read() == b""  # a FIN, not a reset: nothing was sent on it
    for _, writer in connections:
        writer.close()
    assert gateway.proc is not None and gateway.proc.wait(GUARD) in (0, -signal.SIGTERM)
    log = gateway.log_text()
    assert "timeout graceful shutdown exceeded" not in log  # closed by the grace, not by the drain's deadline
    assert "Traceback" not in log


async def test_a_request_in_flight_at_sigterm_finishes_and_closes_its_connection(tmp_path: Path):
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from tests.servers import serve

    arrived = asyncio.Event()
    release = asyncio.Event()
    loop = asyncio.get_running_loop()

    async def slow(request: Request) -> JSONResponse:
        loop.call_soon_threadsafe(arrived.set)
        while not release.is_set():
            await asyncio.sleep(0.01)
        return JSONResponse({"ok": True})

    with serve(Starlette(routes=[Route("/slow", slow)])) as upstream:
        routes = f"backend: s\nprefix: /s\nupstream: {{url: '{upstream}'}}\nroutes:\n  - {{name: slow, method: GET, path: /slow, upstream_path: /slow}}\n"
        root = write_config(tmp_path / "config", "version: 1\nbase_path: /api\nplugins: [envelope]\n", {"s": routes})
        with GatewayProcess(root, tmp_path / "gateway.log", args=["--drain-timeout", "10"]) as gw:
            reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
            writer.write(b"GET /api/s/slow HTTP/1.1\r\nhost: lb\r\n\r\n")
            async with asyncio.timeout(GUARD):
                await arrived.wait()
            gw.signal(signal.SIGTERM)
            await listener_closed(gw.port)
            release.set()
            status, headers = await answer(reader)
            assert status == 200 and headers["connection"] == "close"
            writer.close()
            assert gw.proc is not None and gw.proc.wait(GUARD) in (0, -signal.SIGTERM)
