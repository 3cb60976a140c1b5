"""Bounds on the JSON the gateway parses: a nesting depth, and schema validation that stops early.

A small body must never cost more than its size: the depth walk is iterative, validation stops after
``MAX_PROBLEMS`` errors, and its messages are built from the schema, never from a repr of the instance.
"""

from __future__ import annotations

from itertools import islice
from typing import Any

from jsonschema import Draft202012Validator, ValidationError, validators

DEFAULT_DEPTH = 64  # ``limits.body_depth`` unless set
#: the largest ``limits.body_depth``: deeper data could not be validated (recursion) nor serialised (orjson: 254)
MAX_DEPTH = 128
MAX_PROBLEMS = 20
MAX_MESSAGE = 200


class TooDeep(ValueError):
    """Parsed JSON nests deeper than allowed (``fromjson`` in a template raises it)."""


def too_deep(value: Any, limit: int, raw: bytes | None = None) -> bool:
    """Whether containers in ``value`` nest deeper than ``limit`` levels (``[1]`` is one level).

    Iterative, so any depth is safe to check; the raw text, when given, skips the walk for
    bodies with too few brackets to nest that deep.
    """
    if not isinstance(value, (dict, list)):
        return False
    if raw is not None and raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        for child in node.values() if isinstance(node, dict) else node:
            if isinstance(child, (dict, list)):
                stack.append((child, depth + 1))
    return False


def _first_error_free(validator: Any, instance: Any, subschema: Any, index: int) -> bool:
    return next(validator.descend(instance, subschema, schema_path=index), None) is None


def _any_of(validator: Any, any_of: list, instance: Any, schema: Any) -> Any:
    """Each branch stops at its first error (jsonschema's keeps every error of every branch as context)."""
    if not any(_first_error_free(validator, instance, sub, i) for i, sub in enumerate(any_of)):
        yield ValidationError("must match at least one of the allowed schemas")


def _one_of(validator: Any, one_of: list, instance: Any, schema: Any) -> Any:
    matched = 0
    for i, sub in enumerate(one_of):
        if _first_error_free(validator, instance, sub, i):
            matched += 1
            if matched > 1:
                break
    if matched != 1:
        yield ValidationError("must match exactly one of the allowed schemas")


def _json_key(value: Any) -> Any:
    """A hashable key, equal for JSON-equal values (1 and 1.0 are equal, true and 1 are not); depth is bounded."""
    if isinstance(value, bool):
        return ("b", value)
    if isinstance(value, dict):
        return ("d", frozenset((k, _json_key(v)) for k, v in value.items()))
    if isinstance(value, list):
        return ("l", tuple(_json_key(v) for v in value))
    return ("v", value)


def _unique_items(validator: Any, unique: bool, instance: Any, schema: Any) -> Any:
    """Linear, with a set of keys (jsonschema's compares every pair of objects)."""
    if unique and validator.is_type(instance, "array"):
        seen: set = set()
        for item in instance:
            key = _json_key(item)
            if key in seen:
                yield ValidationError("must not hold the same item twice")
                return
            seen.add(key)


def _enum(validator: Any, enums: list, instance: Any, schema: Any) -> Any:
    key = _json_key(instance)
    if all(key != _json_key(each) for each in enums):
        yield ValidationError("must be one of " + _show(enums))


def _type(validator: Any, types: Any, instance: Any, schema: Any) -> Any:
    types = types if isinstance(types, list) else [types]
    if not any(validator.is_type(instance, t) for t in types):
        yield ValidationError("must be of type " + " or ".join(repr(t) for t in types))


def _count(kind: str, what: str, at_least: bool) -> Any:
    def check(validator: Any, bound: int, instance: Any, schema: Any) -> Any:
        if validator.is_type(instance, kind) and (len(instance) < bound if at_least else len(instance) > bound):
            yield ValidationError(f"must have {'at least' if at_least else 'at most'} {bound} {what}")

    return check


def _not(validator: Any, not_schema: Any, instance: Any, schema: Any) -> Any:
    if validator.evolve(schema=not_schema).is_valid(instance):
        yield ValidationError("must not match the schema it excludes")


def _contains(validator: Any, contains: Any, instance: Any, schema: Any) -> Any:
    if not validator.is_type(instance, "array"):
        return
    least, most = schema.get("minContains", 1), schema.get("maxContains", len(instance))
    matching = validator.evolve(schema=contains)
    matches = 0
    for item in instance:
        if matching.is_valid(item):
            matches += 1
            if matches > most:
                yield ValidationError(
                    f"must contain at most {most} matching items", validator="maxContains", validator_value=most
                )
                return
    if matches < least:
        yield ValidationError(
            f"must contain at least {least} matching items", validator="minContains", validator_value=least
        )


# jsonschema's versions of these repr the whole instance in their message, or keep every error of a branch
_BOUNDED = {
    "anyOf": _any_of,
    "oneOf": _one_of,
    "uniqueItems": _unique_items,
    "enum": _enum,
    "type": _type,
    "minItems": _count("array", "items", True),
    "maxItems": _count("array", "items", False),
    "minProperties": _count("object", "properties", True),
    "maxProperties": _count("object", "properties", False),
    "not": _not,
    "contains": _contains,
}
BodyValidator = validators.extend(Draft202012Validator, _BOUNDED)


def body_validator(schema: Any) -> Any:
    """A bounded validator for a schema written in config; SchemaError (``message``, ``path``) if it is not one."""
    BodyValidator.check_schema(schema)
    return BodyValidator(schema)


def problems(validator: Any, instance: Any) -> list[dict[str, str]]:
    """At most ``MAX_PROBLEMS`` ``{path, message}``, each at most ``MAX_MESSAGE`` characters, sorted by path."""
    found = []
    for error in islice(validator.iter_errors(instance), MAX_PROBLEMS):
        path = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
        found.append({"path": _cut(path), "message": _cut(_describe(error))})
    return sorted(found, key=lambda p: p["path"])


def _cut(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"


def _show(value: Any) -> str:
    """A schema value (config, not client data), shortened."""
    return _cut(repr(value))


_BOUNDS = {
    "minLength": "must be at least {} characters long",
    "maxLength": "must be at most {} characters long",
    "minimum": "must be at least {}",
    "maximum": "must be at most {}",
    "exclusiveMinimum": "must be greater than {}",
    "exclusiveMaximum": "must be less than {}",
    "multipleOf": "must be a multiple of {}",
    "pattern": "must match the pattern {!r}",
    "format": "must be a valid {}",
}
# messages that name only schema values or the instance's keys: built above, or by jsonschema without a repr
_OWN_MESSAGE = frozenset(_BOUNDED) | {
    "minContains",
    "maxContains",
    "required",
    "dependentRequired",
    "const",
    "additionalProperties",
    "unevaluatedProperties",
}


def _describe(error: ValidationError) -> str:
    keyword = error.validator
    if keyword in _OWN_MESSAGE:
        return error.message
    if keyword in _BOUNDS:
        return _BOUNDS[keyword].format(error.validator_value)
    return "is not allowed here" if keyword is None else f"does not satisfy {keyword!r}"
