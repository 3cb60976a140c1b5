"""The naive peer: Starlette forwarding every request to the upstream through one shared aiohttp session.

No plugins, no routing table, no checks: what a hand-written Python proxy costs, so the
gateway's full chain can be compared with it in the same run (``python -m bench --peers``).
The upstream is ``BENCH_UPSTREAM_URL``; the bench path is forwarded to ``/items``.
"""

from __future__ import annotations

import contextlib
import os

import aiohttp
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

UPSTREAM = os.environ.get("BENCH_UPSTREAM_URL", "http://127.0.0.1:8080")
session: aiohttp.ClientSession | None = None


@contextlib.asynccontextmanager
async def lifespan(app):
    global session
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    yield
    await session.close()


async def forward(request):
    assert session is not None
    async with session.get(UPSTREAM + "/items") as upstream:
        body = await upstream.read()
        return Response(body, upstream.status, media_type=upstream.headers.get("content-type"))


async def health(request):
    return Response('{"status":"ok"}', media_type="application/json")


app = Starlette(
    routes=[Route("/api/gateway/bench/items", forward), Route("/api/gateway/health", health)],
    lifespan=lifespan,
)
