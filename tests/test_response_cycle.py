"""The server's answer writing (runtime/response_cycle.py) over real sockets: one write() for a head and
its body, a stream's head at once, and headers that could split the answer refused as before."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn

from gateway_engine.runtime.protocol import GatewayHttpProtocol
from tests.servers import free_port

GUARD = 10.0  # seconds a failing test may wait before it gives up
BODY = b'{"ok":true}'
HOSTILE_VALUES = {
    "/bare-lf": b"a\nset-cookie: stolen=1",
    "/bare-cr": b"a\rset-cookie: stolen=1",
    "/nul": b"a\x00stolen",
    "/obs-fold": b"a\r\n stolen",
}
release = threading.Event()  # lets /stream send its first chunk


class Recorded:
    """A connection's real transport, keeping what each write() was given."""

    def __init__(self, transport: Any) -> None:
        self._transport = transport

    def write(self, data: bytes) -> None:
        RecordingProtocol.writes.append(bytes(data))
        self._transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class RecordingProtocol(GatewayHttpProtocol):
    """The gateway's protocol on a recorded transport."""

    writes: list[bytes] = []

    def connection_made(self, transport: Any) -> None:
        super().connection_made(Recorded(transport))  # type: ignore[arg-type]


async def app(scope: dict, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/stream":  # no length: chunked, and the first chunk waits until the test lets it go
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        while not release.is_set():
            await asyncio.sleep(0.01)
        await send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": False})
        return
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]
    if path == "/bad-value":
        headers.append((b"x-injected", b"a\r\nset-cookie: stolen=1"))
    elif path in HOSTILE_VALUES:  # what a hostile upstream's header could carry through to the client
        headers.append((b"x-upstream", HOSTILE_VALUES[path]))
    elif path == "/bad-name":
        headers.append((b"x bad", b"1"))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": BODY})


@pytest.fixture(scope="module")
def server() -> Iterator[int]:
    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http=RecordingProtocol,
        lifespan="off",
        log_level="critical",
        access_log=False,
        server_header=False,
        proxy_headers=False,
    )
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + GUARD
    while not srv.started:
        assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
        time.sleep(0.01)
    yield port
    srv.should_exit = True
    thread.join(GUARD)


async def exchange(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        data = b""
        async with asyncio.timeout(GUARD):
            while chunk := await reader.read(65536):
                data += chunk
        return data
    finally:
        writer.close()


def get(path: str, method: str = "GET") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode()


async def test_a_head_and_its_body_leave_in_one_write(server):
    RecordingProtocol.writes.clear()
    raw = await exchange(server, get("/json"))
    assert raw.startswith(b"HTTP/1.1 200 OK\r\n") and raw.endswith(b"\r\n\r\n" + BODY)
    answers = [w for w in RecordingProtocol.writes if w.startswith(b"HTTP/1.1 ")]
    assert len(RecordingProtocol.writes) == 1 and answers[0] == raw  # not a head, then a body


async def test_keep_alive_answers_each_in_one_write(server):
    RecordingProtocol.writes.clear()
    reader, writer = await asyncio.open_connection("127.0.0.1", server)
    try:
        for _ in range(3):
            writer.write(b"GET /json HTTP/1.1\r\nHost: t\r\n\r\n")
            async with asyncio.timeout(GUARD):
                head = await reader.readuntil(b"\r\n\r\n")
                assert await reader.readexactly(len(BODY)) == BODY
            assert b"connection: close" not in head.lower()
    finally:
        writer.close()
    assert len(RecordingProtocol.writes) == 3
    assert all(w.startswith(b"HTTP/1.1 200 OK\r\n") and w.endswith(BODY) for w in RecordingProtocol.writes)


async def test_a_stream_gets_its_head_before_its_first_chunk(server):
    release.clear()
    reader, writer = await asyncio.open_connection("127.0.0.1", server)
    try:
        writer.write(get("/stream"))
        async with asyncio.timeout(GUARD):
            head = await reader.readuntil(b"\r\n\r\n")  # while the app still holds its first chunk back
        assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"transfer-encoding: chunked" in head
        release.set()
        async with asyncio.timeout(GUARD):
            rest = await reader.read(65536)
            while chunk := await reader.read(65536):
                rest += chunk
        assert rest == b"9\r\ndata: 1\n\n\r\n0\r\n\r\n"
    finally:
        release.set()
        writer.close()


async def test_head_answers_keep_the_length_and_send_no_body(server):
    raw = await exchange(server, get("/json", "HEAD"))
    assert raw.startswith(b"HTTP/1.1 200 OK\r\n")
    assert f"content-length: {len(BODY)}\r\n".encode() in raw and raw.endswith(b"\r\n\r\n")


@pytest.mark.parametrize("path", ["/bad-value", "/bad-name", *HOSTILE_VALUES])
async def test_a_header_that_could_split_the_answer_is_never_sent(server, path):
    RecordingProtocol.writes.clear()
    raw = await exchange(server, get(path))
    assert b"stolen" not in raw and b"x bad" not in raw
    assert not raw.startswith(b"HTTP/1.1 200")  # uvicorn's 500 or a closed connection, never the answer
