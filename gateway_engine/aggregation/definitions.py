"""A route's ``backends:`` compiled at load: one call per entry, the dependency graph, the merge plan.

Each entry becomes a route-like call on the named backend's own upstream (its URL, auth,
timeouts, resilience and pooled transport), so it is sent exactly as a single route's call
is. What a call's templates read of ``results`` is its dependencies; a reference to no
backend, a cycle, or two calls writing one key of the answer is a located validate error.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from gateway_engine.compiled.features import OwnedRoute
from gateway_engine.compiled.model import CompiledConfig, CompiledRoute, Upstream
from gateway_engine.compiled.plans import REQUEST_NAMES, PlanCompiler
from gateway_engine.compiled.routing import UpstreamPath
from gateway_engine.compiled.upstream_settings import owned_query
from gateway_engine.config.durations import parse_duration
from gateway_engine.config.templates import attributes_read
from gateway_engine.foundation.errors import ConfigError

from .handler import AggregateHandler, Call
from .shaping import Shape

DEFAULT_TOTAL = 30.0
CALL_NAMES = (*REQUEST_NAMES, "results")  # a backend's templates also read the results it waits for
# the client's validators and ranges describe the merged answer, never one backend's
CONDITIONAL = frozenset({"if-none-match", "if-modified-since", "if-match", "if-unmodified-since", "if-range", "range"})
# keys that make a route a single upstream call: they have no meaning next to `backends`
SINGLE_CALL_KEYS = ("upstream_path", "upstream_method", "request", "response", "presign")


def compile_aggregates(
    owned: list[OwnedRoute], core: CompiledConfig, errors: list[ConfigError]
) -> dict[str, AggregateHandler]:
    upstreams = {u.backend: u for u in core.upstreams}
    unset = {r.backend: r.missing_env for r in core.routes if r.upstream is None and r.missing_env}
    handlers = {}
    for item in owned:
        handler = _Aggregate(item, upstreams, unset, errors).compile()
        if handler is not None:
            handlers[item.route.qualified_name] = handler
    return handlers


class _Aggregate:
    """One route's backends, checked together (names, references and keys are route-wide)."""

    def __init__(
        self,
        item: OwnedRoute,
        upstreams: dict[str, Upstream],
        unset: dict[str, tuple[str, ...]],
        errors: list[ConfigError],
    ) -> None:
        self.route, self.doc, self.path, self.spec = item.route, item.document, item.path, item.spec
        self.upstreams, self.unset, self.errors = upstreams, unset, errors
        self.plans = PlanCompiler(errors)

    def error(self, path: tuple, message: str) -> None:
        self.errors.append(self.doc.error(self.path + path, message))

    def compile(self) -> AggregateHandler | None:
        before = len(self.errors)
        if "backends" not in self.spec:
            self.error(("timeout",), "`timeout` is the total time of a route's `backends`; this route has none")
            return None
        for key in SINGLE_CALL_KEYS:
            if key in self.spec:
                self.error(
                    (key,), f"a route with `backends` makes no single upstream call: `{key}` belongs in a backend entry"
                )
        total = self._duration(("timeout",), self.spec.get("timeout"), DEFAULT_TOTAL)
        entries = self.spec["backends"]
        names = [e["name"] for e in entries]
        for i, name in enumerate(names):
            if name in names[:i]:
                self.error(("backends", i, "name"), f"backend entry {name!r} is named twice in this route")
        calls = [c for i, e in enumerate(entries) if (c := self._call(i, e, set(names), total)) is not None]
        if len(self.errors) > before:
            return None
        self._check_writes(calls)
        order = self._order(calls)
        if order is None or len(self.errors) > before:
            return None
        missing = tuple(dict.fromkeys(n for c in calls if c.required for n in c.route.missing_env))
        return AggregateHandler(tuple(calls), order, total, missing)

    def _duration(self, path: tuple, value: Any, default: float) -> float:
        if value is None:
            return default
        try:
            return parse_duration(value)
        except ValueError as exc:
            self.error(path, str(exc))
            return default

    def _call(self, i: int, entry: dict[str, Any], names: set[str], total: float) -> Call | None:
        at = ("backends", i)
        backend = entry["backend"]
        upstream = self.upstreams.get(backend)
        if upstream is None and backend not in self.unset:
            known = ", ".join(sorted({*self.upstreams, *self.unset})) or "none"
            self.error(at + ("backend",), f"no backend {backend!r} with an upstream in routes.d; known: {known}")
            return None
        written = entry["path"]
        if not (written.startswith("/") and not written.startswith("//")):
            self.error(
                at + ("path",), "a backend's path must start with a single '/': it is appended to its upstream url"
            )
            return None
        request_spec = {"query": "none", **entry.get("request", {})}  # the client's query reaches no backend unasked
        plan = self.plans.request(self.doc, self.path + at + ("request",), request_spec, names=CALL_NAMES)
        catch_all = self.route.template.catch_all  # the route's `{rest:path}` may span segments here too
        upstream_path = UpstreamPath(written, frozenset([catch_all]) if catch_all else frozenset())
        computed = set(request_spec.get("params", {}))
        for name in upstream_path.names:
            if name not in self.route.template.names and name not in computed:
                self.error(
                    at + ("path",),
                    f"path names {{{name}}}: neither a path parameter of the route nor in request.params",
                )
        deps: list[str] = []
        for ref in attributes_read(entry.get("request", {}), "results"):
            if ref is None:
                self.error(at + ("request",), "read a result as results.<backend name> (e.g. results.order.id)")
            elif ref not in names:
                self.error(at + ("request",), f"results.{ref}: this route has no backend entry named {ref!r}")
            elif ref not in deps:
                deps.append(ref)
        shape = self._shape(at + ("response",), entry.get("response", {}))
        required = entry.get("required", True)
        if required and "fallback" in entry:
            self.error(
                at + ("fallback",),
                "a required backend has no fallback: its failure fails the route (set required: false)",
            )
        if shape is not None and shape.group is None and "fallback" in entry:
            fallback = entry["fallback"]
            if not isinstance(fallback, dict) or not set(fallback) <= shape.writes:
                self.error(
                    at + ("fallback",),
                    f"without a group the fallback is an object of the keys this backend writes ({', '.join(sorted(shape.writes))})",
                )
        default = upstream.timeouts.total if upstream is not None else total
        timeout = self._duration(at + ("timeout",), entry.get("timeout"), min(default, total))
        if timeout > total:
            self.error(at + ("timeout",), f"{timeout:g}s is more than the route's total of {total:g}s")
        if plan is None or shape is None:
            return None
        return Call(
            name=entry["name"],
            route=self._sub_route(entry, backend, upstream, upstream_path, plan, request_spec),
            deps=tuple(deps),
            required=required,
            fallback=entry.get("fallback"),
            timeout=timeout,
            shape=shape,
            line=self.doc.where(self.path + at)[0],
        )

    def _shape(self, at: tuple, spec: dict[str, Any]) -> Shape | None:
        target = spec.get("target", "")
        shape = Shape(
            target=tuple(target.split(".")) if target else (),
            allow=tuple(spec["allow"]) if "allow" in spec else None,
            deny=frozenset(spec.get("deny", [])),
            rename=dict(spec.get("rename", {})),
            group=spec.get("group"),
        )
        if shape.group is None and shape.allow is None:
            self.error(
                at,
                "without `group`, list the keys this backend adds to the answer in `allow` (so collisions are found at load)",
            )
            return None
        return shape

    def _sub_route(
        self,
        entry: dict[str, Any],
        backend: str,
        upstream: Upstream | None,
        path: UpstreamPath,
        plan: Any,
        request_spec: dict[str, Any],
    ) -> CompiledRoute:
        """The call as a route on the backend's upstream, so the proxy builds and sends it as any other."""
        route = self.route
        reserved = set(route.reserved_headers) | {h.lower() for h in request_spec.get("headers", {})}
        if upstream is not None:
            reserved |= {k for k, _ in upstream.headers} | getattr(upstream.auth, "header_names", set())
        method = entry.get("method", "GET")
        return dataclasses.replace(
            route,
            name=f"{route.name}.{entry['name']}",
            backend=backend,
            upstream_path=path,
            upstream_method=method,
            upstream=upstream,
            upstream_template=f"{backend} {method} {path.text}",
            missing_env=self.unset.get(backend, ()),
            request=plan,
            response=None,
            param_rules=(),
            strip_headers=route.strip_headers | CONDITIONAL,
            reserved_headers=frozenset(reserved),
            needs_response_body=True,
            owned_query=owned_query(request_spec.get("query"), upstream),
            handler=None,
        )

    def _check_writes(self, calls: list[Call]) -> None:
        """Two backends writing one key is a race in other gateways; here it does not load."""
        seen: dict[str, str] = {}
        for call in calls:
            for key in sorted(call.shape.writes):
                if key in seen:
                    i = next(i for i, e in enumerate(self.spec["backends"]) if e["name"] == call.name)
                    where = "group" if call.shape.group is not None else "allow"
                    self.error(
                        ("backends", i, "response", where),
                        f"backends {seen[key]!r} and {call.name!r} both write key {key!r} of the answer; "
                        "give one a `group` or `rename` the key",
                    )
                else:
                    seen[key] = call.name

    def _order(self, calls: list[Call]) -> tuple[Call, ...] | None:
        """A topological order (declaration order among the ready), or None after reporting a cycle."""
        by_name = {c.name: c for c in calls}
        done: list[Call] = []
        placed: set[str] = set()
        while len(done) < len(calls):
            ready = [c for c in calls if c.name not in placed and all(d in placed for d in c.deps)]
            if not ready:
                self._report_cycle([c for c in calls if c.name not in placed], by_name)
                return None
            done.append(ready[0])
            placed.add(ready[0].name)
        return tuple(done)

    def _report_cycle(self, left: list[Call], by_name: dict[str, Call]) -> None:
        start = left[0]
        trail = [start.name]
        node = start
        while True:  # every call left waits on one that is left too: walking them must come back
            node = by_name[next(d for d in node.deps if d in {c.name for c in left})]
            if node.name in trail:
                cycle = trail[trail.index(node.name) :] + [node.name]
                break
            trail.append(node.name)
        i = next(i for i, e in enumerate(self.spec["backends"]) if e["name"] == cycle[0])
        self.error(("backends", i, "request"), f"backends wait on each other in a cycle: {' -> '.join(cycle)}")
