"""Hostile clients against the real gateway process: oversized and slow heads, slow bodies, idle connections.

Every assertion is about the outcome (a 408/414/431/503 envelope, a closed connection, bytes that were
never accepted); the timeouts in here only keep a failing test from hanging.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import orjson
import pytest

from tests.gateway_process import GatewayProcess
from tests.servers import serve, write_config
from tests.upstream_app import Recorder, echo_app

SHORT = "server: {header_timeout: 1s, body_timeout: 1s, keep_alive_timeout: 1s, max_head_bytes: 16384, max_request_line: 4096}\n"
GUARD = 20.0  # seconds a failing test may wait before it gives up


def _routes(backend: str, upstream: str, total: str) -> str:
    return f"""
backend: {backend}
prefix: /{backend}
upstream: {{url: "{upstream}", timeout: {total}}}
routes:
  - {{name: echo, method: GET, path: /echo, upstream_path: /echo}}
  - name: buffered
    method: POST
    path: /buffered
    upstream_path: /echo
    request:
      body: {{wrapped: "{{{{ body }}}}"}}
  - {{name: stream, method: POST, path: /stream, upstream_path: /upload}}
"""


def start_gateway(root: Path, *args: str) -> tuple[str, int, subprocess.Popen]:
    """Its output goes to a file beside the config (a pipe nobody reads would block a chatty server)."""
    gateway = GatewayProcess(
        root, root.parent / f"{root.name}-gateway.log", args=["--log-level", "warning", *args]
    ).start(GUARD)
    assert gateway.proc is not None
    return gateway.base, gateway.port, gateway.proc


@pytest.fixture(scope="module")
def module_upstream():
    with serve(echo_app(Recorder())) as url:
        yield url


@pytest.fixture(scope="module")
def gateway_short(tmp_path_factory, module_upstream):
    """Timeouts of 1 s; backend ``b`` has a 2 s total, backend ``s`` a 30 s one."""
    root = write_config(
        tmp_path_factory.mktemp("short"),
        "version: 1\nbase_path: /api\nplugins: [envelope]\n" + SHORT,
        {"b": _routes("b", module_upstream, "2s"), "s": _routes("s", module_upstream, "30s")},
    )
    _, port, proc = start_gateway(root)
    yield port
    proc.terminate()
    proc.wait(15)


@pytest.fixture(scope="module")
def gateway_default(tmp_path_factory, module_upstream):
    root = write_config(
        tmp_path_factory.mktemp("default"),
        "version: 1\nbase_path: /api\nplugins: [envelope]\n",
        {"b": _routes("b", module_upstream, "30s")},
    )
    _, port, proc = start_gateway(root)
    yield port, proc.pid
    proc.terminate()
    proc.wait(15)


async def read_all(reader: asyncio.StreamReader, guard: float = GUARD) -> bytes:
    """Everything the server sends until it closes the connection (the guard only stops a hang)."""
    data = b""
    async with asyncio.timeout(guard):
        try:
            while chunk := await reader.read(65536):
                data += chunk
        except ConnectionError:  # cut while we were still sending: what arrived before still counts
            data += bytes(reader._buffer)
    return data


def parse(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


def assert_envelope(raw: bytes, status: int, code: str) -> None:
    got, headers, body = parse(raw)
    assert got == status, raw[:500]
    assert headers["content-type"] == "application/json"
    assert headers.get("connection") == "close"
    doc = orjson.loads(body)
    assert doc["success"] is False and doc["error"]["code"] == code
    assert doc["meta"]["requestId"] and doc["meta"]["timestamp"].endswith("Z")


async def send_until_refused(port: int, first: bytes, filler: bytes, most: int) -> tuple[int, bytes]:
    """Send ``first`` then ``filler`` over and over until the server refuses; (bytes it took, its answer)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    sent = 0
    try:
        writer.write(first)
        sent += len(first)
        while sent < most:
            writer.write(filler)
            sent += len(filler)
            try:
                async with asyncio.timeout(GUARD):
                    await writer.drain()
                await asyncio.sleep(0)  # lets the answer, if any, be read
            except ConnectionError:
                break
            if reader.at_eof() or reader._buffer:  # the server answered: stop sending
                break
        answer = await read_all(reader)
    finally:
        writer.close()
    return sent, answer


# -- D5: oversized heads cost bounded memory, refused while they are read -------------------------------


