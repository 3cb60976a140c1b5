"""Per-request state shared by the plugins and the proxy."""

from __future__ import annotations

import time
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from gateway_engine.foundation.ids import random_hex

if TYPE_CHECKING:  # pragma: no cover
    from gateway_engine.compiled.model import CompiledRoute


class RequestContext:
    """What one request carries through the chain.

    ``headers`` are the client's headers (lower-case names, repeated values joined
    by ``, ``). Plugins add headers for the upstream in ``upstream_headers`` and
    identity in ``identity``; nothing here is parsed until someone asks for it.
    """

    __slots__ = (
        "scope",
        "receive",
        "method",
        "path",
        "raw_query",
        "headers",
        "params",
        "route",
        "client_ip",
        "identity",
        "consumer",
        "upstream_headers",
        "state",
        "started",
        "upstream_latency",
        "_request_id",
        "_query",
        "body",
        "body_json",
    )

    def __init__(
        self, scope: dict, receive: Any, route: "CompiledRoute | None", params: dict[str, str], client_ip: str
    ) -> None:
        self.scope = scope
        self.receive = receive
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        self.raw_query: bytes = scope.get("query_string", b"")
        headers: dict[str, str] = {}
        repeated: dict[str, list[str]] | None = None
        for k, v in scope["headers"]:
            name = k.decode("latin-1").lower()
            if name in headers:  # collected and joined once: a join per repeat is quadratic in the repeats
                if repeated is None:
                    repeated = {}
                repeated.setdefault(name, [headers[name]]).append(v.decode("latin-1"))
            else:
                headers[name] = v.decode("latin-1")
        if repeated is not None:
            for name, values in repeated.items():
                headers[name] = ", ".join(values)
        self.headers = headers
        self.params = params
        self.route = route
        self.client_ip = client_ip
        self.identity: dict[str, Any] | None = None
        self.consumer: str | None = None
        self.upstream_headers: dict[str, str] = {}
        self.state: dict[str, Any] = {}
        self.started = time.perf_counter()
        self.upstream_latency: float | None = None
        self._request_id: str | None = None
        self._query: dict[str, str] | None = None
        self.body: bytes | None = None  # set when something buffered the request body
        self.body_json: Any = None

    def fork(self, route: "CompiledRoute") -> "RequestContext":
        """A context for one more upstream call made for this request (a feature calling several upstreams):
        the same client request, identity and request id; its own route, parameters, upstream headers, state."""
        other = RequestContext.__new__(RequestContext)
        for name in RequestContext.__slots__:
            setattr(other, name, getattr(self, name))
        other._request_id = self.request_id
        other.route = route
        other.params = dict(self.params)
        other.upstream_headers = dict(self.upstream_headers)
        other.state = {}
        other.upstream_latency = None
        return other

    @property
    def request_id(self) -> str:
        if self._request_id is None:
            self._request_id = random_hex()
        return self._request_id

    @request_id.setter
    def request_id(self, value: str) -> None:
        self._request_id = value

    @property
    def query(self) -> dict[str, str]:
        """Query parameters (last value wins), decoded leniently: bad UTF-8 never raises."""
        if self._query is None:
            text = self.raw_query.decode("latin-1")
            self._query = dict(parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="replace"))
        return self._query

    @property
    def backend(self) -> str:
        return self.route.backend if self.route is not None else "gateway"


#: the request whose upstream call is under way, for a transport that needs more than method, URL, headers and
#: body (the authenticated identity, the route); the proxy sets it around ``Transport.send``
forwarding: ContextVar[RequestContext | None] = ContextVar("gateway_engine_forwarding", default=None)
