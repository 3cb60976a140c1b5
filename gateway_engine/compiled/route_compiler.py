"""One route from its YAML: public path, upstream path, plans, plugin chain; and the route table they make.

Part of the compiler (mixed into it): a route's problems go to the compiler's errors.
"""

from __future__ import annotations

import dataclasses
from functools import cache

from gateway_engine.compiled.chains import PluginChains, chain_tables, shorthands
from gateway_engine.compiled.features import OwnedRoute
from gateway_engine.compiled.model import (
    FORWARDING_HEADERS,
    CompiledConfig,
    CompiledRoute,
    Contribution,
    Upstream,
)
from gateway_engine.compiled.plans import PlanCompiler, encoded_slash_params
from gateway_engine.compiled.routing import PathTemplate, PathTemplateError, Router, UpstreamPath
from gateway_engine.compiled.upstream_settings import owned_query
from gateway_engine.config.documents import Document
from gateway_engine.config.env import Interpolation
from gateway_engine.config.schema import schema
from gateway_engine.foundation.errors import ConfigError, GatewayError
from gateway_engine.upstreams.seam import TransportFactory

CREDENTIAL_HEADERS = frozenset({"authorization", "x-api-key", "cookie", "proxy-authorization"})


@cache
def feature_route_keys() -> dict[str, str]:
    """Route keys the schema marks as a feature's (``x-feature``), by key: the feature's name."""
    properties = schema("routes")["properties"]["routes"]["items"]["properties"]
    return {key: spec["x-feature"] for key, spec in properties.items() if "x-feature" in spec}


