"""mkdocs hook: the configuration reference is generated from the JSON Schemas at build time.

A page holding ``<!-- schema-reference: NAME -->`` gets a table of every key of ``schemas/NAME.schema.json``
(path, type, default, description); ``<!-- plugin-options: NAME -->`` gets the same table for an installed
plugin's ``options_schema``. The docs therefore cannot lag the schemas: a key added to a schema is in the
next build, and ``tests/test_docs_site.py`` checks that every property reaches the rendered reference.
"""

from __future__ import annotations

import json
import re
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
MARKER = re.compile(r"<!--\s*(schema-reference|plugin-options):\s*([A-Za-z0-9_*-]+)\s*-->")
BRANCHES = ("anyOf", "oneOf", "allOf")


def schema_names() -> list[str]:
    """Every schema the repository ships: ``schemas/<name>.schema.json``."""
    return sorted(p.name.removesuffix(".schema.json") for p in SCHEMAS.glob("*.schema.json"))


def load_schema(name: str) -> dict[str, Any]:
    return json.loads((SCHEMAS / f"{name}.schema.json").read_text())


def plugin_schemas() -> dict[str, dict[str, Any]]:
    """``options_schema`` of every installed plugin (entry-point group ``gateway_engine.plugins``)."""
    found = {}
    for ep in entry_points(group="gateway_engine.plugins"):
        found[ep.name] = getattr(ep.load(), "options_schema", None) or {"type": "object", "properties": {}}
    return dict(sorted(found.items()))


def rows(schema: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any], bool]]:
    """``(dotted path, sub-schema, required)`` for every property, depth first; lists add ``[]``."""
    out: list[tuple[str, dict[str, Any], bool]] = []
    required = set(schema.get("required", ()))
    for key, sub in schema.get("properties", {}).items():
        here = f"{path}.{key}" if path else key
        out.append((here, sub, key in required))
        out += rows(sub, here)
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict) and (extra.get("properties") or any(b in extra for b in BRANCHES)):
        out += rows(extra, f"{path}.<name>" if path else "<name>")
    if isinstance(schema.get("items"), dict):
        out += rows(schema["items"], f"{path}[]")
    for branch in BRANCHES:
        for sub in schema.get(branch, ()):
            out += rows(sub, path)
    seen: set[str] = set()
    return [r for r in out if not (r[0] in seen or seen.add(r[0]))]  # a key several branches share: once


def type_of(schema: dict[str, Any]) -> str:
    """A short human type: ``string``, ``integer``, ``one of `a`, `b` ``, ``list of string``, ..."""
    if "const" in schema:
        return f"`{json.dumps(schema['const'])}`"
    if "enum" in schema:
        return "one of " + ", ".join(f"`{json.dumps(v)}`" for v in schema["enum"])
    kind = schema.get("type")
    if kind == "array" and isinstance(schema.get("items"), dict):
        return f"list of {type_of(schema['items'])}"
    if isinstance(kind, list):
        return " or ".join(kind)
    if any("(ms|s|m|h)" in b.get("pattern", "") for b in schema.get("anyOf", ())):
        return "duration"  # a number of seconds or `500ms`, `10s`, `2m`, `1h`
    if kind:
        return "mapping" if kind == "object" else kind
    branches = [type_of(b) for name in BRANCHES for b in schema.get(name, ())]
    unique = list(dict.fromkeys(b for b in branches if b))
    return " or ".join(unique) or "any"


def _cell(text: str) -> str:
    """One table cell: one line, pipes escaped outside code spans (a table splits on them)."""
    parts = re.split(r"(`[^`]*`)", " ".join(text.split()))
    return "".join(p if p.startswith("`") else p.replace("|", "\\|") for p in parts)


def table(schema: dict[str, Any], prefix: str = "") -> str:
    lines = ["| key | type | default | description |", "| --- | --- | --- | --- |"]
    for path, sub, required in rows(schema):
        default = "required" if required else (f"`{json.dumps(sub['default'])}`" if "default" in sub else "")
        desc = sub.get("description", "")
        lines.append(f"| `{prefix}{path}` | {_cell(type_of(sub))} | {_cell(default)} | {_cell(desc)} |")
    if len(lines) == 2:
        return "No options."
    return "\n".join(lines)


def schema_page(name: str) -> str:
    schema = load_schema(name)
    intro = schema.get("description", "")
    return f"{intro}\n\nGenerated at build time from `schemas/{name}.schema.json` (installed with the package as `gateway_engine_schemas`).\n\n{table(schema)}\n"


def plugin_page(name: str) -> str:
    schemas = plugin_schemas()
    if name == "*":
        return "\n\n".join(f"### `{n}`\n\n{table(s)}" for n, s in schemas.items()) + "\n"
    return table(schemas[name]) + "\n"


def render(markdown: str) -> str:
    """The page with every marker replaced by its generated table."""

    def one(match: re.Match[str]) -> str:
        kind, name = match.groups()
        return schema_page(name) if kind == "schema-reference" else plugin_page(name)

    return MARKER.sub(one, markdown)


def on_page_markdown(markdown: str, **_: Any) -> str:  # the mkdocs hook
    return render(markdown)
