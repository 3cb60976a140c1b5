"""Fakes of the real backends and the shipped default deployment, for contract tests.

A fake is a Starlette app on a real 127.0.0.1 port. Like the real API it refuses
a request that lacks the credentials the backend requires, records every request
(method, raw path, query, headers, body) and answers in the backend's own format,
so a test proves the wire format the shipped ``routes.d/*.yaml`` produce.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.servers import serve

ROOT = Path(__file__).resolve().parents[2]
SERVICE_KEY = "svc-key-0f4c2a9e7b1d"  # the platform's service key (PAYLOAD_API_KEY)
JWT_SECRET = "jwt-secret-for-tests-0123456789abcdef"
# gateway-side variables of the shipped gateway.yaml; each test adds its backend's
GATEWAY_ENV = {
    "PAYLOAD_API_KEY": SERVICE_KEY,
    "JWT_SECRET": JWT_SECRET,
    "STOREFRONT_URL_DEV": "https://dev.city.example",
    "STOREFRONT_URL_LOCAL": "http://localhost:5000",
}

Handler = Callable[[Request, "Recorded"], Awaitable[Response]]


class Recorded(dict):
    """One request as the fake received it."""

    @property
    def json(self) -> Any:
        return json.loads(self["body"])

    @property
    def form(self) -> dict[str, str]:
        assert self["headers"].get("content-type", "").startswith("application/x-www-form-urlencoded"), self["headers"]
        return dict(parse_qsl(self["body"].decode(), keep_blank_values=True))

    @property
    def args(self) -> dict[str, str]:
        return dict(parse_qsl(self["query"], keep_blank_values=True))


class FakeBackend:
    """Routes of a fake backend. ``authorized(headers)`` is checked first; ``denied`` is its 401 answer."""

    def __init__(self, authorized: Callable[[dict[str, str]], bool], denied: Response) -> None:
        self.authorized = authorized
        self.denied = denied
        self.requests: list[Recorded] = []
        self._routes: list[Route] = []

    def route(self, path: str, *methods: str) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            async def endpoint(request: Request) -> Response:
                entry = Recorded(
                    method=request.method,
                    path=unquote(request.scope["raw_path"].decode()),
                    raw_path=request.scope["raw_path"].decode(),
                    query=request.scope["query_string"].decode(),
                    headers={k.decode(): v.decode() for k, v in request.scope["headers"]},
                    raw_headers=[(k.decode(), v.decode()) for k, v in request.scope["headers"]],
                    body=await request.body(),
                )
                self.requests.append(entry)
                if not self.authorized(entry["headers"]):
                    return self.denied
                return await handler(request, entry)

            self._routes.append(Route(path, endpoint, methods=list(methods)))
            return handler

        return register

    @property
    def last(self) -> Recorded:
        return self.requests[-1]

    @contextlib.contextmanager
    def serve(self) -> Iterator[str]:
        with serve(Starlette(routes=self._routes)) as url:
            yield url


def json_answer(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(value, status_code=status, headers=headers)


def start(gateway: Any, backend: str, env: dict[str, str]) -> httpx.Client:
    """Serve the shipped gateway.yaml and ``routes.d/<backend>.yaml``; a client sending the service key."""
    routes = {backend: (ROOT / "routes.d" / f"{backend}.yaml").read_text()}
    base = gateway((ROOT / "gateway.yaml").read_text(), routes, {**GATEWAY_ENV, **env})
    return httpx.Client(base_url=base + "/api/gateway", headers={"x-api-key": SERVICE_KEY}, timeout=15)


def ok(response: httpx.Response, source: str, status: int = 200) -> Any:
    """The envelope's data after checking the success envelope."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is True, body
    assert body["meta"]["source"] == source
    assert body["meta"]["requestId"] == response.headers["x-request-id"]
    assert body["meta"]["timestamp"].endswith("Z")
    return body["data"]


def failed(response: httpx.Response, source: str, status: int, code: str) -> dict[str, Any]:
    """The envelope's error after checking the error envelope."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is False and body["error"]["code"] == code, body
    assert body["meta"]["source"] == source
    return body["error"]


def route_names(backend: str) -> set[str]:
    """Every route name of a shipped backend file (so a contract test can show it covers them all)."""
    import yaml

    return {r["name"] for r in yaml.safe_load((ROOT / "routes.d" / f"{backend}.yaml").read_text())["routes"]}