async def test_an_endless_request_line_is_refused_while_it_is_read(gateway_default):
    port, pid = gateway_default
    rss_before = _rss_mb(pid)
    sent, answer = await send_until_refused(port, b"GET /", b"a" * 65536, 64 * 1024 * 1024)
    assert_envelope(answer, 414, "URI_TOO_LONG")
    assert sent < 16 * 1024 * 1024  # refused after its cap, not after the whole line (kernel buffers hold the rest)
    assert _rss_mb(pid) - rss_before < 32  # today +2 bytes of memory per byte of line


async def test_endless_headers_are_refused_while_they_are_read(gateway_default):
    port, _ = gateway_default
    sent, answer = await send_until_refused(
        port, b"GET /api/health HTTP/1.1\r\nhost: x\r\nx-a: ", b"b" * 65536, 64 * 1024 * 1024
    )
    assert_envelope(answer, 431, "HEADERS_TOO_LARGE")
    assert sent < 16 * 1024 * 1024


async def test_many_short_header_lines_are_refused_while_they_are_read(gateway_default):
    port, _ = gateway_default
    sent, answer = await send_until_refused(
        port, b"GET /api/health HTTP/1.1\r\nhost: x\r\n", b"x-a: b\r\n" * 8192, 64 * 1024 * 1024
    )
    assert_envelope(answer, 431, "HEADERS_TOO_LARGE")
    assert sent < 16 * 1024 * 1024


async def test_50k_repeats_of_one_header_get_431_and_the_gateway_keeps_serving(gateway_default):
    port, _ = gateway_default
    head = b"GET /api/health HTTP/1.1\r\nhost: x\r\n" + b"x-repeated: value\r\n" * 50_000 + b"\r\n"

    async def hostile() -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(head)
        try:
            await writer.drain()
        except ConnectionError:
            pass
        answer = await read_all(reader)
        writer.close()
        return answer

    async def innocent() -> int:
        async with httpx.AsyncClient(timeout=GUARD) as client:
            return (await client.get(f"http://127.0.0.1:{port}/api/health")).status_code

    answers = await asyncio.gather(hostile(), innocent(), hostile(), innocent())
    assert_envelope(answers[0], 431, "HEADERS_TOO_LARGE")
    assert_envelope(answers[2], 431, "HEADERS_TOO_LARGE")
    assert answers[1] == answers[3] == 200


async def test_a_complete_head_with_a_long_target_in_one_packet_is_414(gateway_default):
    port, _ = gateway_default
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /api/" + b"a" * 9000 + b" HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n\r\nabc")
    answer = await read_all(reader)
    writer.close()
    assert_envelope(answer, 414, "URI_TOO_LONG")


async def test_heads_under_the_caps_still_work_and_keep_alive(gateway_default):
    port, _ = gateway_default
    async with httpx.AsyncClient(timeout=GUARD) as client:
        long_target = await client.get(f"http://127.0.0.1:{port}/api/b/echo", params={"q": "a" * 7000})
        big_headers = await client.get(f"http://127.0.0.1:{port}/api/b/echo", headers={"x-big": "b" * 30000})
        repeated = await client.get(
            f"http://127.0.0.1:{port}/api/b/echo", headers=[("x-r", str(i)) for i in range(500)]
        )
    assert long_target.status_code == 200 and long_target.json()["data"]["query"] == "q=" + "a" * 7000
    assert big_headers.status_code == 200
    assert repeated.status_code == 200


