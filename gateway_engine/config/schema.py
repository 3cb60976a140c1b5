"""JSON Schema validation of config documents, every error located in its file."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator

from gateway_engine.config.documents import Document
from gateway_engine.config.suggest import did_you_mean, explain_pattern
from gateway_engine.foundation.errors import ConfigError


@cache
def schema(name: str) -> dict[str, Any]:
    """The shipped schema ``schemas/<name>.schema.json``."""
    text = resources.files("gateway_engine_schemas").joinpath(f"{name}.schema.json").read_text("utf-8")
    return json.loads(text)


@cache
def _validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(schema(name))


def validate_document(doc: Document, name: str) -> list[ConfigError]:
    """Every schema violation of ``doc``, most specific first (never just the first)."""
    return validate_value(doc, (), doc.data, _validator(name))


def validate_value(doc: Document, base: tuple, value: Any, validator: Draft202012Validator) -> list[ConfigError]:
    errors = []
    for err in sorted(validator.iter_errors(value), key=lambda e: [str(p) for p in e.absolute_path]):
        path = base + tuple(err.absolute_path)
        if err.validator == "additionalProperties" and isinstance(err.instance, dict):
            known = err.schema.get("properties", {})
            allowed = ", ".join(sorted(known))
            for key in err.instance:
                if key not in known:
                    hint = did_you_mean(str(key), known)
                    errors.append(doc.error(path + (key,), f"unknown key {key!r}{hint}; allowed here: {allowed}"))
            continue
        errors.append(doc.error(path, _message(err)))
    return errors


_KINDS = {
    "string": "a string",
    "number": "a number",
    "integer": "an integer",
    "boolean": "true or false",
    "object": "a mapping",
    "array": "a list",
    "null": "null",
}


def _message(err: Any) -> str:
    if err.validator in ("anyOf", "oneOf") and err.context:
        return _alternatives(err)
    if err.validator == "pattern":  # a regex alone rarely says what is wanted
        words = explain_pattern(err.validator_value)
        text = f"{err.instance!r} is not valid: {words}" if words else err.message
        if err.schema.get("description"):
            text += f" ({err.schema['description'].split('. ')[0].rstrip('.')})"
        return text
    return err.message


def _alternatives(err: Any) -> str:
    """One of several shapes: the error of the one shape whose type fits the value, else the shapes wanted."""
    branches: dict[int, list[Any]] = {}
    for sub in err.context:
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)
    fitting = [subs for subs in branches.values() if not any(s.validator == "type" and not s.path for s in subs)]
    if len(fitting) == 1:
        best = max(fitting[0], key=lambda s: len(s.path))  # the deepest problem is the most specific one
        where = ".".join(str(p) for p in best.path)
        return (f"{where}: " if where else "") + _message(best)
    if err.schema.get("description"):  # what the alternatives together mean, as the schema says it
        return f"{err.instance!r} is not valid: {err.schema['description']}"
    wanted = [_shape(branch) for branch in err.validator_value]
    return f"{err.instance!r} is not valid here: expected {' or '.join(dict.fromkeys(wanted))}"


def _shape(branch: dict[str, Any]) -> str:
    if branch.get("description"):
        return branch["description"].split(". ")[0].rstrip(".")
    if isinstance(branch.get("pattern"), str) and explain_pattern(branch["pattern"]):
        return f"a string where {explain_pattern(branch['pattern'])}"
    if "const" in branch:
        return repr(branch["const"])
    if "enum" in branch:
        return "one of " + ", ".join(repr(v) for v in branch["enum"])
    kinds = branch.get("type", [])
    kinds = [kinds] if isinstance(kinds, str) else kinds
    text = " or ".join(_KINDS.get(k, k) for k in kinds) or "a value"
    if branch.get("required"):
        text += " with " + ", ".join(branch["required"])
    return text


def json_schema_validator(value: Any) -> Draft202012Validator:
    """A validator for a schema written in config; SchemaError (with ``message``/``absolute_path``) if it is not one."""
    Draft202012Validator.check_schema(value)
    return Draft202012Validator(value)


def options_validator(options_schema: dict[str, Any]) -> Draft202012Validator:
    return Draft202012Validator(options_schema)


def fill_defaults(options_schema: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """Options with the schema's top-level defaults filled in (what a plugin constructor receives)."""
    filled = dict(options)
    for key, prop in options_schema.get("properties", {}).items():
        if key not in filled and "default" in prop:
            filled[key] = json.loads(json.dumps(prop["default"]))
    return filled
