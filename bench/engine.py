"""``python -m bench.engine``: the engine's own cost per request, in process, with a stub upstream.

No sockets, no uvicorn: the bench config is loaded, every upstream is replaced by a
transport that answers the nginx body at once, and the ASGI app is called directly. What
is left is routing, the plugin chain, the proxy's request building and the metrics,
which is what a change to them moves. The figure is the best (and the median) of
batches of 2,000 requests, since the fastest batch is the one least disturbed by the
machine. For a figure that does not depend on the machine at all, count instructions:
``valgrind --tool=callgrind python -m bench.engine --requests N`` for two values of N;
the difference of the totals over the difference of N is the instructions per request.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time

import uvloop

from gateway_engine import create_app
from gateway_engine.foundation.reply import Reply

from .__main__ import CONFIGS, PATHS, headers_for
from .ceiling import BODY as _TEXT

#: what the engine can run in process (a stored key needs the store that `python -m bench` issues it into)
MEASURED = tuple(c for c in PATHS if c != "full-stored")

BODY = _TEXT.encode()
_UPSTREAM_HEADERS = [
    ("server", "nginx"),
    ("date", "Mon, 23 Nov 2026 19:00:00 GMT"),
    ("content-type", "application/json"),
    ("content-length", str(len(BODY))),
    ("connection", "keep-alive"),
]
_BATCH = 2000
CONFIG_NAMES = ("bare", "full", "full-jwt")


class StubTransport:
    """Answers every request with the benchmark upstream's body, without I/O."""

    async def send(self, method, url, headers, body) -> Reply:
        return Reply(200, list(_UPSTREAM_HEADERS), BODY, from_upstream=True)

    async def aclose(self) -> None:
        pass


async def measure(config: str, requests: int) -> tuple[float, float]:
    """(best, median) microseconds per request over batches of 2,000, after a warm-up batch."""
    with tempfile.TemporaryDirectory(prefix="gateway-engine-bench-") as tmp:
        env = {
            "BENCH_LOG_FILE": os.path.join(tmp, "gateway.log"),
            "BENCH_API_KEY": "k" * 32,
            "BENCH_JWT_SECRET": "s" * 32,
            "BENCH_UPSTREAM_URL": "http://127.0.0.1:9",
        }
        return await measure_app(str(CONFIGS / config), env, PATHS[config], headers_for(config, env), requests)


async def measure_app(
    root: str, env: dict[str, str], path: str, extra: dict[str, str], requests: int, *, cpu: bool = False
) -> tuple[float, float]:
    """(best, median) microseconds per GET of ``path`` on the config at ``root``, every upstream stubbed.

    ``cpu``: the process's CPU time instead of the wall clock, so that work a request leaves to a
    thread (an outbox batch) counts too; each batch then ends by giving the loop 30 ms for it."""
    app = create_app(root, env)
    for upstream in app.config.upstreams:  # the routes' and the aggregated calls' alike
        object.__setattr__(upstream, "transport", StubTransport())
    lifespan: asyncio.Queue = asyncio.Queue()
    started = asyncio.get_running_loop().create_future()
    await lifespan.put({"type": "lifespan.startup"})

    async def lifespan_send(message: dict) -> None:
        if not started.done():
            started.set_result(message["type"])

    runner = asyncio.ensure_future(app({"type": "lifespan"}, lifespan.get, lifespan_send))
    if await started != "lifespan.startup.complete":
        raise SystemExit(f"{root}: the gateway did not start")
    headers = [(b"host", b"127.0.0.1:8080")]
    headers += [(k.lower().encode(), v.encode()) for k, v in extra.items()]
    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8080),
    }
    statuses: list[int] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    clock = time.process_time if cpu else time.perf_counter
    batches = []
    for n in range(1 + max(1, requests // _BATCH)):
        began = clock()
        for _ in range(_BATCH):
            await app(dict(scope), receive, send)
        if cpu:
            await asyncio.sleep(0.03)
        if n:  # the first batch warms up
            batches.append((clock() - began) / _BATCH * 1e6)
    if set(statuses) != {200}:
        raise SystemExit(f"{path}: answers other than 200: {sorted(set(statuses))}")
    await lifespan.put({"type": "lifespan.shutdown"})
    await runner
    return min(batches), statistics.median(batches)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.engine", description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=40_000, help="measured requests per config (default 40,000)")
    p.add_argument(
        "configs", nargs="*", metavar="{bare,full,full-jwt,aggregate}", help="configs to measure (default: all four)"
    )
    args = p.parse_args(argv)
    unknown = set(args.configs) - set(MEASURED)
    if unknown:
        p.error(f"unknown config(s): {', '.join(sorted(unknown))}; choose from {', '.join(MEASURED)}")
    for config in args.configs or list(MEASURED):
        best, median = uvloop.run(measure(config, args.requests))
        print(f"{config:<9} best {best:6.1f} µs/request, median {median:6.1f} µs/request", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
