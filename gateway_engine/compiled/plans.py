"""Per-route request and response plans: what to change on the way up and on the way back.

Compiled once from a route's ``params``, ``request`` and ``response`` keys; the
proxy only runs them. Template and schema errors are reported with their location.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jsonschema.exceptions import SchemaError

from gateway_engine.config.bodies import BodyValidator, body_validator
from gateway_engine.config.documents import Document
from gateway_engine.config.durations import parse_duration
from gateway_engine.config.templates import TemplateError, compile_value
from gateway_engine.foundation.errors import ConfigError

REQUEST_NAMES = ("body", "query", "params", "headers", "identity", "env")
RESPONSE_NAMES = ("body", "status", "headers", "params", "query", "identity")


@dataclass(frozen=True)
class ParamRule:
    """Constraints on one path parameter: an allowlist, a pattern, or a mapping to upstream values."""

    name: str
    allowed: frozenset[str] | None
    pattern: re.Pattern[str] | None
    mapping: dict[str, str] | None

    def apply(self, value: str) -> str | None:
        """The upstream value, or None when ``value`` is not allowed."""
        if self.allowed is not None and value not in self.allowed:
            return None
        if self.pattern is not None and not self.pattern.fullmatch(value):
            return None
        return self.mapping.get(value, value) if self.mapping else value

    def describe(self) -> str:
        if self.allowed is not None:
            return "one of " + ", ".join(sorted(self.allowed))
        return f"matching {self.pattern.pattern}" if self.pattern else "valid"


def encoded_slash_params(spec: dict[str, Any]) -> frozenset[str]:
    """The parameters of a route's ``params`` rules that may hold ``/`` (sent as ``%2F``)."""
    return frozenset(name for name, rule in spec.items() if rule.get("allow_encoded_slash"))


@dataclass(frozen=True)
class FailRule:
    when: Callable[[dict[str, Any]], Any]
    status: int
    code: str
    message: str


@dataclass(frozen=True)
class RequestPlan:
    query: str  # "pass" | "none" | "allow"
    query_allow: frozenset[str]
    query_set: Any  # render(vars) -> dict, or None
    headers: Any  # render(vars) -> dict, or None
    body: Any  # render(vars) -> value, or None
    encoding: str
    forward_headers: frozenset[str]
    body_schema: BodyValidator | None = None
    body_schema_source: dict | None = None
    params: Any = None  # render(vars) -> {name: value}: computed path parameters
    presign: "Presign | None" = None
    query_brackets: bool = False

    @property
    def needs_body(self) -> bool:
        return self.body is not None or self.encoding == "form" or self.body_schema is not None

    @property
    def has_templates(self) -> bool:
        return (
            self.needs_body
            or self.headers is not None
            or self.query_set is not None
            or self.params is not None
            or self.presign is not None
        )


@dataclass(frozen=True)
class Presign:
    expires: int
    when: Any  # render(vars) -> truthy, or None for always


@dataclass(frozen=True)
class ResponsePlan:
    data: Any
    meta: Any
    error_code: Any
    error_message: Any
    status: int | None
    fail: tuple[FailRule, ...] = ()

    @property
    def maps_success(self) -> bool:
        """Whether a 2xx answer is read at all (an ``error``-only mapping leaves successes streaming)."""
        return self.data is not None or self.meta is not None or self.status is not None or bool(self.fail)


