"""The gateway's own HTTP/1.1 client against a raw socket server that scripts awkward upstreams."""

from __future__ import annotations

import asyncio
import socket
import threading

import pytest

from gateway_engine.foundation.errors import GatewayError
from gateway_engine.upstreams.http1 import Http1Transport
from gateway_engine.upstreams.seam import Timeouts


class ScriptedServer:
    """Accepts connections; for each request on a connection calls ``script(request_bytes, nth)``
    which returns the raw bytes to answer and whether to close afterwards."""

    def __init__(self, script):
        self.script = script
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.requests: list[bytes] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        buf = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head, _, rest = buf.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                while len(rest) < length:
                    rest += conn.recv(65536)
                if b"transfer-encoding: chunked" in head.lower():
                    while not rest.endswith(b"0\r\n\r\n"):
                        rest += conn.recv(65536)
                    length = len(rest)
                self.requests.append(head + b"\r\n\r\n" + rest[:length])
                buf = rest[length:]
                answer, close = self.script(self.requests[-1], len(self.requests))
                conn.sendall(answer)
                if close:
                    return

    def close(self):
        self.sock.close()


def ok(body: bytes = b'{"ok":true}', extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%b\r\n%b" % (
        len(body),
        extra,
        body,
    )


def run(coro):
    return asyncio.run(coro)


@pytest.fixture
def transport():
    return Http1Transport(timeouts=Timeouts(connect=2, read=2, total=3), max_connections=4)


def test_http1_reuses_keep_alive_connections(transport):
    server = ScriptedServer(lambda req, n: (ok(), False))

    async def go():
        for _ in range(5):
            reply = await transport.send("GET", f"http://127.0.0.1:{server.port}/x", [("accept", "*/*")], None)
            assert reply.status == 200 and reply.body == b'{"ok":true}'
        await transport.aclose()

    run(go())
    assert server.connections == 1
    assert server.requests[0].startswith(b"GET /x HTTP/1.1\r\nhost: 127.0.0.1:")


def test_http1_one_connection_carries_chunked_sized_and_error_answers_in_turn(transport):
    chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    missing = b"HTTP/1.1 404 Not Found\r\ncontent-length: 9\r\nx-extra: 1\r\n\r\nnot found"
    server = ScriptedServer(lambda req, n: ([chunked, ok(), missing][(n - 1) % 3], False))

    async def go():
        seen = []
        for _ in range(6):
            reply = await transport.send("GET", f"http://127.0.0.1:{server.port}/x", [], None)
            body = b"".join([c async for c in reply.stream]) if reply.stream is not None else reply.body
            seen.append((reply.status, body, dict(reply.headers).get("x-extra")))
        await transport.aclose()
        return seen

    seen = run(go())
    assert seen == [(200, b"abc", None), (200, b'{"ok":true}', None), (404, b"not found", "1")] * 2
    assert server.connections == 1  # the parser started over cleanly after every kind of answer


def test_http1_request_target_and_host_come_from_the_url(transport):
    server = ScriptedServer(lambda req, n: (ok(), False))

    async def go():
        await transport.send("GET", f"http://127.0.0.1:{server.port}?q=1", [], None)
        await transport.send("GET", f"http://user:secret@127.0.0.1:{server.port}/a/b?c=d#fragment", [], None)
        await transport.aclose()

    run(go())
    first, second = (r.split(b"\r\n")[:2] for r in server.requests)
    assert first == [b"GET /?q=1 HTTP/1.1", b"host: 127.0.0.1:%d" % server.port]
    assert second == [b"GET /a/b?c=d HTTP/1.1", b"host: 127.0.0.1:%d" % server.port]  # no userinfo, no fragment


def test_http1_connection_close_is_not_reused(transport):
    server = ScriptedServer(lambda req, n: (ok(extra=b"connection: close\r\n"), True))

    async def go():
        for _ in range(3):
            assert (await transport.send("GET", f"http://127.0.0.1:{server.port}/", [], None)).status == 200
        await transport.aclose()

    run(go())
    assert server.connections == 3


def test_http1_stale_pooled_connection_is_retried_once_on_a_fresh_one(transport):
    # the server hangs up on the second request without answering: the pooled connection was dead
    server = ScriptedServer(lambda req, n: (b"", True) if n == 2 else (ok(), False))

    async def go():
        assert (await transport.send("GET", f"http://127.0.0.1:{server.port}/a", [], None)).status == 200
        assert (await transport.send("GET", f"http://127.0.0.1:{server.port}/b", [], None)).status == 200
        await transport.aclose()

    run(go())
    assert server.connections == 2 and len(server.requests) == 3  # /b went out twice: once on the dead one


def test_http1_chunked_response_streams_and_interim_100_is_skipped(transport):
    chunked = (
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-type: text/plain\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    )
    server = ScriptedServer(lambda req, n: (chunked, False))

    async def go():
        reply = await transport.send("GET", f"http://127.0.0.1:{server.port}/", [], None)
        body = b"".join([c async for c in reply.stream]) if reply.stream is not None else reply.body
        assert reply.status == 200 and body == b"hello world"
        await transport.aclose()

    run(go())


def test_http1_head_answer_with_length_has_no_body(transport):
    server = ScriptedServer(lambda req, n: (b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n", False))

    async def go():
        reply = await transport.send("HEAD", f"http://127.0.0.1:{server.port}/", [], None)
        assert reply.status == 200 and (reply.body or b"") == b""
        assert dict(reply.headers)["content-length"] == "1000"
        await transport.aclose()

    run(go())


def test_http1_streamed_request_body_is_chunked(transport):
    server = ScriptedServer(lambda req, n: (ok(), False))

    async def body():
        yield b"abc"
        yield b"defg"

    async def go():
        assert (
            await transport.send("POST", f"http://127.0.0.1:{server.port}/u", [("content-type", "text/plain")], body())
        ).status == 200
        await transport.aclose()

    run(go())
    assert server.requests[0].endswith(b"\r\n\r\n3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n")
    assert b"transfer-encoding: chunked" in server.requests[0]


def test_http1_truncated_response_is_an_upstream_error(transport):
    server = ScriptedServer(lambda req, n: (b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nshort", True))

    async def go():
        with pytest.raises(GatewayError) as info:
            reply = await transport.send("GET", f"http://127.0.0.1:{server.port}/", [], None)
            if reply.stream is not None:
                async for _ in reply.stream:
                    pass
        assert info.value.code == "UPSTREAM_ERROR"
        await transport.aclose()

    run(go())


def test_http1_garbage_response_is_an_upstream_error(transport):
    server = ScriptedServer(lambda req, n: (b"SSH-2.0-OpenSSH\r\n\r\n", True))

    async def go():
        with pytest.raises(GatewayError) as info:
            await transport.send("GET", f"http://127.0.0.1:{server.port}/", [], None)
        assert info.value.code == "UPSTREAM_ERROR" and info.value.status == 502  # bytes came: never "unavailable"
        await transport.aclose()

    run(go())


def test_http1_header_values_with_line_breaks_are_refused(transport):
    async def go():
        with pytest.raises(GatewayError) as info:
            await transport.send("GET", "http://127.0.0.1:9/", [("x-evil", "a\r\nx-injected: 1")], None)
        assert info.value.status == 400

    run(go())
