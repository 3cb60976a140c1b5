"""The gateway's own endpoints: health, backend health, metrics, the OpenAPI document and the docs page.

They are built once per config into a table of full paths, so telling a built-in
from a route costs one dict lookup. Settings come from gateway.yaml's ``health``,
``metrics`` and ``docs`` sections, with the schema's defaults.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import orjson

from gateway_engine.compiled.model import CompiledConfig
from gateway_engine.config.durations import parse_duration
from gateway_engine.config.env import referenced_names
from gateway_engine.config.schema import fill_defaults, schema
from gateway_engine.endpoints import docs as _docs
from gateway_engine.endpoints.health import HealthChecker
from gateway_engine.endpoints.health_views import DEFAULT_VIEWS, openapi_paths, reshape
from gateway_engine.endpoints.openapi import build_openapi
from gateway_engine.foundation import metrics as _metrics
from gateway_engine.foundation.context import RequestContext
from gateway_engine.foundation.envelope import JSON, error_reply
from gateway_engine.foundation.errors import GatewayError
from gateway_engine.foundation.reply import Reply

log = logging.getLogger("gateway_engine")
Handler = Callable[[RequestContext], Awaitable[Reply]]
_NO_STORE = ("cache-control", "no-store")
_METHODS = ("GET", "HEAD")


def settings_section(config: CompiledConfig, name: str) -> dict[str, Any]:
    """A gateway.yaml section (env-interpolated) with the schema's defaults filled in."""
    return fill_defaults(schema("gateway")["properties"][name], config.gateway.settings.get(name) or {})


class Endpoint:
    """One built-in: GET/HEAD only, named in metrics by ``name``."""

    __slots__ = ("name", "handler")

    def __init__(self, name: str, handler: Handler) -> None:
        self.name = name
        self.handler = handler

    async def __call__(self, config: CompiledConfig, ctx: RequestContext) -> Reply:
        ctx.state["builtin"] = self.name
        if ctx.method not in _METHODS:
            return error_reply(
                ctx,
                GatewayError(
                    405,
                    "METHOD_NOT_ALLOWED",
                    f"{ctx.method} is not allowed here; allowed: GET, HEAD.",
                    headers={"Allow": "GET, HEAD"},
                ),
            )
        return await self.handler(ctx)


class Builtins:
    """The built-in endpoints of one config."""

    def __init__(
        self,
        config: CompiledConfig,
        fragments: Iterable[Mapping[str, dict[str, Any]]] = (),
        webhooks: Iterable[Mapping[str, dict[str, Any]]] = (),
    ) -> None:
        self.config = config
        self.fragments: tuple[Mapping[str, dict[str, Any]], ...] = tuple(fragments)  # other features' path items
        self.webhooks = tuple(webhooks)  # OpenAPI `webhooks` items (events the gateway sends) they contribute
        base = config.base_path
        health = settings_section(config, "health")
        self.health = HealthChecker(
            config, cache_seconds=float(health["cache_seconds"]), timeout=parse_duration(health["timeout"])
        )
        table: dict[str, Endpoint] = {}
        views: list[dict[str, Any]] = health.get("views") or list(DEFAULT_VIEWS)
        for view in views:
            handler = self._health if view["report"] == "liveness" else self._backends
            name = "health" if view["report"] == "liveness" else "health-backends"
            table[base + view["path"]] = Endpoint(name, _shaped(handler, view.get("fields")))
        self.fragments = (openapi_paths(base, views), *self.fragments)
        metrics = settings_section(config, "metrics")
        if metrics["enabled"]:
            self.access = MetricsAccess(metrics, _raw_section(config, "metrics"))
            table[metrics["path"]] = Endpoint("metrics", self._metrics)
        docs = settings_section(config, "docs")
        self.title = docs["title"]
        self._openapi: dict[str, Any] | None = None
        self._openapi_bytes: bytes | None = None
        self._openapi_30_bytes: bytes | None = None
        self._docs_html: bytes | None = None
        if docs["enabled"]:  # the config is immutable: documents and page are built once, at load
            self._openapi_bytes = orjson.dumps(self.openapi())
            self._openapi_30_bytes = orjson.dumps(_docs.openapi_30(self.openapi()))
            self._docs_html = _docs.page(
                title=self.title, assets=f"{base}/docs", spec_url=f"{base}/docs/openapi-3.0.json"
            )
            table[base + "/openapi.json"] = Endpoint("openapi", self._openapi_json)
            table[base + "/docs"] = Endpoint("docs", self._docs_page)
            table[base + "/docs/openapi-3.0.json"] = Endpoint("docs", self._openapi_30)
            for name in _docs.ASSETS:
                table[f"{base}/docs/{name}"] = Endpoint("docs", self._asset_handler(name))
        self.table = table

    async def _health(self) -> tuple[int, dict[str, Any]]:
        config = self.config
        return 200, {
            "status": "ok",
            "version": config.version,
            "routes": len(config.routes),
            "unconfigured": sorted({r.backend for r in config.routes if not r.configured}),
        }

    async def _backends(self) -> tuple[int, dict[str, Any]]:
        return await self.health.report()

    async def _metrics(self, ctx: RequestContext) -> Reply:
        refused = self.access.check(ctx)
        if refused is not None:
            return error_reply(ctx, refused)
        return Reply(200, [("content-type", _metrics.CONTENT_TYPE), _NO_STORE], _metrics.exposition())

    def openapi(self) -> dict[str, Any]:
        if self._openapi is None:
            self._openapi = build_openapi(
                self.config, title=self.title, fragments=self.fragments, webhooks=self.webhooks
            )
        return self._openapi

    async def _openapi_json(self, ctx: RequestContext) -> Reply:
        return Reply(200, [("content-type", JSON), ("cache-control", "no-cache")], self._openapi_bytes)

    async def _openapi_30(self, ctx: RequestContext) -> Reply:
        return Reply(200, [("content-type", JSON), ("cache-control", "no-cache")], self._openapi_30_bytes)

    async def _docs_page(self, ctx: RequestContext) -> Reply:
        return Reply(
            200,
            [
                ("content-type", "text/html; charset=utf-8"),
                ("content-security-policy", _docs.CSP),
                ("x-content-type-options", "nosniff"),
                ("referrer-policy", "no-referrer"),
                ("cache-control", "no-cache"),
            ],
            self._docs_html,
        )

    @staticmethod
    def _asset_handler(name: str) -> Handler:
        async def serve(ctx: RequestContext) -> Reply:
            content_type, data = _docs.asset(name)
            return Reply(
                200,
                [
                    ("content-type", content_type),
                    ("cache-control", "public, max-age=86400"),
                    ("x-content-type-options", "nosniff"),
                ],
                data,
            )

        return serve


