"""The frozen model a config compiles into: routes, upstreams, plugin chains, and what features contributed.

Everything here is built once at load and never changes; a reload builds a new
``CompiledConfig`` and swaps it. Features contribute through ``Contribution`` (see
``features.py``); the core reads their endpoints and tasks without knowing them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from gateway_engine.compiled.plans import ParamRule, RequestPlan, ResponsePlan
from gateway_engine.compiled.routing import PathTemplate, Router, UpstreamPath
from gateway_engine.compiled.workers import Running, Worker
from gateway_engine.config.secrets import Masker
from gateway_engine.config.server_settings import ServerSettings
from gateway_engine.foundation.context import RequestContext
from gateway_engine.foundation.plugin import GatewayInfo, Plugin
from gateway_engine.foundation.reply import Reply
from gateway_engine.upstreams.credentials import UpstreamAuth
from gateway_engine.upstreams.seam import Timeouts, Transport

T = TypeVar("T")


class Endpoint(Protocol):
    """A handler served at one full path before the router (health, webhooks, ...). It labels its own
    metrics by setting ``ctx.state["builtin"]``."""

    async def __call__(self, config: "CompiledConfig", ctx: RequestContext) -> Reply: ...


class AsgiEndpoint(Protocol):
    """A raw ASGI handler served at one full path, for a protocol the gateway does not frame itself:
    WebSocket scopes, or HTTP a library speaks on its own (Socket.IO's polling). Limits on headers apply
    before it runs; everything after the handshake is its own."""

    async def __call__(self, config: "CompiledConfig", scope: dict[str, Any], receive: Any, send: Any) -> None: ...


Task = Callable[[], Awaitable[None]]


class RouteHandler(Protocol):
    """A feature's way of answering a route in place of its single upstream call.

    A feature owns route keys (``Feature.route_keys``); a route holding one is compiled by the
    core as usual (path, parameters, plugin chain) and then handed to that feature, which returns
    the handler. The pipeline calls it where it would call the upstream.
    """

    summary: str  # what it calls, safe to display (the `routes` listing's upstream column)
    missing_env: tuple[str, ...]  # unset env vars that keep it from answering (it answers 503 then)

    async def __call__(self, ctx: RequestContext, route: "CompiledRoute", config: "CompiledConfig") -> Reply: ...

    def calls(self) -> tuple[tuple[str, "Upstream | None"], ...]:
        """Every upstream call it may make, by a name of its own, in a stable order."""
        ...

    def with_transports(self, swap: Callable[[str, "Upstream"], Transport]) -> "RouteHandler":
        """The same handler whose named calls go through ``swap(name, upstream)`` (``explain`` records them)."""
        ...

    def openapi(self, enveloped: bool) -> dict[str, Any]:
        """An OpenAPI operation fragment (its ``responses`` replace the generic ones of the same status)."""
        ...


class AfterAnswer(Protocol):
    """What a feature runs once a route's answer has been written to the client (off the client's path).

    A feature claims route keys (``Feature.route_keys``); the core keeps their values as written in
    ``CompiledRoute.extensions``, the feature compiles them into hooks (``Contribution.after_answer``),
    and the app calls them after the last byte of the answer went out. ``body`` is the answer's body
    when ``needs_body`` (at most ``limits.response_body`` bytes; None when larger). A hook never raises
    and never waits: it runs on every answer of its route, so it is a plain call (not two coroutines on
    every answer for hooks that only queue), and what needs I/O it queues or schedules.
    """

    needs_body: bool

    def __call__(self, ctx: RequestContext, reply: Reply, body: bytes | None) -> None: ...


@dataclass
class Contribution:
    """What one feature adds to one compiled config."""

    endpoints: dict[str, Endpoint] = field(default_factory=dict)  # full path -> handler
    asgi: dict[str, AsgiEndpoint] = field(default_factory=dict)  # full path -> raw ASGI handler (WebSocket, ...)
    openapi_paths: dict[str, dict[str, Any]] = field(default_factory=dict)  # OpenAPI path items
    listing: list[dict[str, Any]] = field(default_factory=list)  # rows for `gateway-engine routes`
    startup: list[Task] = field(default_factory=list)
    shutdown: list[Task] = field(default_factory=list)
    state: Any = None  # the feature's own compiled model, read back through a StateKey
    handlers: dict[str, RouteHandler] = field(default_factory=dict)  # qualified route name -> handler of an owned route
    after_answer: dict[str, list[AfterAnswer]] = field(default_factory=dict)  # qualified route name -> hooks
    openapi_webhooks: dict[str, dict[str, Any]] = field(default_factory=dict)  # OpenAPI 3.1 `webhooks` items
    workers: dict[str, Worker] = field(default_factory=dict)  # background workers by name (``workers.py``)


class StateKey(Generic[T]):
    """A typed handle on a feature's compiled state: ``config.state(CATALOG)`` is a ``T`` (or None)."""

    def __init__(self, feature: str) -> None:
        self.feature = feature


BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# headers the gateway itself sets upstream, or client-address claims it drops (its X-Forwarded-For is the only
# address an upstream gets): a client copy never reaches the upstream, in any spelling
FORWARDING_HEADERS = frozenset(
    {
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-request-id",
        "forwarded",
        "x-real-ip",
        "x-client-ip",
        "true-client-ip",
        "x-cluster-client-ip",
        "cf-connecting-ip",
        "fastly-client-ip",
    }
)


def query_name(key: str) -> str:
    """The name a server files ``key`` under: ``where[slug]`` and ``where`` are both ``where``."""
    return key.partition("[")[0]