class PlanCompiler:
    """Compiles plans, collecting located errors instead of stopping at the first."""

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = errors

    def template(self, doc: Document, path: tuple, value: Any, names: tuple[str, ...]) -> Any:
        try:
            return compile_value(value, names)
        except TemplateError as exc:
            self.errors.append(doc.error(path, str(exc)))
            return None

    def params(self, doc: Document, path: tuple, spec: dict[str, Any], names: list[str]) -> tuple[ParamRule, ...]:
        rules = []
        for name, rule in spec.items():
            if name not in names:
                self.errors.append(doc.error(path + (name,), f"the path has no parameter {{{name}}}"))
                continue
            pattern = None
            if "pattern" in rule:
                try:
                    pattern = re.compile(rule["pattern"])
                except re.error as exc:
                    self.errors.append(doc.error(path + (name, "pattern"), f"invalid regular expression: {exc}"))
                    continue
            mapping = {str(k): str(v) for k, v in rule.get("map", {}).items()} or None
            allowed = rule.get("enum")
            if allowed is None and mapping:
                allowed = list(mapping)
            if allowed is None and pattern is None:
                continue  # no constraint (e.g. only allow_encoded_slash, which the upstream path applies)
            rules.append(
                ParamRule(name, frozenset(map(str, allowed)) if allowed is not None else None, pattern, mapping)
            )
        return tuple(rules)

    def request(
        self,
        doc: Document,
        path: tuple,
        spec: dict[str, Any],
        presign: dict[str, Any] | None = None,
        names: tuple[str, ...] = REQUEST_NAMES,
    ) -> RequestPlan:
        """``names``: what its templates may read (a feature calling upstreams may offer more)."""
        query = spec.get("query", "pass")
        query_set = None
        allow: frozenset[str]
        if isinstance(query, str):
            mode, allow = query, frozenset()
        else:
            mode, allow = ("allow" if "allow" in query else "pass"), frozenset(query.get("allow", []))
            if "set" in query:
                query_set = self.template(doc, path + ("query", "set"), query["set"], names)
        validator = None
        if "schema" in spec:
            try:
                validator = body_validator(spec["schema"])
            except SchemaError as exc:
                self.errors.append(doc.error(path + ("schema",), f"invalid JSON Schema: {exc.message}"))
        return RequestPlan(
            query=mode,
            query_allow=allow,
            query_set=query_set,
            headers=self.template(doc, path + ("headers",), spec["headers"], names) if "headers" in spec else None,
            body=self.template(doc, path + ("body",), spec["body"], names) if "body" in spec else None,
            encoding=spec.get("encoding", "json"),
            forward_headers=frozenset(h.lower() for h in spec.get("forward_headers", [])),
            body_schema=validator,
            body_schema_source=spec.get("schema"),
            params=self.template(doc, path + ("params",), spec["params"], names) if "params" in spec else None,
            presign=self._presign(doc, path[:-1] + ("presign",), presign) if presign is not None else None,
            query_brackets=isinstance(query, dict) and query.get("style", "json") == "brackets",
        )

    def _presign(self, doc: Document, path: tuple, spec: dict[str, Any]) -> Presign | None:
        try:
            expires = int(parse_duration(spec.get("expires", "15m")))
        except ValueError as exc:
            self.errors.append(doc.error(path + ("expires",), str(exc)))
            return None
        if not 1 <= expires <= 7 * 24 * 3600:
            self.errors.append(doc.error(path + ("expires",), "a presigned URL lives between 1 second and 7 days"))
            return None
        when = self.template(doc, path + ("when",), spec["when"], REQUEST_NAMES) if "when" in spec else None
        return Presign(expires, when)

    def response(self, doc: Document, path: tuple, spec: dict[str, Any] | None) -> ResponsePlan | None:
        if not spec:
            return None
        error = spec.get("error", {})
        fail = []
        for i, rule in enumerate(spec.get("fail", [])):
            when = self.template(doc, path + ("fail", i, "when"), rule["when"], RESPONSE_NAMES)
            if when is not None:
                fail.append(
                    FailRule(
                        when,
                        rule.get("status", 404),
                        rule.get("code", "NOT_FOUND"),
                        rule.get("message", "The requested resource does not exist."),
                    )
                )
        return ResponsePlan(
            data=self.template(doc, path + ("data",), spec["data"], RESPONSE_NAMES) if "data" in spec else None,
            meta=self.template(doc, path + ("meta",), spec["meta"], RESPONSE_NAMES) if "meta" in spec else None,
            error_code=self.template(doc, path + ("error", "code"), error["code"], RESPONSE_NAMES)
            if "code" in error
            else None,
            error_message=self.template(doc, path + ("error", "message"), error["message"], RESPONSE_NAMES)
            if "message" in error
            else None,
            status=spec.get("status"),
            fail=tuple(fail),
        )