def _shaped(report: Callable[[], Awaitable[tuple[int, dict[str, Any]]]], fields: dict[str, str] | None) -> Handler:
    """A health view: the report, reshaped by ``fields`` (``{answer name: report field}``) when given."""

    async def answer(ctx: RequestContext) -> Reply:
        status, body = await report()
        if fields is not None:
            body = reshape(body, fields)
        return Reply(status, [("content-type", JSON), _NO_STORE], orjson.dumps(body))

    return answer


class MetricsAccess:
    """Who may scrape: an IP allowlist and/or a key in ``x-metrics-key`` (both, when both are set).

    A key whose ``${VAR}`` is unset locks the endpoint (503 naming the variable)
    rather than opening it.
    """

    def __init__(self, settings: dict[str, Any], raw: dict[str, Any]) -> None:
        self.networks = []
        for cidr in settings.get("allow_ips", []):
            try:
                self.networks.append(ipaddress.ip_network(cidr, strict=False))
            except ValueError:
                log.error("metrics.allow_ips: %r is not an IP network; it matches nothing", cidr)
        self.by_ip = "allow_ips" in settings
        self.digests = []
        if "key_sha256" in settings:  # may come from an env var: checked here, never trusted to be hex
            try:
                self.digests.append(bytes.fromhex(settings["key_sha256"]))
            except ValueError:
                log.error("metrics.key_sha256 is not a hex SHA-256; the metrics endpoint stays locked")
        if settings.get("key"):  # an empty key (e.g. `${VAR:-}`) must never match a missing header
            self.digests.append(hashlib.sha256(settings["key"].encode()).digest())
        self.by_key = bool(self.digests) or "key" in raw or "key_sha256" in raw
        unset = referenced_names([raw.get("key"), raw.get("key_sha256")])
        self.unconfigured = None
        if self.by_key and not self.digests:
            self.unconfigured = GatewayError(
                503,
                "METRICS_NOT_CONFIGURED",
                "The metrics key is not configured" + (f": set {', '.join(unset)}." if unset else "."),
            )

    def check(self, ctx: RequestContext) -> GatewayError | None:
        if self.by_ip and not self._ip_allowed(ctx.client_ip):
            return GatewayError(403, "FORBIDDEN", "Metrics are not available to this address.")
        if self.unconfigured is not None:
            return self.unconfigured
        if self.by_key:
            presented = hashlib.sha256(ctx.headers.get("x-metrics-key", "").encode()).digest()
            if not any([hmac.compare_digest(presented, d) for d in self.digests]):  # a list: no short-circuit
                return GatewayError(401, "INVALID_METRICS_KEY", "Send a valid metrics key in x-metrics-key.")
        return None

    def _ip_allowed(self, ip: str) -> bool:
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(address in net for net in self.networks)


def _raw_section(config: CompiledConfig, name: str) -> dict[str, Any]:
    """A section as written, before ``${VAR}`` interpolation dropped unset values."""
    section = config.gateway.written.get(name)
    return section if isinstance(section, dict) else {}
