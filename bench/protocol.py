"""``python -m bench.protocol``: the server protocol's own cost per request, in process, stock against the gateway's.

A keep-alive connection of uvicorn's httptools protocol and of ``GatewayHttpProtocol`` (head caps,
slow-client deadlines) is fed the bench's GET request over and over, through a transport that
drops what it is sent, to an ASGI app that answers at once. Everything else a request costs (the
socket, the gateway's app) is left out, so the difference of the two figures is what the
protocol's checks cost. Figures are the best of batches, as in ``bench.engine``. For a count that
does not depend on the machine's load: ``valgrind --tool=callgrind python -m bench.protocol --only
gateway --rounds 1 --requests N`` for two values of N; the difference of the totals over the
difference of N is the instructions per request.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from typing import Any

import uvloop
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from gateway_engine.runtime.protocol import GatewayHttpProtocol

from .__main__ import PATH

REQUEST = (
    f"GET {PATH} HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: wrk\r\n"
    "x-api-key: kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk\r\nOrigin: http://localhost:5000\r\n\r\n"
).encode()
PROTOCOLS: dict[str, type[HttpToolsProtocol]] = {"stock": HttpToolsProtocol, "gateway": GatewayHttpProtocol}
_BATCH = 2000


class NullTransport(asyncio.Transport):
    """Accepts and drops every write; counts the answers (the writes that begin with a status line: the stock
    protocol writes a head and then its body, the gateway's writes them together)."""

    def __init__(self) -> None:
        super().__init__()
        self.closing = False
        self.writes = 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8080), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def write(self, data: Any) -> None:
        if data.startswith(b"HTTP/1.1 "):
            self.writes += 1

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def app(scope: dict, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"{}"})


async def measure(protocol: type[HttpToolsProtocol], requests: int) -> tuple[float, float]:
    """(best, median) microseconds per request over batches, after a warm-up batch."""
    config = Config(app, http=protocol, lifespan="off", log_level="warning", access_log=False, proxy_headers=False)
    config.load()
    proto = protocol(config, ServerState(), {}, asyncio.get_running_loop())
    transport = NullTransport()
    proto.connection_made(transport)
    batches = []
    for n in range(1 + max(1, requests // _BATCH)):
        began = time.perf_counter()
        for _ in range(_BATCH):
            proto.data_received(REQUEST)
            await asyncio.sleep(0)  # the request's task answers
        if n:
            batches.append((time.perf_counter() - began) / _BATCH * 1e6)
    answered = transport.writes
    if transport.closing or answered != (len(batches) + 1) * _BATCH:
        raise SystemExit(f"{protocol.__name__}: {answered} answers, closed={transport.closing}")
    proto.connection_lost(None)
    return min(batches), statistics.median(batches)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.protocol", description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=40_000, help="measured requests per protocol (default 40,000)")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds of both protocols (default 3)")
    p.add_argument("--only", choices=sorted(PROTOCOLS), help="measure one protocol (for callgrind, see below)")
    args = p.parse_args(argv)
    names = [args.only] if args.only else list(PROTOCOLS)
    best: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(args.rounds):
        for name in names:
            best[name].append(uvloop.run(measure(PROTOCOLS[name], args.requests))[0])
    for name, values in best.items():
        print(f"{name:<8} best {min(values):6.2f} µs/request", flush=True)
    if not args.only:
        print(f"gateway - stock = {min(best['gateway']) - min(best['stock']):+.2f} µs/request")
    return 0


if __name__ == "__main__":
    sys.exit(main())