def test_repeated_header_names_are_joined_in_linear_time():
    """200k repeats: a join per repeat would copy ~2 TB and never finish; one join at the end is instant."""
    script = textwrap.dedent("""
        from gateway_engine.foundation.context import RequestContext
        n = 200_000
        scope = {"method": "GET", "path": "/", "headers": [(b"x-r", b"%0100d" % i) for i in range(n)]}
        ctx = RequestContext(scope, None, None, {}, "")
        assert ctx.headers["x-r"] == ", ".join("%0100d" % i for i in range(n))
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert out.stdout.strip() == "ok", out.stderr[-2000:]


# -- D10: slow clients -------------------------------------------------------------------------------


async def test_half_sent_heads_and_silent_connections_are_closed_after_the_header_timeout(gateway_short):
    port = gateway_short
    half = []
    for _ in range(200):  # each sends its half head as it connects: the server's 1 s runs from the connection
        # on, and 250 connects on a loaded machine took longer than that, so a connection whose bytes were
        # still to be written after the loop was closed as a silent one (seen once: b"" for one of 200)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /api/b/echo HTTP/1.1\r\nhost: x\r\nx-a: ")
        await writer.drain()
        half.append((reader, writer))
    silent = [await asyncio.open_connection("127.0.0.1", port) for _ in range(50)]
    answers = await asyncio.gather(*(read_all(reader) for reader, _ in half + silent))
    for _, writer in half + silent:
        writer.close()
    for answer in answers[:200]:
        assert_envelope(answer, 408, "REQUEST_TIMEOUT")
    assert answers[200:] == [b""] * 50  # never sent a byte: closed without an answer


async def test_a_head_trickled_one_byte_at_a_time_is_cut_off(gateway_short):
    port = gateway_short
    head = b"GET /api/b/echo HTTP/1.1\r\nhost: x\r\n" + b"x-a: b\r\n" * 40 + b"\r\n"
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    sent = 0
    try:
        async with asyncio.timeout(GUARD * 3):
            while sent < len(head) and not reader.at_eof() and not reader._buffer:
                writer.write(head[sent : sent + 1])
                sent += 1
                await asyncio.sleep(0.3)
        answer = await read_all(reader)
    except ConnectionError:
        answer = b""
    finally:
        writer.close()
    assert sent < len(head)
    assert_envelope(answer, 408, "REQUEST_TIMEOUT")


async def _trickle_body(
    port: int, path: str, length: int, pause: float, stop_after: int | None = None
) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        f"content-length: {length}\r\n\r\n".encode()
    )
    body = b'"' + b"a" * (length - 2) + b'"'
    sent = 0
    try:
        async with asyncio.timeout(GUARD * 3):
            while sent < length and not reader.at_eof() and not reader._buffer:
                if stop_after is None or sent < stop_after:
                    writer.write(body[sent : sent + 1])
                    sent += 1
                await asyncio.sleep(pause)
        answer = await read_all(reader)
    except ConnectionError:
        answer = b""
    finally:
        writer.close()
    return sent, answer


async def test_a_slow_body_to_a_buffering_route_gets_408_at_the_routes_total_timeout(gateway_short):
    # a byte every 0.3 s never trips the 1 s body timeout; the route's 2 s total bounds the read
    sent, answer = await _trickle_body(gateway_short, "/api/b/buffered", 200, 0.3)
    assert sent < 200
    assert_envelope(answer, 408, "REQUEST_TIMEOUT")
    assert b"did not arrive within 2s" in answer  # the route's deadline, not the server's pause limit


@pytest.mark.parametrize("path", ["/api/s/buffered", "/api/s/stream"])
async def test_a_stalled_body_gets_408_after_the_body_timeout(gateway_short, path):
    sent, answer = await _trickle_body(gateway_short, path, 100, 0.05, stop_after=10)
    assert sent == 10
    assert_envelope(answer, 408, "REQUEST_TIMEOUT")
    assert b"paused for more than 1s" in answer


async def test_a_body_sent_in_time_is_not_cut(gateway_short):
    port = gateway_short
    async with httpx.AsyncClient(timeout=GUARD) as client:
        r = await client.post(f"http://127.0.0.1:{port}/api/s/buffered", json="x" * 100_000)
    assert r.status_code == 200


async def test_an_idle_keep_alive_connection_is_closed(gateway_short):
    port = gateway_short
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /api/b/echo HTTP/1.1\r\nhost: x\r\n\r\n")
    answer = await read_all(reader)  # the keep-alive timeout closes it after the answer
    writer.close()
    assert parse(answer)[0] == 200


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


@pytest.fixture(scope="module")
def gateway_small(tmp_path_factory, module_upstream):
    root = write_config(
        tmp_path_factory.mktemp("small"),
        "version: 1\nbase_path: /api\nplugins: [envelope]\n"
        "server: {header_timeout: 60s, max_pending_heads: 10, max_connections: 5}\n",
        {"b": _routes("b", module_upstream, "30s")},
    )
    _, port, proc = start_gateway(root)
    yield port
    proc.terminate()
    proc.wait(15)


async def test_past_max_pending_heads_the_oldest_are_closed_and_past_max_connections_503(gateway_small):
    port = gateway_small
    silent = [await asyncio.open_connection("127.0.0.1", port) for _ in range(30)]
    closed = await asyncio.gather(*(read_all(reader) for reader, _ in silent[:20]))
    assert closed == [b""] * 20  # the 20 oldest, closed as newer ones arrived
    await asyncio.sleep(0.2)
    assert not any(reader.at_eof() for reader, _ in silent[20:])  # the 10 newest wait for their header timeout

    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /api/b/echo HTTP/1.1\r\nhost: x\r\n\r\n")
    answer = await read_all(reader)
    writer.close()
    assert_envelope(answer, 503, "SERVER_BUSY")  # 9 or 10 silent ones plus this one: over 5

    for _, w in silent:
        w.close()
    async with httpx.AsyncClient(timeout=GUARD) as client:
        async with asyncio.timeout(GUARD):
            while (await client.get(f"http://127.0.0.1:{port}/api/b/echo")).status_code != 200:
                await asyncio.sleep(0.1)  # until the server has seen the silent ones go


async def test_invalid_http_is_a_400_envelope(gateway_default):
    port, _ = gateway_default
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nhost: x\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nab")
    answer = await read_all(reader)
    writer.close()
    assert_envelope(answer, 400, "BAD_REQUEST")


async def test_pipelined_requests_are_all_answered(gateway_default):
    port, _ = gateway_default
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    one = b"POST /api/b/stream HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\nhello"
    writer.write(one * 3 + b"GET /api/b/echo HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
    answer = await read_all(reader)
    writer.close()
    assert answer.count(b"HTTP/1.1 200 OK") == 4


def test_server_settings_defaults_and_derived_head_cap(tmp_path):
    from gateway_engine.compiled.compiler import load_config
    from gateway_engine.config.server_settings import ServerSettings
    from gateway_engine.foundation.errors import ConfigErrors

    plain = load_config(write_config(tmp_path / "a", "version: 1\n", {}), {})
    assert plain.server == ServerSettings(
        header_timeout=10.0,
        body_timeout=30.0,
        keep_alive_timeout=5.0,
        max_connections=4096,
        max_pending_heads=1000,
        max_head_bytes=65536,
        max_request_line=8192,
    )
    big = load_config(
        write_config(
            tmp_path / "b",
            "version: 1\nlimits: {header_bytes: 100000}\nserver: {header_timeout: 500ms, max_request_line: 1000}\n",
            {},
        ),
        {},
    )
    assert big.server.max_head_bytes == 101000 and big.server.header_timeout == 0.5
    with pytest.raises(ConfigErrors) as bad:
        load_config(write_config(tmp_path / "c", "version: 1\nserver: {body_timeout: 0s}\n", {}), {})
    assert "server.body_timeout" in str(bad.value.errors[0])
    with pytest.raises(ConfigErrors):
        load_config(write_config(tmp_path / "d", "version: 1\nserver: {read_timeout: 1s}\n", {}), {})


def test_serve_hands_the_settings_to_uvicorn_and_its_workers(tmp_path, monkeypatch):
    import os

    import uvicorn

    from gateway_engine.cli.main import run
    from gateway_engine.config.server_settings import ENV_VAR, ServerSettings
    from gateway_engine.runtime.protocol import GatewayHttpProtocol

    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: seen.update(kwargs))
    for name in (ENV_VAR, "GATEWAY_CONFIG", "GATEWAY_WATCH", "GATEWAY_DRAIN_TIMEOUT"):
        monkeypatch.setenv(name, "")  # recorded, so what `serve` sets is undone after the test
        monkeypatch.delenv(name)
    root = write_config(tmp_path / "s", "version: 1\nserver: {keep_alive_timeout: 2s, max_connections: 77}\n", {})
    assert run(["serve", "--config", str(root), "--no-watch"]) == 0
    assert seen["http"] is GatewayHttpProtocol
    assert seen["timeout_keep_alive"] == 2.0 and seen["limit_concurrency"] == 77
    assert ServerSettings.from_env(os.environ).max_connections == 77


@pytest.fixture
def gateway_two_workers(tmp_path, module_upstream):
    root = write_config(
        tmp_path / "w",
        "version: 1\nbase_path: /api\nserver: {header_timeout: 1s}\n",
        {"b": _routes("b", module_upstream, "30s")},
    )
    _, port, proc = start_gateway(root, "--workers", "2")
    yield port
    proc.terminate()
    proc.wait(15)


async def test_every_worker_enforces_the_settings(gateway_two_workers):
    # fresh connections, so the kernel spreads them over both workers
    half = [await asyncio.open_connection("127.0.0.1", gateway_two_workers) for _ in range(20)]
    for _, writer in half:
        writer.write(b"GET /api/health HTTP/1.1\r\nhost: x\r\n")
    answers = await asyncio.gather(*(read_all(reader) for reader, _ in half))
    for _, writer in half:
        writer.close()
    for answer in answers:
        assert_envelope(answer, 408, "REQUEST_TIMEOUT")
