"""The API explorer at ``{base_path}/docs``: Swagger UI served by the gateway itself, no CDN.

The assets come from the ``swagger-ui-bundle`` package (Swagger UI 4.15.5), which
reads OpenAPI 3.0 only; the page therefore loads a 3.0 rendering of the 3.1
document (``openapi_30``), while ``openapi.json`` stays 3.1.
"""

from __future__ import annotations

import copy
from functools import cache
from importlib import resources
from typing import Any

import jinja2
from swagger_ui_bundle import swagger_ui_path

_TEMPLATES = resources.files("gateway_engine.endpoints") / "templates"
_ENV = jinja2.Environment(loader=jinja2.PackageLoader("gateway_engine.endpoints", "templates"), autoescape=True)
_JS, _CSS = "application/javascript; charset=utf-8", "text/css; charset=utf-8"
#: file name → (content type, where it is shipped)
ASSETS = {
    "swagger-ui-bundle.js": (_JS, swagger_ui_path),
    "swagger-ui.css": (_CSS, swagger_ui_path),
    "favicon-32x32.png": ("image/png", swagger_ui_path),
    "docs-init.js": (_JS, _TEMPLATES),
    "docs.css": (_CSS, _TEMPLATES),
}
#: the page runs only its own scripts; Swagger UI needs inline styles and data: images
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


@cache
def asset(name: str) -> tuple[str, bytes]:
    """``(content type, bytes)`` of one asset, read once."""
    content_type, folder = ASSETS[name]
    return content_type, (folder / name).read_bytes()


def page(*, title: str, assets: str, spec_url: str) -> bytes:
    return _ENV.get_template("docs.html").render(title=title, assets=assets, spec_url=spec_url).encode("utf-8")


# -- OpenAPI 3.1 → 3.0, for Swagger UI 4 -----------------------------------------
_SCHEMA_MAPS = ("properties",)
_SCHEMA_ONE = ("items", "additionalProperties", "not")
_SCHEMA_LISTS = ("allOf", "anyOf", "oneOf")
_DROP = {
    "$schema",
    "$id",
    "$anchor",
    "$comment",
    "$defs",
    "$dynamicRef",
    "$dynamicAnchor",
    "prefixItems",
    "contains",
    "minContains",
    "maxContains",
    "dependentRequired",
    "dependentSchemas",
    "unevaluatedProperties",
    "unevaluatedItems",
    "if",
    "then",
    "else",
    "propertyNames",
    "patternProperties",
    "contentMediaType",
    "contentEncoding",
    "const",
    "examples",
}


def openapi_30(doc: dict[str, Any]) -> dict[str, Any]:
    """The same document in OpenAPI 3.0.3 terms (JSON Schema 2020-12 keywords mapped or dropped)."""
    out = copy.deepcopy(doc)
    out["openapi"] = "3.0.3"
    components = out.get("components", {})
    components["schemas"] = {k: _schema_30(v) for k, v in components.get("schemas", {}).items()}
    for item in out.get("paths", {}).values():
        for op in item.values():
            for param in op.get("parameters", []):
                param["schema"] = _schema_30(param["schema"])
            for holder in [op.get("requestBody", {}), *op.get("responses", {}).values()]:
                for media in holder.get("content", {}).values():
                    media["schema"] = _schema_30(media.get("schema", {}))
    return out


def _schema_30(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    out = {k: v for k, v in node.items() if k not in _DROP}
    if "const" in node:
        out["enum"] = [node["const"]]
    if node.get("examples"):
        out["example"] = node["examples"][0]
    types = node.get("type")
    if isinstance(types, list):
        concrete = [t for t in types if t != "null"]
        out.pop("type")
        if "null" in types:
            out["nullable"] = True
        if len(concrete) == 1:
            out["type"] = concrete[0]
        elif concrete:
            out["anyOf"] = [{"type": t} for t in concrete]
    for bound in ("Minimum", "Maximum"):
        value = node.get("exclusive" + bound)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[bound.lower()] = value
            out["exclusive" + bound] = True
    for key in _SCHEMA_MAPS:
        if isinstance(out.get(key), dict):
            out[key] = {name: _schema_30(sub) for name, sub in out[key].items()}
    for key in _SCHEMA_ONE:
        if isinstance(out.get(key), dict):
            out[key] = _schema_30(out[key])
    for key in _SCHEMA_LISTS:
        if isinstance(out.get(key), list):
            out[key] = [_schema_30(sub) for sub in out[key]]
    return out
