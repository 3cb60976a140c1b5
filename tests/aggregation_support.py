"""Fake backends for the aggregation tests: each a real HTTP server answering by path, optionally slowly.

Every backend records the requests it got (path, query, headers), so a test proves what went over
the wire: which credentials each backend saw, in which order the calls arrived.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


class Backend:
    """Answers ``answers[path] = (status, json body, delay seconds, headers)``; anything else is a 404."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.answers: dict[str, tuple[int, Any, float, dict[str, str]]] = {}

    def answer(
        self, path: str, body: Any, *, status: int = 200, delay: float = 0.0, headers: dict | None = None
    ) -> None:
        self.answers[path] = (status, body, delay, headers or {})

    def reset(self) -> None:
        self.requests.clear()
        self.answers.clear()

    def app(self) -> Starlette:
        async def any_path(request: Request) -> Response:
            entry = {
                "path": request.url.path,
                "query": request.scope["query_string"].decode("latin-1"),
                "headers": {k.decode("latin-1"): v.decode("latin-1") for k, v in request.scope["headers"]},
                "started": time.monotonic(),
            }
            self.requests.append(entry)
            status, body, delay, headers = self.answers.get(request.url.path, (404, {"error": "no such path"}, 0.0, {}))
            if delay:
                await asyncio.sleep(delay)
            entry["finished"] = time.monotonic()
            return JSONResponse(body, status_code=status, headers=headers)

        return Starlette(routes=[Route("/{path:path}", any_path, methods=["GET", "POST", "PUT", "PATCH", "DELETE"])])


def backend_file(name: str, url: str, auth: str, timeout: str = "5s", extra: str = "") -> str:
    """A routes.d file for backend ``name`` (one route of its own, so it is a real backend of the deployment);
    ``extra``: more upstream keys, e.g. ``circuit_breaker: {failures: 2}``."""
    return (
        f"backend: {name}\nprefix: /{name}\n"
        f"upstream: {{url: '{url}', auth: {auth}, timeout: {timeout}{', ' + extra if extra else ''}}}\n"
        "routes:\n  - {name: ping, method: GET, path: /ping}\n"
    )
