"""Raw documents → one immutable, ready-to-serve config. All config work happens here, once.

The core (backends, routes, plugin chains, upstreams) compiles first; then each
installed feature compiles its own folder against it (``features.py``).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from gateway_engine.compiled.chains import chain_tables, shorthands
from gateway_engine.compiled.features import Feature, FeatureInput, OwnedRoute, installed_features
from gateway_engine.compiled.model import (
    BODY_METHODS,
    CompiledConfig,
    CompiledRoute,
    Contribution,
    PluginChain,
    Upstream,
)
from gateway_engine.compiled.registry import discover
from gateway_engine.compiled.route_compiler import RouteCompiler
from gateway_engine.compiled.upstream_settings import policies, safe_url, timeouts_of, url_problem
from gateway_engine.config.bodies import DEFAULT_DEPTH
from gateway_engine.config.documents import Document
from gateway_engine.config.env import Interpolation, first_reference
from gateway_engine.config.loader import RawConfig, read_config_dir
from gateway_engine.config.secrets import Masker, scrub_secrets, upstream_secrets
from gateway_engine.config.server_settings import ServerSettings, server_settings
from gateway_engine.config.templates import TemplateError, compile_value, env_names
from gateway_engine.foundation.errors import ConfigError, ConfigErrors
from gateway_engine.foundation.plugin import GatewayInfo, Plugin
from gateway_engine.upstreams.auth import build_upstream_auth
from gateway_engine.upstreams.resilience import ResilientTransport
from gateway_engine.upstreams.seam import Timeouts, Transport, TransportFactory, transport_factories, url_schemes

__all__ = ["BODY_METHODS", "CompiledConfig", "CompiledRoute", "PluginChain", "Upstream", "chain_tables", "load_config"]

DEFAULT_LIMITS = {
    "request_body": 10 * 1024 * 1024,
    "response_body": 16 * 1024 * 1024,
    "error_details": 4096,
    "header_bytes": 32 * 1024,
    "body_depth": DEFAULT_DEPTH,
}


def load_config(
    root: str | os.PathLike[str],
    environ: Mapping[str, str] | None = None,
    *,
    strict: bool = False,
    previous: "CompiledConfig | None" = None,
    features: Sequence[Feature] | None = None,
) -> CompiledConfig:
    """Read, validate and compile a config directory; ConfigErrors lists every problem.

    With ``previous`` (a reload), transports whose settings did not change are reused.
    ``features`` defaults to every installed feature (the ``gateway_engine.features`` entry points).
    """
    features = tuple(sorted(installed_features() if features is None else features, key=lambda f: (f.order, f.name)))
    raw = read_config_dir(root, {f.folder: f.schema for f in features if f.folder and f.schema})
    return _Compiler(raw, dict(os.environ if environ is None else environ), strict, previous, features).run()


class _Compiler(RouteCompiler):
    def __init__(
        self,
        raw: RawConfig,
        environ: dict[str, str],
        strict: bool,
        previous: "CompiledConfig | None",
        features: Sequence[Feature],
    ) -> None:
        self.reusable: dict[tuple, Transport] = dict(previous.transports) if previous else {}
        self.transports: dict[tuple, Transport] = {}
        self.raw = raw
        self.environ = environ
        self.strict = strict
        self.errors: list[ConfigError] = list(raw.errors)
        self.features = features
        self.registry = discover({name: cls for f in features for name, cls in f.plugins.items()})
        self.factories: dict[str, TransportFactory] = dict(transport_factories())
        for feature in features:
            self.factories.update(feature.transports)
        self.route_keys = tuple(k for f in features for k in f.route_keys)
        self.instances: dict[tuple[str, str], Plugin] = {}
        self.unset: list[str] = []
        self.route_owners: dict[str, str] = {}  # route key -> the feature that answers routes holding it
        for feature in features:
            for key in sorted(feature.route_keys):
                if key in self.route_owners:  # two installed features disagree: no route may use the key
                    self.errors.append(
                        ConfigError(f"features {self.route_owners[key]} and {feature.name} both own route key {key!r}")
                    )
                self.route_owners.setdefault(key, feature.name)
        self.owned: dict[str, list[OwnedRoute]] = {}

    def run(self) -> CompiledConfig:
        gdoc = self.raw.gateway
        gdata = gdoc.data if gdoc else {}
        interp = Interpolation(self.environ)
        settings = interp.tree(gdata) if gdoc else {}
        self._note_unset(gdoc, interp)
        base_path = "/" + str(gdata.get("base_path", "")).strip("/") if gdata.get("base_path", "").strip("/") else ""
        self.gateway = GatewayInfo(base_path=base_path, settings=settings, config_dir=str(self.raw.root), written=gdata)
        default_chain = self.default_chain = self._default_chain(gdoc, Interpolation(self.environ)) if gdoc else []
        # validates the default options even when no route uses them as-is
        default_plugins = self._instantiate(default_chain) or ()
        unrouted = PluginChain(*chain_tables(tuple(p for p in default_plugins if p.runs_unrouted)))

        routes: list[CompiledRoute] = []
        upstreams: list[Upstream] = []
        seen_backends: dict[str, str] = {}
        prefixes: list[tuple[str, Document]] = []
        for doc in self.raw.backends:
            name = doc.data["backend"]
            if name in seen_backends:
                self.errors.append(
                    doc.error(("backend",), f"backend {name!r} is already defined in {seen_backends[name]}")
                )
                continue
            seen_backends[name] = doc.file
            self._check_prefix(doc, prefixes)
            compiled = self._backend(doc, base_path, default_chain)
            if compiled:
                backend_routes, upstream = compiled
                routes += backend_routes
                if upstream:
                    upstreams.append(upstream)

        routes = self._strip_everywhere(routes)
        by_name = {r.qualified_name: r for r in routes}  # features see the routes as finally stripped
        self.owned = {
            f: [dataclasses.replace(o, route=by_name[o.route.qualified_name]) for o in owned]
            for f, owned in self.owned.items()
        }
        router = self._router(routes)
        limits = {**DEFAULT_LIMITS, **gdata.get("limits", {})}
        server = ServerSettings()
        try:
            server = server_settings(gdata.get("server", {}), limits["header_bytes"])
        except ValueError as exc:
            assert gdoc is not None  # settings came from it
            self.errors.append(gdoc.error(("server", exc.args[0]), exc.args[1]))
        core = CompiledConfig(
            root=str(self.raw.root),
            version=self.raw.version,
            base_path=base_path,
            router=router,
            routes=tuple(routes),
            upstreams=tuple(upstreams),
            plugins=tuple(self.instances.values()),
            gateway=self.gateway,
            trusted_proxies=int(gdata.get("trusted_proxies", 0)),
            limits=limits,
            server=server,
            unset_env=(),
            env=self.environ,
            transports=self.transports,
            unrouted=unrouted,
        )
        contributions: dict[str, Contribution] = {}
        for feature in self.features:  # each checks its own folder against the compiled core
            contributions[feature.name] = feature.compile(
                FeatureInput(
                    documents=self.raw.folders.get(feature.folder or "", []),
                    core=core,
                    errors=self.errors,
                    note_unset=self._note_unset,
                    earlier=dict(contributions),
                    owned=self.owned.get(feature.name, []),
                    plugin_chain=self._feature_chain,
                )
            )
            if self.owned.get(feature.name):  # its routes get its handlers: the features after it see them
                routes = self._with_handlers(routes, feature.name, contributions[feature.name])
                core = dataclasses.replace(core, routes=tuple(routes), router=self._router(routes))
        core = self._with_hooks(core, contributions)
        if not self.errors:
            self._unanswered(core.routes)
        if self.errors:
            unique = list({str(e): e for e in self.errors}.values())  # a bad default plugin fails every route alike
            scrub_secrets(unique, self._referenced_env())
            raise ConfigErrors(unique)
        return dataclasses.replace(
            core,
            unset_env=tuple(self.unset),
            contributions=contributions,
            endpoints={path: e for c in contributions.values() for path, e in c.endpoints.items()},
            asgi={path: e for c in contributions.values() for path, e in c.asgi.items()},
            plugins=tuple(self.instances.values()),  # with the chains features built
        )

    def _transport(
        self, spec: dict[str, Any], resolved: dict[str, Any], url: str, timeouts: Timeouts, doc: Document
    ) -> Transport | None:
        """The upstream's transport; an identical one from the previous config is reused (pool and breaker kept).

        A factory with an ``options`` attribute (upstream key names) also gets those keys, env resolved."""
        try:
            retry, breaker, bulkhead = policies(spec)
        except ValueError as exc:
            self.errors.append(doc.error(("upstream",), str(exc)))
            return None
        kind = spec.get("transport", "http1")
        factory = self.factories[kind]  # known: _backend checked it
        names = getattr(factory, "options", ())
        options = {"options": {n: resolved[n] for n in names if n in resolved}} if names else {}
        key = (url, kind, timeouts, spec.get("max_connections", 100), retry, breaker, bulkhead, _canonical(options))
        if key in self.transports:  # two backends with identical upstream settings share one pool
            return self.transports[key]
        if key in self.reusable:
            self.transports[key] = self.reusable[key]
            return self.reusable[key]
        transport: Transport = factory(timeouts=timeouts, max_connections=spec.get("max_connections", 100), **options)
        if retry.attempts > 1 or breaker.failures or bulkhead.max_concurrent:
            transport = ResilientTransport(
                transport, timeouts=timeouts, retry=retry, breaker=breaker, bulkhead=bulkhead, name=doc.data["backend"]
            )
        self.transports[key] = transport
        return transport

    def _backend(
        self, doc: Document, base_path: str, default_chain: list
    ) -> tuple[list[CompiledRoute], Upstream | None] | None:
        data = doc.data
        interp = Interpolation(self.environ)
        if "upstream" not in data:  # a file of routes that features answer (each names the upstreams it calls)
            return self._routes(doc, base_path, default_chain, None, [], interp), None
        upstream_data = interp.tree(data["upstream"])
        auth_spec = upstream_data.get("auth")
        template_env = env_names(data["upstream"].get("auth", {}))
        for r in data["routes"]:
            template_env += [n for n in env_names(r.get("request", {})) if n not in template_env]
        missing = list(dict.fromkeys([*interp.missing, *(n for n in template_env if n not in self.environ)]))
        self._note_unset(doc, interp, extra=[n for n in template_env if n not in self.environ])
        upstream = None
        try:
            timeouts = timeouts_of(data["upstream"].get("timeout"), interp)
        except ValueError as exc:
            self.errors.append(doc.error(("upstream", "timeout"), str(exc)))
            return None
        if data["upstream"].get("auth", {}).get("style") == "template":
            try:
                compile_value(data["upstream"]["auth"].get("value", ""), ["env"])
            except TemplateError as exc:
                self.errors.append(doc.error(("upstream", "auth", "value"), str(exc)))
        if not missing:
            url = upstream_data.get("url", "").rstrip("/")
            kind = data["upstream"].get("transport", "http1")
            factory = self.factories.get(kind)
            if factory is None:
                known = ", ".join(sorted(self.factories)) or "none installed"
                self.errors.append(
                    doc.error(("upstream", "transport"), f"unknown transport {kind!r}; installed: {known}")
                )
                return None
            if not url and hasattr(factory, "base_url"):  # a transport addressed otherwise (a broker list)
                url = factory.base_url(upstream_data).rstrip("/")
            problem = url_problem(url, url_schemes(factory))
            if problem:
                written = safe_url(  # as written (`${VAR}`), never the resolved secret
                    data["upstream"].get("url") or getattr(factory, "base_url", lambda _: "")(data["upstream"])
                )
                self.errors.append(doc.error(("upstream", "url"), f"upstream url {problem} (got {written!r})"))
                return None
            parts = urlsplit(url)  # what follows is always a path, so the origin is the one written
            url = f"{parts.scheme}://{parts.netloc}{parts.path}"
            transport = self._transport(data["upstream"], upstream_data, url, timeouts, doc)
            if transport is None:
                return None
            try:
                auth = build_upstream_auth(auth_spec, self.environ)
            except TemplateError as exc:
                self.errors.append(doc.error(("upstream", "auth"), str(exc)))
                return None
            upstream = Upstream(
                backend=data["backend"],
                url=url,
                auth=auth,
                transport=transport,
                timeouts=timeouts,
                headers=tuple((k.lower(), v) for k, v in upstream_data.get("headers", {}).items()),
                health=data["upstream"].get("health"),
                retries=data["upstream"].get("retry", {}).get("attempts", 3) > 1
                if "retry" in data["upstream"]
                else False,
                masker=Masker(upstream_secrets(data, self.environ, auth.secrets)),
            )
        return self._routes(doc, base_path, default_chain, upstream, missing, interp), upstream

    def _routes(
        self,
        doc: Document,
        base_path: str,
        default_chain: list,
        upstream: Upstream | None,
        missing: list[str],
        interp: Interpolation,
    ) -> list[CompiledRoute]:
        data = doc.data
        overrides = shorthands(doc, (), data, interp)
        routes = []
        for i, spec in enumerate(data["routes"]):
            route = self._route(
                doc, ("routes", i), spec, base_path, default_chain, overrides, upstream, missing, interp
            )
            if route:
                routes.append(route)
        names = [r["name"] for r in data["routes"]]
        for i, name in enumerate(names):
            if name in names[:i]:
                self.errors.append(
                    doc.error(
                        ("routes", i, "name"), f"route name {name!r} is used twice in backend {data['backend']!r}"
                    )
                )
        return routes

    def _referenced_env(self) -> dict[str, str]:
        """Every env variable any config document references, with its value (to keep out of messages)."""
        interp = Interpolation(self.environ)
        for doc in [self.raw.gateway, *self.raw.backends, *(d for docs in self.raw.folders.values() for d in docs)]:
            if doc is not None:
                interp.tree(doc.data)
        return {name: self.environ[name] for name in interp.referenced if self.environ.get(name)}

    def _note_unset(self, doc: Document | None, interp: Interpolation, extra: Sequence[str] = ()) -> None:
        for name in [*interp.missing, *extra]:
            if name not in self.unset:
                self.unset.append(name)
                if self.strict and doc is not None:  # located at the first value that reads it
                    where = first_reference(doc.data, name)
                    self.errors.append(doc.error(where or (), f"environment variable {name} is referenced but not set"))


def _canonical(options: dict[str, Any]) -> str:
    return json.dumps(options, sort_keys=True, default=str)
