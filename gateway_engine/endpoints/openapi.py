"""The OpenAPI 3.1 document of a loaded config: what a client can call, generated, never hand-written.

Every route becomes an operation with its path parameters (and their allowlists
or patterns), its query allowlist, the security its plugins demand (each plugin
may describe itself through ``Plugin.openapi_security``), the envelope it answers
with and, where the route declares ``request.schema``, its body schema. Upstream
URLs and paths are never included: the document is public.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from gateway_engine.compiled.model import BODY_METHODS, CompiledConfig, CompiledRoute

_ANY: dict[str, Any] = {}
_META = {
    "type": "object",
    "description": "Where and when the answer was made; routes may add keys.",
    "required": ["source", "timestamp", "requestId"],
    "properties": {
        "source": {"type": "string", "description": "The backend that answered (or `gateway`)."},
        "timestamp": {"type": "string", "format": "date-time"},
        "requestId": {"type": "string", "description": "Also in the `X-Request-Id` header."},
    },
}
SCHEMAS: dict[str, Any] = {
    "Meta": _META,
    "SuccessEnvelope": {
        "type": "object",
        "required": ["success", "data", "meta"],
        "properties": {
            "success": {"const": True},
            "data": {"description": "The upstream's (mapped) answer."},
            "meta": {"$ref": "#/components/schemas/Meta"},
        },
    },
    "Error": {
        "type": "object",
        "required": ["code", "message"],
        "properties": {
            "code": {"type": "string", "description": "Stable machine-readable code, e.g. `UPSTREAM_TIMEOUT`."},
            "message": {"type": "string"},
            "details": {"description": "More about the error, when known."},
        },
    },
    "ErrorEnvelope": {
        "type": "object",
        "required": ["success", "error", "meta"],
        "properties": {
            "success": {"const": False},
            "error": {"$ref": "#/components/schemas/Error"},
            "meta": {"$ref": "#/components/schemas/Meta"},
        },
    },
    "Health": {
        "type": "object",
        "required": ["status", "version", "routes", "unconfigured"],
        "properties": {
            "status": {"const": "ok"},
            "version": {"type": "string"},
            "routes": {"type": "integer"},
            "unconfigured": {"type": "array", "items": {"type": "string"}},
        },
    },
    "BackendHealth": {
        "type": "object",
        "required": ["status", "latency_ms", "checked_at"],
        "properties": {
            "status": {"enum": ["up", "down", "unconfigured"]},
            "latency_ms": {"type": ["number", "null"]},
            "checked_at": {"type": "string", "format": "date-time"},
            "critical": {"type": "boolean"},
            "error": {"type": "string"},
            "missing": {
                "type": "array",
                "items": {"type": "string"},
                "description": "Unset environment variables (names only).",
            },
        },
    },
    "BackendsHealth": {
        "type": "object",
        "required": ["status", "systems"],
        "properties": {
            "status": {"enum": ["operational", "degraded", "down"]},
            "systems": {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/BackendHealth"}},
        },
    },
}


def _json(ref: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}


def build_openapi(
    config: CompiledConfig,
    *,
    title: str = "gateway-engine",
    fragments: Iterable[Mapping[str, dict[str, Any]]] = (),
    webhooks: Iterable[Mapping[str, dict[str, Any]]] = (),
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the routes, the gateway's own endpoints and the path items features
    contribute (``fragments``; they may reference ``SuccessEnvelope`` and ``ErrorEnvelope``), with the
    requests the gateway itself sends (``webhooks``: OpenAPI 3.1's top-level section) when there are any."""
    schemas: dict[str, Any] = dict(SCHEMAS)
    schemes: dict[str, Any] = {}
    paths: dict[str, dict[str, Any]] = {}
    shapes: dict[tuple, tuple[str, list[str]]] = {}  # one path text per shape: /a/{id} and /a/{key} are one path
    for route in sorted(config.routes, key=lambda r: (r.path, r.methods)):
        text, names = shapes.setdefault(_shape(route), _path_text(route))
        rename = dict(zip(route.template.names, names))
        item = paths.setdefault(text, {})
        for method in route.methods:
            item[method.lower()] = _operation(route, method, rename, schemas, schemes)
    for fragment in fragments:
        for path, item in fragment.items():
            paths.setdefault(path, {}).update(item)
    sent = {name: item for section in webhooks for name, item in section.items()}
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": config.version,
            "description": "Generated from the gateway's configuration. Every answer is the envelope "
            "`{success, data | error, meta}`; errors carry a stable `error.code`.",
        },
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": schemes},
    }
    if sent:
        document["webhooks"] = dict(sorted(sent.items()))
    return document


def _shape(route: CompiledRoute) -> tuple:
    t = route.template
    return tuple("{}" if p else s for s, p in zip(t.segments, t.params)) + (("{path}",) if t.catch_all else ())


