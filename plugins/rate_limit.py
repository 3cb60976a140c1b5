"""rate_limit: fixed- or moving-window limits per consumer, IP, client or template key (``limits`` library)."""

from __future__ import annotations

import logging
import math
import os
import time
from typing import Any
from urllib.parse import urlsplit

import jinja2
import jinja2.meta
import redis.asyncio
from jinja2.sandbox import ImmutableSandboxedEnvironment
from limits import RateLimitItem, parse_many
from limits.aio.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter, RateLimiter
from limits.errors import StorageError
from limits.storage import storage_from_string
from limits.util import WindowStats

from gateway_engine import GatewayError, Plugin, Reply, RequestContext

log = logging.getLogger("gateway_engine.rate_limit")

STRATEGIES = {"fixed-window": FixedWindowRateLimiter, "moving-window": MovingWindowRateLimiter}
KEYWORDS = ("consumer", "ip", "route", "client")
# an anonymous `{{ consumer }}` renders "", not "None", so it can fall back to the IP
_TEMPLATES = ImmutableSandboxedEnvironment(autoescape=False, finalize=lambda v: "" if v is None else v)
_WARN_EVERY = 10.0  # seconds between "storage unavailable" log lines, so an outage does not flood the log


def parse_limits(value: str | list[str]) -> list[RateLimitItem]:
    """``"100/minute"``, ``"5/15 minutes"``, ``"10/second;1000/hour"`` or a list of them."""
    items: list[RateLimitItem] = []
    for text in [value] if isinstance(value, str) else value:
        try:
            items += parse_many(text)
        except ValueError:
            raise ValueError(
                f"{text!r} is not a rate limit; write e.g. 100/minute, 5/15 minutes or 10/second;1000/hour"
            ) from None
    for item in items:
        if item.amount < 1:
            raise ValueError(f"rate limit {item} allows no request at all; use at least 1")
    return items


def compile_key(key: str) -> jinja2.Template | None:
    """None for a keyword key; a compiled sandboxed template otherwise (ValueError when it is neither)."""
    if key in KEYWORDS:
        return None
    if "{{" not in key:
        raise ValueError(
            f"key {key!r} must be one of {', '.join(KEYWORDS)} or a template such as '{{{{ identity.platform }}}}:{{{{ ip }}}}'"
        )
    try:
        return _TEMPLATES.from_string(key)
    except jinja2.TemplateSyntaxError as exc:
        raise ValueError(f"key template {key!r} does not compile: {exc.message}") from None


class LocalWindows:
    """Fixed-window counters held in this process (``memory://``): ``key → [count, window end]``.

    The default chain's hot path. ``limits``' async memory storage takes an asyncio.Lock and
    schedules an expiry task on every increment (about a third of this plugin's cost per request,
    measured); a hit here is one dict lookup. The semantics are the fixed window of ``limits``:
    a key's window starts at its first hit. Ended windows are swept at most once a minute.
    """

    _SWEEP_EVERY = 60.0

    def __init__(self) -> None:
        self._windows: dict[str, list] = {}
        self._sweep_at = 0.0

    def hit(self, key: str, seconds: int, now: float) -> tuple[int, float]:
        """Count one hit; the key's count in its window and the window's end (epoch seconds)."""
        window = self._windows.get(key)
        if window is None or window[1] <= now:
            if now >= self._sweep_at:
                self._windows = {k: w for k, w in self._windows.items() if w[1] > now}
                self._sweep_at = now + self._SWEEP_EVERY
            window = self._windows[key] = [0, now + seconds]
        window[0] += 1
        return window[0], window[1]


