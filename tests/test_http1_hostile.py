"""Hostile upstreams and hostile clients against the upstream HTTP/1.1 clients (issue 13: D1 D3 D11 D12 D15 D16 D18)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import httpx
import pytest

from gateway_engine.foundation.errors import GatewayError
from gateway_engine.upstreams.aiohttp_transport import AiohttpTransport
from gateway_engine.upstreams.http1 import Http1Transport
from gateway_engine.upstreams.httpx_transport import HttpxTransport
from gateway_engine.upstreams.seam import Timeouts
from tests.raw_upstreams import H11Upstream, RawUpstream, read_request

GATEWAY = "version: 1\nbase_path: /api\nplugins: [request_id, envelope]\n"
TRANSPORTS = {"http1": Http1Transport, "aiohttp": AiohttpTransport, "httpx": HttpxTransport}


def run(coro):
    return asyncio.run(coro)


def transport(kind: str = "http1", **timeouts):
    return TRANSPORTS[kind](timeouts=Timeouts(**{"connect": 2, "read": 5, "total": 5, **timeouts}), max_connections=4)


async def body_of(reply) -> bytes:
    if reply.stream is None:
        return reply.body or b""
    return b"".join([chunk async for chunk in reply.stream])


def answering(*answers: bytes, then_close: bool = False):
    """A handler that answers the n-th request on a connection with ``answers[n]`` (the last one repeats)."""

    def handler(sock: socket.socket, number: int) -> None:
        buffer = bytearray()
        n = 0
        while read_request(sock, buffer) is not None:
            sock.sendall(answers[min(n, len(answers) - 1)])
            n += 1
            if then_close:
                return

    return handler


OK_NEXT = b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nnext"


# -- D3: a connection carries one message per exchange, and nothing more --------------------------------


def test_d3_surplus_after_a_framed_answer_never_reaches_the_client_and_retires_the_connection():
    smuggled = b'HTTP/1.1 200 OK\r\nx-smuggled: 1\r\ncontent-length: 23\r\n\r\n{"secret":"of-userA!!"}'
    first = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello" + smuggled
    server = RawUpstream(lambda sock, n: answering(first if n == 1 else OK_NEXT)(sock, n))
    client = transport()

    async def go():
        reply = await client.send("GET", server.url + "/a", [], None)
        assert (reply.status, await body_of(reply)) == (200, b"hello")
        assert "x-smuggled" not in dict(reply.headers)
        second = await client.send("GET", server.url + "/b", [], None)
        assert (second.status, await body_of(second)) == (200, b"next")
        await client.aclose()

    run(go())
    assert server.connections == 2  # the connection that carried surplus bytes was never reused


def test_d3_surplus_received_while_idle_in_the_pool_retires_the_connection():
    sent_answer, send_surplus, surplus_sent = threading.Event(), threading.Event(), threading.Event()

    def handler(sock: socket.socket, number: int) -> None:
        buffer = bytearray()
        if number > 1:
            return answering(OK_NEXT)(sock, number)
        read_request(sock, buffer)
        sock.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello")
        sent_answer.set()
        send_surplus.wait(10)
        sock.sendall(b"HTTP/1.1 200 OK\r\ncontent-le")  # a partial answer, left while the connection is idle
        surplus_sent.set()
        while read_request(sock, buffer) is not None:
            sock.sendall(b'ngth: 23\r\n\r\n{"secret":"of-userA!!"}')

    server = RawUpstream(handler)
    client = transport()

    async def go():
        reply = await client.send("GET", server.url + "/a", [], None)
        assert await body_of(reply) == b"hello"
        send_surplus.set()
        while not surplus_sent.is_set():
            await asyncio.sleep(0.01)
        for _ in range(20):  # the bytes are already in the socket buffer: let the loop read them
            await asyncio.sleep(0)
        second = await client.send("GET", server.url + "/b", [], None)
        assert (second.status, await body_of(second)) == (200, b"next")
        await client.aclose()

    run(go())
    assert server.connections == 2


@pytest.mark.parametrize("status", [204, 304])
def test_d3_bytes_after_a_bodyless_answer_are_surplus(status):
    first = b"HTTP/1.1 %d X\r\ncontent-length: 5\r\n\r\nhello" % status
    server = RawUpstream(lambda sock, n: answering(first if n == 1 else OK_NEXT)(sock, n))
    client = transport()

    async def go():
        reply = await client.send("GET", server.url + "/a", [], None)
        assert (reply.status, await body_of(reply)) == (status, b"")
        second = await client.send("GET", server.url + "/b", [], None)
        assert (second.status, await body_of(second)) == (200, b"next")
        await client.aclose()

    run(go())
    assert server.connections == 2


# -- D11: answers framed by closing the connection -----------------------------------------------------


@pytest.mark.parametrize(
    "head",
    [b"HTTP/1.0 200 OK\r\ncontent-type: text/plain\r\n\r\n", b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\n"],
)
def test_d11_close_delimited_answer_is_read_to_eof_and_never_pooled(head):
    big = b"x" * 300_000  # past the small-body size, so it streams
    server = RawUpstream(answering(head + b"hello world" + big, then_close=True))
    client = transport()

    async def go():
        for _ in range(2):
            reply = await client.send("GET", server.url + "/", [], None)
            assert reply.status == 200 and await body_of(reply) == b"hello world" + big
        await client.aclose()

    run(go())
    assert server.connections == 2


def test_d11_close_delimited_json_answer_through_the_gateway(gateway):
    answer = b'HTTP/1.0 200 OK\r\ncontent-type: application/json\r\n\r\n{"a":1}'
    server = RawUpstream(answering(answer, then_close=True))
    base = gateway(
        GATEWAY,
        {
            "svc": f'backend: svc\nprefix: /svc\nupstream: {{url: "{server.url}"}}\nroutes:\n'
            "  - {name: get, method: GET, path: /x, upstream_path: /x}\n"
        },
    )
    r = httpx.get(base + "/api/svc/x", timeout=10)
    assert r.status_code == 200 and r.json()["data"] == {"a": 1}


# -- D12: a cap on the upstream head -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        b"x-big: " + b"a" * (1 << 20),  # huge headers
        b"x: 1",  # many small ones
        b"x-never-ends: aaaaaaaa",
    ],
)  # no line end at all
def test_d12_an_oversized_upstream_head_is_an_upstream_error_and_closes_the_connection(line):
    outcome: list[str] = []
    total = 64 << 20  # more than any socket buffers hold: only a client that stops reading stops the sender
    piece = (line + (b"" if b"never" in line else b"\r\n")) * max(1, (1 << 20) // len(line))

    def handler(sock: socket.socket, number: int) -> None:
        read_request(sock, bytearray())
        try:
            sock.sendall(b"HTTP/1.1 200 OK\r\n")
            for _ in range(total // len(piece)):
                sock.sendall(piece)
            outcome.append("sent everything")
        except OSError:
            outcome.append("closed by the client")

    server = RawUpstream(handler)
    client = transport(read=20, total=20)

    async def go():
        with pytest.raises(GatewayError) as info:
            await client.send("GET", server.url + "/", [], None)
        assert (info.value.status, info.value.code) == (502, "UPSTREAM_ERROR")
        await client.aclose()

    run(go())
    for _ in range(1000):
        if outcome:
            break
        time.sleep(0.01)
    assert outcome == ["closed by the client"]


# -- framing the client refuses -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\nabcd",
        b"HTTP/1.1 200 OK\r\ncontent-length: 3, 4\r\n\r\nabcd",
        b"HTTP/1.1 200 OK\r\ncontent-length: -3\r\n\r\nabc",
        b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\nx-folded: a\r\n b\r\n\r\nabc",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n",
        b"HTTP/1.0 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nx-nul: a\x00b\r\ncontent-length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nbad name: 1\r\ncontent-length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\ncontent-length: 0\n\n",
        b"HTTP/2.0 200 OK\r\ncontent-length: 0\r\n\r\n",
    ],
)
def test_ambiguous_or_invalid_framing_is_refused(answer):
    server = RawUpstream(answering(answer))
    client = transport()

    async def go():
        with pytest.raises(GatewayError) as info:
            await body_of(await client.send("GET", server.url + "/", [], None))
        assert (info.value.status, info.value.code) == (502, "UPSTREAM_ERROR")
        await client.aclose()

    run(go())


def test_interim_answers_are_skipped_and_same_length_values_are_one():
    answer = (
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\n\r\n"
        b"HTTP/1.1 200 OK\r\ncontent-length: 3, 3\r\ncontent-length: 3\r\n\r\nabc"
    )
    server = RawUpstream(answering(answer))
    client = transport()

    async def go():
        for _ in range(2):
            reply = await client.send("GET", server.url + "/", [], None)
            assert (reply.status, await body_of(reply)) == (200, b"abc")
            assert [v for k, v in reply.headers if k == "content-length"] == ["3"] and "link" not in dict(reply.headers)
        await client.aclose()

    run(go())
    assert server.connections == 1


# -- D15: trailers ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", TRANSPORTS)
def test_d15_trailers_never_become_response_headers(kind):
    answer = (
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: set-cookie\r\n\r\n"
        b"5\r\nhello\r\n0\r\nset-cookie: session=attacker\r\nx-trailer: 1\r\n\r\n"
    )
    server = RawUpstream(answering(answer))
    client = transport(kind)

    async def go():
        reply = await client.send("GET", server.url + "/", [], None)
        assert (reply.status, await body_of(reply)) == (200, b"hello")
        names = {k for k, _ in reply.headers}
        assert "set-cookie" not in names and "x-trailer" not in names
        await client.aclose()

    run(go())


# -- D16: what the gateway writes upstream ---------------------------------------------------------------


@pytest.mark.parametrize("kind", TRANSPORTS)
@pytest.mark.parametrize(
    "header",
    [
        ("x-v", "a\x00b"),
        ("x-v", "a\x0bb"),
        ("x-v", "a\x1bb"),
        ("x-v", "a\x7fb"),
        ("x-v", "a\rb"),
        ("x-v", "a\nx-injected: 1"),
        ("x-v", "a\x0cb"),
        ("x y", "1"),
        ("x:y", "1"),
        ("", "1"),
        ("x\x00", "1"),
        ("x\n", "1"),
    ],
)
def test_d16_control_characters_and_non_token_names_are_refused_before_anything_is_sent(kind, header):
    server = H11Upstream()
    client = transport(kind)

    async def go():
        with pytest.raises(GatewayError) as info:
            await client.send("GET", server.url + "/", [header], None)
        assert (info.value.status, info.value.code) == (400, "BAD_HEADER")
        ok = await client.send("GET", server.url + "/", [("x-tab", "a\tb"), ("x-latin", "caf\xe9")], None)
        assert ok.status == 200
        await body_of(ok)
        await client.aclose()

    run(go())
    assert len(server.requests) == 1 and server.requests[0][3]["x-tab"] == "a\tb"
    if kind != "aiohttp":  # the client's bytes go out as they came (aiohttp encodes values as UTF-8)
        assert server.requests[0][3]["x-latin"] == "caf\xe9"


# -- D1: the request body's framing ---------------------------------------------------------------------


async def _chunks(*parts: bytes):
    for part in parts:
        yield part


@pytest.mark.parametrize("kind", TRANSPORTS)
@pytest.mark.parametrize("parts, declared", [((b"abc", b"de"), "4"), ((b"abc",), "5"), ((b"ab", b"c"), "2")])
def test_d1_a_streamed_body_must_match_its_declared_length(kind, parts, declared):
    server = H11Upstream()
    client = transport(kind)

    async def go():
        with pytest.raises(GatewayError) as info:
            await client.send("POST", server.url + "/u", [("content-length", declared)], _chunks(*parts))
        assert info.value.status == 400
        reply = await client.send("GET", server.url + "/next", [], None)
        assert reply.status == 200
        await body_of(reply)
        await client.aclose()

    run(go())
    assert [r[2] for r in server.requests] == ["/next"]  # the short or long body never made a request
    assert server.connections == 2 or kind != "http1"  # and its connection was closed, not reused


def test_d1_a_streamed_body_with_a_declared_length_is_sent_raw_and_the_connection_reused():
    server = H11Upstream()
    client = transport()

    async def go():
        for _ in range(2):
            headers = [("content-length", "5"), ("transfer-encoding", "chunked"), ("x-transfer-encoding", "chunked")]
            reply = await client.send("POST", server.url + "/u", headers, _chunks(b"ab", b"cde"))
            assert reply.status == 200
            await body_of(reply)
        await client.aclose()

    run(go())
    assert [(r[2], r[4]) for r in server.requests] == [("/u", b"abcde")] * 2
    assert "transfer-encoding" not in server.requests[0][3] and server.connections == 1


def test_d1_a_bytes_body_is_framed_by_its_length_whatever_the_headers_say():
    server = H11Upstream()
    client = transport()

    async def go():
        headers = [("content-length", "2"), ("transfer-encoding", "chunked")]
        reply = await client.send("POST", server.url + "/u", headers, b"hello")
        await body_of(reply)
        await client.aclose()

    run(go())
    assert [(r[3]["content-length"], r[4]) for r in server.requests] == [("5", b"hello")]
    assert "transfer-encoding" not in server.requests[0][3]


def test_d1_x_transfer_encoding_cannot_smuggle_a_request_into_the_pooled_connection(gateway):
    """The attack of issue 13 over real sockets: the body's tail, framed as chunks, would become a second request
    whose body swallows the next client's request, bearer token included."""
    server = H11Upstream(
        lambda request: (200, b"captured:" + request[4] if request[2] == "/capture" else b'{"ok":true}')
    )
    base = gateway(
        GATEWAY,
        {
            "svc": f"""
backend: svc
prefix: /svc
upstream: {{url: "{server.url}", headers: {{authorization: "Bearer upstream-secret"}}}}
routes:
  - {{name: register, method: POST, path: /register, upstream_path: /register, plugins: {{envelope: false}}}}
  - {{name: me, method: GET, path: /me, upstream_path: /me, plugins: {{envelope: false}}}}
"""
        },
    )
    # eleven 16-byte pieces and a last one of 100: each becomes its own chunk upstream (2 hex digits + 2 CRLF:
    # 6 bytes of framing each, 5 for the end), so the last 6 * 12 - 2 bytes of the body would be read as a request
    sizes = [16] * 11 + [100]
    smuggled_head = b"GET /capture HTTP/1.1\r\nhost: up\r\ncontent-length: 150\r\nx: "
    smuggled_head += b"p" * (6 * len(sizes) - 2 - len(smuggled_head) - 4) + b"\r\n\r\n"
    body = b"a" * (sum(sizes) - len(smuggled_head)) + smuggled_head
    host, port = base.split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as attacker:
        attacker.sendall(
            b"POST /api/svc/register HTTP/1.1\r\nhost: gw\r\ncontent-type: text/plain\r\n"
            b"x-transfer-encoding: chunked\r\ncontent-length: %d\r\n\r\n" % len(body)
        )
        at = 0
        for size in sizes:
            attacker.sendall(body[at : at + size])
            at += size
            time.sleep(0.05)  # pacing only, so the gateway forwards the pieces one by one
        answer = attacker.recv(65536)
    assert answer.startswith(b"HTTP/1.1 200")
    victim = httpx.get(base + "/api/svc/me", timeout=10)
    assert victim.status_code == 200 and b"captured" not in victim.content
    assert [(r[2], r[4]) for r in server.requests] == [("/register", body), ("/me", b"")]
    assert server.errors == []


# -- D18: HEAD ---------------------------------------------------------------------------------------------


def test_d18_a_head_answer_keeps_the_upstream_content_length(gateway):
    server = RawUpstream(
        answering(b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: 1000\r\n\r\n")
    )
    base = gateway(
        GATEWAY,
        {
            "svc": f'backend: svc\nprefix: /svc\nupstream: {{url: "{server.url}"}}\nroutes:\n'
            "  - {name: file, method: GET, path: /file, upstream_path: /file, "
            "plugins: {envelope: false}}\n"
        },
    )
    r = httpx.head(base + "/api/svc/file", timeout=10)
    assert r.status_code == 200 and r.headers["content-length"] == "1000" and r.content == b""


def test_d18_a_head_answer_is_not_pooled():
    server = RawUpstream(answering(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n"))
    client = transport()

    async def go():
        for _ in range(2):
            reply = await client.send("HEAD", server.url + "/", [], None)
            assert reply.status == 200 and await body_of(reply) == b""
            assert dict(reply.headers)["content-length"] == "1000"
        await client.aclose()

    run(go())
    assert server.connections == 2