def _path_text(route: CompiledRoute) -> tuple[str, list[str]]:
    t = route.template
    parts = [f"{{{p}}}" if p else s for s, p in zip(t.segments, t.params)] + (
        [f"{{{t.catch_all}}}"] if t.catch_all else []
    )
    return "/" + "/".join(parts), list(t.names)


def _operation(
    route: CompiledRoute, method: str, rename: dict[str, str], schemas: dict, schemes: dict
) -> dict[str, Any]:
    rules = {r.name: r for r in route.param_rules}
    params = []
    for name in route.template.names:
        schema: dict[str, Any] = {"type": "string"}
        rule = rules.get(name)
        if rule is not None and rule.allowed is not None:
            schema["enum"] = sorted(rule.allowed)
        elif rule is not None and rule.pattern is not None:
            schema["pattern"] = f"^(?:{rule.pattern.pattern})$"
        param = {"name": rename[name], "in": "path", "required": True, "schema": schema}
        if name == route.template.catch_all:
            param["description"] = "The rest of the path; it may contain `/`."
        params.append(param)
    if route.request.query == "allow":
        params += [
            {"name": q, "in": "query", "required": False, "schema": {"type": "string"}}
            for q in sorted(route.request.query_allow)
        ]
    enveloped = any(p.name == "envelope" for p in route.plugins)
    ok = str(route.response.status if route.response is not None and route.response.status else 200)
    errors = {"description": "An error, as the error envelope.", "content": _json("ErrorEnvelope")}
    responses: dict[str, Any] = {
        ok: {"description": "Success.", "content": _json("SuccessEnvelope")}
        if enveloped
        else {"description": "The upstream's answer, passed through."},
        "default": errors
        if enveloped
        else {"description": "Gateway errors use the error envelope; upstream errors pass through."},
    }
    op: dict[str, Any] = {
        "operationId": route.qualified_name + (f".{method.lower()}" if len(route.methods) > 1 else ""),
        "tags": [route.backend],
        "summary": route.description or route.name,
        "parameters": params,
        "responses": responses,
        "security": _security(route, schemes),
    }
    source = route.request.body_schema_source
    if source is not None:
        ref = _body_component(route, source, schemas)
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": {"$ref": ref}}}}
        responses["400"] = {
            "description": "The body does not match the schema (`VALIDATION_ERROR`, every violation listed).",
            "content": _json("ErrorEnvelope"),
        }
    elif method in BODY_METHODS and method != "DELETE":
        op["requestBody"] = {"required": False, "content": {"application/json": {"schema": _ANY}}}
    if route.handler is not None:  # a feature answers this route: it describes its answers
        fragment = route.handler.openapi(enveloped)
        responses.update(fragment.get("responses", {}))
        op.update({k: v for k, v in fragment.items() if k != "responses"})
    if op["security"]:
        responses["401"] = {"description": "Missing or invalid credentials.", "content": _json("ErrorEnvelope")}
        responses["403"] = {"description": "Authenticated, but not allowed here.", "content": _json("ErrorEnvelope")}
    return op


def _security(route: CompiledRoute, schemes: dict[str, Any]) -> list[dict[str, list[str]]]:
    """OR of ANDs: each plugin's alternatives combined with every other plugin's."""
    requirement: list[dict[str, list[str]]] = [{}]
    for plugin in route.plugins:
        spec = plugin.openapi_security()
        if not spec:
            continue
        schemes.update(spec.get("schemes", {}))
        alternatives = spec.get("requirement") or [{}]
        requirement = [{**a, **b} for a in requirement for b in alternatives]
    return [] if requirement == [{}] else requirement


def _body_component(route: CompiledRoute, source: dict[str, Any], schemas: dict[str, Any]) -> str:
    """The route's body schema as a component; its ``$defs`` hoisted so ``#/$defs/x`` refs still resolve."""
    name = f"{route.qualified_name}.body"
    defs = {k: f"{name}.{re.sub(r'[^A-Za-z0-9._-]', '_', k)}" for k in source.get("$defs", {})}

    def rewrite(node: Any) -> Any:
        if isinstance(node, dict):
            out = {k: rewrite(v) for k, v in node.items() if k not in ("$schema", "$id", "$defs")}
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/") and ref[8:] in defs:
                out["$ref"] = f"#/components/schemas/{defs[ref[8:]]}"
            elif ref == "#":
                out["$ref"] = f"#/components/schemas/{name}"
            return out
        return [rewrite(v) for v in node] if isinstance(node, list) else node

    for key, component in defs.items():
        schemas[component] = rewrite(source["$defs"][key])
    schemas[name] = rewrite(source)
    return f"#/components/schemas/{name}"