@dataclass(frozen=True)
class Upstream:
    """A backend's upstream: where, how to authenticate, and the pooled transport."""

    backend: str
    url: str  # resolved base URL, no trailing slash
    auth: UpstreamAuth
    transport: Transport
    timeouts: Timeouts
    headers: tuple[tuple[str, str], ...]
    health: Mapping[str, Any] | None
    retries: bool = False  # bodies are buffered (up to limits.request_body) so a retry can resend them
    masker: Masker = Masker()  # the secrets its requests carry, masked in its error answers


@dataclass(frozen=True)
class CompiledRoute:
    """One method+path with everything it needs at request time, built once."""

    name: str
    backend: str
    methods: tuple[str, ...]
    path: str  # full public path template
    template: PathTemplate
    upstream_path: UpstreamPath
    upstream_method: str | None
    upstream: Upstream | None  # None when the backend's env vars are missing
    upstream_template: str  # upstream url + path as written in YAML, safe to display
    missing_env: tuple[str, ...]
    request: RequestPlan
    response: ResponsePlan | None
    param_rules: tuple[ParamRule, ...]
    plugins: tuple[Plugin, ...]  # sorted by priority, highest first
    request_plugins: tuple[Plugin, ...]
    response_chains: tuple[tuple[Plugin, ...], ...]  # [i] = response plugins to run when request plugin i answered
    strip_headers: frozenset[str]
    needs_response_body: bool
    reserved_headers: frozenset[str] = frozenset()  # names the gateway owns here: their `_` spellings are dropped
    description: str = ""
    source_file: str = ""
    source_line: int = 0
    owned_query: frozenset[str] = frozenset()  # query names the gateway sets (`set`, query auth): no client copy passes
    # the route's keys that a feature owns (``Feature.route_keys``), as written, for that feature to read
    extensions: Mapping[str, Any] = field(default_factory=dict, compare=False)
    after_answer: tuple[AfterAnswer, ...] = ()  # features' hooks run once the answer was written
    handler: RouteHandler | None = None  # a feature answers this route instead of the single upstream call
    # whether a hook reads the answer's body (copied as it streams out): derived from ``after_answer``
    # by ``__post_init__``, so a ``dataclasses.replace`` never leaves it stale. A field, not a cached
    # property: writing one into the instance's ``__dict__`` gave that route a dict of its own, and
    # every attribute read of it on the request path fell back to the generic lookup (22 a request:
    # ~6,000 instructions in the running gateway, ~8,500 in process, callgrind)
    after_answer_body: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "after_answer_body", any(hook.needs_body for hook in self.after_answer))

    @property
    def configured(self) -> bool:
        """Whether it can answer: its upstream is set, or its handler lacks no env var."""
        return self.upstream is not None if self.handler is None else not self.handler.missing_env

    @property
    def qualified_name(self) -> str:
        return f"{self.backend}.{self.name}"


@dataclass(frozen=True)
class PluginChain:
    """Request-phase plugins and their response chains (as on a route), for answers no route gives."""

    request_plugins: tuple[Plugin, ...] = ()
    response_chains: tuple[tuple[Plugin, ...], ...] = ((),)


@dataclass(frozen=True)
class CompiledConfig:
    """The whole gateway, immutable; a reload builds a new one and swaps it."""

    root: str
    version: str
    base_path: str
    router: Router[CompiledRoute]
    routes: tuple[CompiledRoute, ...]
    upstreams: tuple[Upstream, ...]
    plugins: tuple[Plugin, ...]
    gateway: GatewayInfo
    trusted_proxies: int
    limits: Mapping[str, int]
    server: ServerSettings  # what `serve` configures the HTTP server with (read at start, not on reload)
    unset_env: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict, repr=False)  # for request templates; never displayed
    transports: Mapping[tuple, Transport] = field(default_factory=dict, repr=False)  # by settings, for reuse
    unrouted: PluginChain = PluginChain()  # the gateway-wide plugins that also answer 404s and 405s
    contributions: Mapping[str, Contribution] = field(default_factory=dict)  # by feature name, in compile order
    endpoints: Mapping[str, Endpoint] = field(default_factory=dict)  # every feature's endpoints by full path
    asgi: Mapping[str, AsgiEndpoint] = field(default_factory=dict)  # every feature's raw ASGI handlers by full path
    running: Running = field(default_factory=Running, compare=False, repr=False)  # its in-process workers, once started

    def state(self, key: StateKey[T]) -> T | None:
        """A feature's compiled state (None when that feature is not installed)."""
        contribution = self.contributions.get(key.feature)
        return None if contribution is None else contribution.state

    @property
    def workers(self) -> dict[str, Worker]:
        """Every feature's background workers by name (``gateway-engine worker`` runs them)."""
        return {name: w for c in self.contributions.values() for name, w in c.workers.items()}

    async def startup(self, *, workers: bool = True) -> None:
        """Start plugins and feature tasks, then (unless ``workers`` is false) the in-process workers."""
        for plugin in self.plugins:
            await plugin.startup()
        for contribution in self.contributions.values():
            for task in contribution.startup:
                await task()
        if workers:
            self.running.start(self, {n: w for n, w in self.workers.items() if w.in_process}, {})

    async def shutdown(self, keep: "CompiledConfig | None" = None) -> None:
        """Stop its workers, release plugins, feature resources and pools; transports ``keep`` reuses stay open."""
        await self.running.close()
        for plugin in self.plugins:
            await plugin.shutdown()
        for contribution in self.contributions.values():
            for task in contribution.shutdown:
                await task()
        kept = {id(t) for t in keep.transports.values()} if keep is not None else set()
        for transport in self.transports.values():
            if id(transport) not in kept:
                await transport.aclose()