class RouteCompiler(PluginChains):
    """Compiles routes; needs the compiler's errors, plugin registry and instances."""

    environ: dict[str, str]
    route_owners: dict[str, str]
    owned: dict[str, list[OwnedRoute]]
    route_keys: tuple[str, ...]  # the keys features own on a route
    factories: dict[str, TransportFactory]  # the transports by name

    def _check_prefix(self, doc: Document, prefixes: list[tuple[str, Document]]) -> None:
        prefix = doc.data["prefix"].rstrip("/")
        for other, odoc in prefixes:
            if prefix == other or prefix.startswith(other + "/") or other.startswith(prefix + "/"):
                self.errors.append(
                    doc.error(("prefix",), f"prefix {prefix!r} overlaps prefix {other!r} of {odoc.file}")
                )
        prefixes.append((prefix, doc))

    def _route(
        self,
        doc: Document,
        path: tuple,
        spec: dict,
        base_path: str,
        default_chain: list,
        overrides: list,
        upstream: Upstream | None,
        missing: list[str],
        interp: Interpolation,
    ) -> CompiledRoute | None:
        errors_before = len(self.errors)
        owners = sorted({self.route_owners[k] for k in spec if k in self.route_owners})
        orphan = next((k for k in spec if k in feature_route_keys() and k not in self.route_owners), None)
        if orphan is not None:  # never a silent single upstream call in its place
            feature = feature_route_keys()[orphan]
            self.errors.append(
                doc.error(path + (orphan,), f"`{orphan}` needs the {feature} feature, which is not installed")
            )
            return None
        if not owners and "upstream" not in doc.data:
            self.errors.append(
                doc.error(path, "this route calls the backend's upstream, but the file declares no `upstream`")
            )
            return None
        public = (
            base_path
            + doc.data["prefix"].rstrip("/")
            + ("" if spec["path"] in ("", "/") else "/" + spec["path"].strip("/"))
        )
        try:
            template = PathTemplate.parse(public)
        except PathTemplateError as exc:
            self.errors.append(doc.error(path + ("path",), str(exc)))
            return None
        catch_all = frozenset([template.catch_all]) if template.catch_all else frozenset()
        written_path = spec.get("upstream_path", spec["path"])
        if written_path and not (written_path.startswith("/") and not written_path.startswith("//")):
            self.errors.append(
                doc.error(
                    path + ("upstream_path",),
                    "upstream_path must start with a single '/': "
                    "it is appended to upstream.url, whose host and port it must never change",
                )
            )
            return None
        rules = spec.get("params", {})
        slash_ok = encoded_slash_params(rules)
        upstream_path = UpstreamPath(written_path, catch_all, slash_ok)
        for name in sorted(slash_ok & (upstream_path.path_names | catch_all)):
            self.errors.append(
                doc.error(
                    path + ("params", name, "allow_encoded_slash"),
                    f"{{{name}}} spans segments already; allow_encoded_slash is for one-segment parameters",
                )
            )
        computed = list(spec.get("request", {}).get("params", {}))
        for name in upstream_path.names:
            if name not in template.names and name not in computed:
                self.errors.append(
                    doc.error(
                        path + ("upstream_path",),
                        f"upstream_path names {{{name}}} but the path {spec['path']!r} has no such parameter",
                    )
                )
        plans = PlanCompiler(self.errors)
        request = plans.request(doc, path + ("request",), spec.get("request", {}), spec.get("presign"))
        response = plans.response(doc, path + ("response",), spec.get("response"))
        param_rules = plans.params(doc, path + ("params",), rules, [*template.names, *computed])
        for rule in param_rules:  # a mapped value is the config's own: refuse it here, not on every request
            for public, value in (rule.mapping or {}).items():
                try:
                    upstream_path.check(rule.name, value)
                except GatewayError as exc:
                    self.errors.append(
                        doc.error(path + ("params", rule.name, "map", public), f"{value!r}: {exc.message}")
                    )
        route_overrides = overrides + shorthands(doc, path, spec, interp)
        plugins = self._instantiate(self._chain_for(default_chain, route_overrides))
        if len(self.errors) > errors_before or plugins is None or request is None:
            return None
        methods = (spec["method"],) if isinstance(spec["method"], str) else tuple(spec["method"])
        request_plugins, response_chains = chain_tables(plugins)
        strip = set(CREDENTIAL_HEADERS)
        for p in plugins:
            strip |= {h.lower() for h in getattr(p, "strip_request_headers", ())}
        # CGI/WSGI upstreams read `X-User_Id` as `X-User-Id`: every name the gateway consumes, forwards or sets is reserved
        reserved = strip | request.forward_headers | FORWARDING_HEADERS
        reserved |= {h.lower() for h in spec.get("request", {}).get("headers", {})}
        if upstream is not None:
            reserved |= {k for k, _ in upstream.headers} | getattr(upstream.auth, "header_names", set())
        strip -= request.forward_headers
        written = doc.data.get("upstream", {})
        base_url = getattr(self.factories.get(written.get("transport", "http1")), "base_url", None)
        written_url = written.get("url") or (base_url(written) if base_url is not None and written else "")
        route = CompiledRoute(
            name=spec["name"],
            backend=doc.data["backend"],
            methods=methods,
            path=public,
            template=template,
            upstream_path=upstream_path,
            upstream_method=spec.get("upstream_method"),
            upstream=upstream,
            upstream_template=written_url.rstrip("/") + upstream_path.text,
            missing_env=tuple(missing),
            request=request,
            response=response,
            param_rules=param_rules,
            plugins=plugins,
            request_plugins=request_plugins,
            response_chains=response_chains,
            strip_headers=frozenset(strip),
            reserved_headers=frozenset(reserved),
            needs_response_body=(response is not None and response.maps_success)
            or any(p.needs_response_body for p in plugins),
            description=spec.get("description", ""),
            source_file=doc.file,
            source_line=doc.where(path)[0],
            owned_query=owned_query(spec.get("request", {}).get("query"), upstream),
            extensions={k: spec[k] for k in self.route_keys if k in spec},
        )
        for owner in owners:  # each owning feature sees it once every backend is compiled (and may answer it)
            self.owned.setdefault(owner, []).append(OwnedRoute(route, doc, path, spec))
        return route

    def _with_handlers(
        self, routes: list[CompiledRoute], owner: str, contribution: Contribution
    ) -> list[CompiledRoute]:
        """The routes, each one ``owner`` owns carrying the handler it contributed, if it did."""
        owned = {o.route.qualified_name for o in self.owned[owner]}
        out = []
        for route in routes:
            if route.qualified_name not in owned:
                out.append(route)
                continue
            handler = contribution.handlers.get(route.qualified_name)
            if handler is None:  # the feature only reads its keys (or said why not): the route stays as it is
                out.append(route)
                continue
            out.append(
                dataclasses.replace(
                    route, handler=handler, upstream_template=handler.summary, missing_env=handler.missing_env
                )
            )
        return out

    def _with_hooks(self, core: CompiledConfig, contributions: dict[str, Contribution]) -> CompiledConfig:
        """The routes with the after-answer hooks features contributed for them."""
        hooks: dict[str, list] = {}
        for contribution in contributions.values():
            for name, found in contribution.after_answer.items():
                hooks.setdefault(name, []).extend(found)
        if not hooks:
            return core
        routes = [_hooked(r, hooks[r.qualified_name]) if r.qualified_name in hooks else r for r in core.routes]
        return dataclasses.replace(core, routes=tuple(routes), router=self._router(routes))

    def _unanswered(self, routes: tuple[CompiledRoute, ...]) -> None:
        """A route of a file without ``upstream`` that no feature answered is an error, never a silent 503."""
        for route in routes:
            if route.upstream is None and not route.missing_env and route.handler is None:
                self.errors.append(
                    ConfigError(
                        f"route {route.qualified_name}: no upstream, and no feature answers it",
                        file=route.source_file,
                        line=route.source_line,
                        col=3,
                    )
                )

    def _router(self, routes: list[CompiledRoute]) -> Router[CompiledRoute]:
        seen: dict[tuple[str, tuple], CompiledRoute] = {}
        entries = []
        for route in routes:
            shape = tuple("{}" if p else s for s, p in zip(route.template.segments, route.template.params))
            shape += ("{path}",) if route.template.catch_all else ()
            for method in route.methods:
                key = (method, shape)
                if key in seen:
                    other = seen[key]
                    self.errors.append(
                        ConfigError(
                            f"{method} {route.path} duplicates route {other.qualified_name} ({other.source_file})",
                            file=route.source_file,
                            line=route.source_line,
                            col=3,
                            path=f"routes[{route.name}]",
                        )
                    )
                    continue
                seen[key] = route
                entries.append((method, route.template, route))
        return Router(entries)


def _hooked(route: CompiledRoute, hooks: list) -> CompiledRoute:
    """``route`` with ``hooks`` run after its answer."""
    return dataclasses.replace(route, after_answer=route.after_answer + tuple(hooks))