class Counters:
    """One ``limits`` storage per storage URL, shared by every rate_limit instance of a config.

    The storage is created on first use, inside the server's event loop. For Redis
    the connection pool is ours (redis-py, handed to ``limits``), so shutdown can close it.
    ``local`` holds the fixed-window counters of ``memory://`` (see LocalWindows); it is None for Redis.
    """

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme != "memory" and not (parts.scheme in ("redis", "rediss") and parts.hostname):
            raise ValueError("rate_limit_storage must be memory:// or redis://host:port[/db] (rediss:// for TLS)")
        self.url = url
        self.display = f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}"  # no password
        self._limiters: dict[str, RateLimiter] = {}
        self._storage: Any = None
        self._pool: redis.asyncio.ConnectionPool | None = None
        self._warned_at = -_WARN_EVERY
        self.local = LocalWindows() if parts.scheme == "memory" else None

    def storage_for(self, strategy: str) -> Any:
        """The ``limits`` storage, opened on first use (inside the server's event loop)."""
        self.limiter(strategy)
        return self._storage

    def limiter(self, strategy: str) -> RateLimiter:
        limiter = self._limiters.get(strategy)
        if limiter is None:
            if self._storage is None:
                self._storage = self._open()
            limiter = self._limiters[strategy] = STRATEGIES[strategy](self._storage)
        return limiter

    def _open(self) -> Any:
        if self.url.startswith("memory:"):
            return storage_from_string("async+memory://", wrap_exceptions=True)
        self._pool = redis.asyncio.ConnectionPool.from_url(self.url, socket_connect_timeout=2, socket_timeout=2)
        # limits types **options as float | str | bool, but its Redis storage takes a redis-py connection_pool
        return storage_from_string(
            "async+" + self.url,
            wrap_exceptions=True,
            implementation="redispy",
            connection_pool=self._pool,  # type: ignore[arg-type]
        )

    async def close(self) -> None:
        if self.local is not None:
            return  # memory:// holds nothing to release, and its counts outlive the config (counters_for)
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.disconnect()
        self._storage = None
        self._limiters.clear()

    def warn(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._warned_at >= _WARN_EVERY:
            self._warned_at = now
            cause = getattr(exc, "storage_error", exc)
            log.warning("rate limit storage %s unavailable (%s)", self.display, type(cause).__name__)


# memory:// counters by (config directory, storage URL). A reload builds new plugins but they keep
# counting on these: a config change must not hand every client a fresh budget.
_MEMORY_COUNTERS: dict[tuple[str, str], Counters] = {}


def counters_for(url: str, gateway: Any) -> Counters:
    """The counters a config's rate_limit instances share: Redis per config, memory per process and config directory."""
    if urlsplit(url).scheme != "memory":
        return gateway.shared(("rate_limit_storage", url), lambda: Counters(url))
    key = (os.path.abspath(gateway.config_dir), url)
    counters = _MEMORY_COUNTERS.get(key)
    if counters is None:
        counters = _MEMORY_COUNTERS[key] = Counters(url)
    return counters


class RateLimitPlugin(Plugin):
    """Counts requests (or only failed ones) per key and window; 429 past the limit.

    Limits and the key template are parsed once here. With ``count: failures`` a
    request is tested before the upstream call and counted after it only when the
    answer is an error (>= 400), like express-rate-limit's ``skipSuccessfulRequests``.
    """

    name = "rate_limit"
    priority = 900
    options_schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "limit": {
                "type": ["string", "array"],
                "items": {"type": "string"},
                "minItems": 1,
                "default": "100/minute",
                "description": "One limit (`100/minute`, `5/15 minutes`) or a list; every limit applies.",
            },
            "key": {
                "type": "string",
                "minLength": 1,
                "default": "consumer",
                "description": "Whom a counter belongs to: `consumer` (authenticated consumer, else the IP), `ip`, "
                "`client` (identity client_id, else the IP), `route` (everyone together), or a "
                "Jinja2 template over ip, consumer, identity, route, backend, params, query, headers.",
            },
            "strategy": {
                "type": "string",
                "enum": list(STRATEGIES),
                "default": "fixed-window",
                "description": "`fixed-window` (cheap; bursts possible at window edges) or `moving-window` (exact).",
            },
            "count": {
                "type": "string",
                "enum": ["all", "failures"],
                "default": "all",
                "description": "`all` requests, or only `failures` (answers with status >= 400, e.g. failed logins).",
            },
            "on_storage_error": {
                "type": "string",
                "enum": ["open", "closed"],
                "default": "open",
                "description": "When the storage is unreachable: `open` lets requests through (logs a warning), "
                "`closed` answers 503 RATE_LIMIT_UNAVAILABLE.",
            },
            "per_key": {
                "type": "boolean",
                "default": True,
                "description": "Also apply the authenticated key's own limit (a stored key's `rateLimit`, per minute), "
                "counted per key across every route; a tenant request counts against both of its keys.",
            },
            "scope": {
                "type": "string",
                "enum": ["route", "backend", "global"],
                "default": "route",
                "description": "Counters per `route`, shared by a whole `backend`, or `global` across routes.",
            },
        },
    }

    def __init__(self, options: dict[str, Any], gateway: Any) -> None:
        super().__init__(options, gateway)
        self.limits = parse_limits(options["limit"])
        self.key = options["key"]
        self.template = compile_key(self.key)
        self.template_names = (
            jinja2.meta.find_undeclared_variables(_TEMPLATES.parse(self.key)) if self.template is not None else set()
        )
        self.strategy = options["strategy"]
        self.failures_only = options["count"] == "failures"
        self.fail_open = options["on_storage_error"] == "open"
        self.scope = options["scope"]
        self.per_key = options["per_key"]
        self._key_items: dict[int, RateLimitItem] = {}
        # fixed and moving windows store different types under a key, so they never share one
        self.prefix = f"{self.strategy}.{options['count']}"
        self._keys: dict[tuple, str] = {}  # (limit, identifiers) → storage key, so keys are not rebuilt per request
        url = gateway.settings.get("rate_limit_storage") or "memory://"
        self.counters: Counters = counters_for(url, gateway)

    async def shutdown(self) -> None:
        await self.counters.close()

    @classmethod
    def check_options(cls, options: dict[str, Any]) -> list[str]:
        problems = []
        try:
            parse_limits(options["limit"])
        except ValueError as exc:
            problems.append(f"limit: {exc}")
        try:
            compile_key(options["key"])
        except ValueError as exc:
            problems.append(f"key: {exc}")
        return problems

    def identifiers(self, ctx: RequestContext) -> tuple[str, str, str]:
        route = ctx.route.qualified_name if ctx.route is not None else ctx.backend
        namespace = route if self.scope == "route" else ctx.backend if self.scope == "backend" else "*"
        who = ""
        if self.template is not None:
            who = self._render(self.template, ctx, route)
        elif self.key == "consumer" and ctx.consumer:
            who = "consumer:" + ctx.consumer
        elif self.key == "client" and (client_id := (ctx.identity or {}).get("client_id")):
            who = f"client:{client_id}"
        elif self.key == "route":
            who = "route"
        return self.prefix, namespace, who or "ip:" + ctx.client_ip

    def _render(self, template: jinja2.Template, ctx: RequestContext, route: str) -> str:
        values = {
            "ip": ctx.client_ip,
            "consumer": ctx.consumer,
            "identity": ctx.identity or {},
            "route": route,
            "backend": ctx.backend,
            "params": ctx.params,
        }
        if "query" in self.template_names:
            values["query"] = ctx.query
        if "headers" in self.template_names:  # never the credential headers the proxy strips
            strip = ctx.route.strip_headers if ctx.route is not None else frozenset()
            values["headers"] = {k: v for k, v in ctx.headers.items() if k not in strip}
        try:
            rendered = template.render(values)
        except (
            Exception
        ) as exc:  # a key template failing at runtime falls back to the IP rather than failing the request
            log.warning("rate limit key template failed on %s: %s", route, type(exc).__name__)
            return ""
        return "key:" + rendered if rendered.strip() else ""

    async def on_request(self, ctx: RequestContext) -> GatewayError | None:
        if self.per_key and ctx.identity is not None and ctx.identity.get("key_limits"):
            refused = await self._key_limits(ctx.identity["key_limits"])
            if refused is not None:
                return refused
        ids = self.identifiers(ctx)
        if self.strategy == "fixed-window" and not self.failures_only:
            return await self._fixed_window(ctx, ids)
        try:
            limiter = self.counters.limiter(self.strategy)
            for item in self.limits:
                allowed = await (limiter.test(item, *ids) if self.failures_only else limiter.hit(item, *ids))
                if not allowed:
                    return self._rejection(item, await limiter.get_window_stats(item, *ids))
            stats = None if self.failures_only else await self._tightest(limiter, ids)
        except StorageError as exc:
            return self._storage_failed(exc)
        ctx.state["rate_limit"] = (ids, stats)
        return None

    async def _key_limits(self, limits: list[list[Any]]) -> GatewayError | None:
        """Each key's own per-minute limit, one fixed-window counter per key (shared by every route)."""
        local = self.counters.local
        now = time.time()
        try:
            for key_id, amount in limits:
                item = self._key_items.get(amount)
                if item is None:
                    if len(self._key_items) > 1000:
                        self._key_items.clear()
                    item = self._key_items[amount] = parse_limits(f"{int(amount)}/minute")[0]
                key = item.key_for("stored-key", str(key_id))
                if local is not None:
                    count, reset = local.hit(key, item.get_expiry(), now)
                else:
                    storage = self.counters.storage_for("fixed-window")
                    count = await storage.incr(key, item.get_expiry(), amount=1)
                    reset = await storage.get_expiry(key)
                if count > item.amount:
                    return self._rejection(item, WindowStats(reset, 0))
        except StorageError as exc:
            return self._storage_failed(exc)
        return None

    async def _fixed_window(self, ctx: RequestContext, ids: tuple[str, str, str]) -> GatewayError | None:
        """The common case on the hot path: a LocalWindows hit for memory://, or one ``incr`` and one
        ``get_expiry`` per limit on the Redis storage (what FixedWindowRateLimiter.hit does, plus the
        remaining count it throws away); storage keys are cached instead of rebuilt per request."""
        local = self.counters.local
        now = time.time()
        try:
            storage = None if local is not None else self.counters.storage_for(self.strategy)
            tightest = None
            for item in self.limits:
                key = self._keys.get((item, ids))
                if key is None:
                    if len(self._keys) > 10_000:
                        self._keys.clear()
                    key = self._keys[(item, ids)] = item.key_for(*ids)
                if local is not None:
                    count, reset = local.hit(key, item.get_expiry(), now)
                else:
                    assert storage is not None  # opened above, since local is None
                    count = await storage.incr(key, item.get_expiry(), amount=1)
                    reset = await storage.get_expiry(key)
                window = WindowStats(reset, max(0, item.amount - count))
                if count > item.amount:
                    return self._rejection(item, window)
                if tightest is None or window.remaining < tightest[1].remaining:
                    tightest = (item, window)
        except StorageError as exc:
            return self._storage_failed(exc)
        ctx.state["rate_limit"] = (ids, tightest)
        return None

    async def on_response(self, ctx: RequestContext, reply: Reply) -> None:
        state = ctx.state.get("rate_limit")
        if not isinstance(state, tuple):
            return  # rejected here (the 429 carries its headers) or the storage was down
        ids, stats = state
        try:
            limiter = self.counters.limiter(self.strategy)
            if self.failures_only:
                if reply.status >= 400:
                    for item in self.limits:
                        await limiter.hit(item, *ids)
                stats = await self._tightest(limiter, ids)
        except StorageError as exc:  # the answer exists already; only the count is lost
            self.counters.warn(exc)
            return
        item, window = stats
        reply.set_headers(
            [
                ("ratelimit-limit", str(item.amount)),
                ("ratelimit-remaining", str(max(0, window.remaining))),
                ("ratelimit-reset", str(_seconds_until(window.reset_time, minimum=0))),
            ]
        )

    async def _tightest(self, limiter: RateLimiter, ids: tuple[str, str, str]) -> tuple[RateLimitItem, WindowStats]:
        """The limit closest to running out: the one the RateLimit-* headers describe."""
        stats = [(item, await limiter.get_window_stats(item, *ids)) for item in self.limits]
        return min(stats, key=lambda s: s[1].remaining)

    def _rejection(self, item: RateLimitItem, window: WindowStats) -> GatewayError:
        retry = _seconds_until(window.reset_time, minimum=1)
        return GatewayError(
            429,
            "RATE_LIMITED",
            f"Too many requests: the limit is {item.amount} per {_period(item)}. Retry in {retry}s.",
            details={"limit": item.amount, "period": _period(item), "retry_after": retry, "retryAfter": retry},
            headers={
                "Retry-After": str(retry),
                "RateLimit-Limit": str(item.amount),
                "RateLimit-Remaining": "0",
                "RateLimit-Reset": str(retry),
            },
        )

    def _storage_failed(self, exc: StorageError) -> GatewayError | None:
        self.counters.warn(exc)
        if self.fail_open:
            return None
        return GatewayError(503, "RATE_LIMIT_UNAVAILABLE", "The rate limit store is unavailable; try again shortly.")


def _seconds_until(moment: float, *, minimum: int) -> int:
    return max(minimum, math.ceil(moment - time.time()))


def _period(item: RateLimitItem) -> str:
    unit = item.GRANULARITY.name
    return unit if item.multiples == 1 else f"{item.multiples} {unit}s"
