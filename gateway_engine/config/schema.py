"""JSON Schema validation of config documents, every error located in its file."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator

from gateway_engine.config.documents import Document
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
            allowed = ", ".join(sorted(err.schema.get("properties", {})))
            for key in err.instance:
                if key not in err.schema.get("properties", {}):
                    errors.append(doc.error(path + (key,), f"unknown key {key!r}; allowed here: {allowed}"))
            continue
        errors.append(doc.error(path, _message(err)))
    return errors


def _message(err: Any) -> str:
    if err.validator in ("anyOf", "oneOf") and err.context:
        best = min(err.context, key=lambda e: len(list(e.absolute_path)) * -1)
        return f"{err.message.split(' is not valid under')[0]} is not valid: {best.message}"
    if err.validator == "pattern" and err.schema.get("description"):  # a regex alone rarely says what is wanted
        return f"{err.message} ({err.schema['description'].split('. ')[0].rstrip('.')})"
    return err.message


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
