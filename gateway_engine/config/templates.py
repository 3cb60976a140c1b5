"""The mapping language: Jinja2 expressions in YAML, sandboxed, compiled once at load time.

A string that is exactly ``{{ expr }}`` evaluates to the expression's native value
(a list stays a list, ``"123"`` stays a string); any other string containing
``{{``/``{%`` renders as text. Dicts and lists are walked, so a whole body shape
can be written as YAML with expressions at the leaves.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from jinja2 import ChainableUndefined, TemplateSyntaxError, meta, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

from gateway_engine.config.bodies import MAX_DEPTH, TooDeep, too_deep

Render = Callable[[dict[str, Any]], Any]


class TemplateError(Exception):
    """A template that does not compile, or uses a name it may not."""


def _pick(value: Any, *keys: str) -> Any:
    return {k: value[k] for k in keys if isinstance(value, dict) and k in value}


def _omit(value: Any, *keys: str) -> Any:
    return {k: v for k, v in value.items() if k not in keys} if isinstance(value, dict) else value


def _rename(value: Any, mapping: dict[str, str]) -> Any:
    return {mapping.get(k, k): v for k, v in value.items()} if isinstance(value, dict) else value


def _merge(*values: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for v in values:
        if isinstance(v, dict):
            out.update(v)
    return out


def _each(values: Any, fn: str, *args: Any) -> list[Any]:
    """Apply a helper to every item: ``items | each('pick', 'id', 'name')``."""
    helper = _HELPERS[fn]
    return [helper(v, *args) for v in (values or [])]


def _fromjson(value: Any) -> Any:
    """Parse a JSON string (e.g. a query parameter holding a list); TooDeep past ``MAX_DEPTH`` levels."""
    if not isinstance(value, (str, bytes)):
        return value
    try:
        parsed = json.loads(value)
    except RecursionError:
        raise TooDeep(f"nests deeper than {MAX_DEPTH} levels") from None
    if too_deep(parsed, MAX_DEPTH):
        raise TooDeep(f"nests deeper than {MAX_DEPTH} levels")
    return parsed


def _as_objects(values: Any, key: str) -> list[dict[str, Any]]:
    """``['a@x', 'b@y'] | as_objects('email')`` → ``[{'email': 'a@x'}, {'email': 'b@y'}]``; a single value counts as a list."""
    items = values if isinstance(values, list) else ([] if values is None else [values])
    return [{key: v} for v in items]


_HELPERS: dict[str, Callable[..., Any]] = {
    "pick": _pick,
    "omit": _omit,
    "rename": _rename,
    "merge": _merge,
    "each": _each,
    "fromjson": _fromjson,
    "as_objects": _as_objects,
}


class _Sandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox where ``a.b`` on a mapping is its key ``b`` first, as in JSONPath or KrakenD:
    ``body.items`` is the upstream's ``items`` field, not the dict method; a method is reached only when
    no such key exists (``{...}.get(status, 'X')``)."""

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, Mapping):
            try:
                return obj[attribute]
            except (KeyError, TypeError):
                pass
        return super().getattr(obj, attribute)


_env = _Sandbox(undefined=ChainableUndefined, autoescape=False, keep_trailing_newline=True)
_env.filters.update(_HELPERS)
_env.globals.update(_HELPERS)
_env.policies["json.dumps_kwargs"] = {"sort_keys": False, "ensure_ascii": False}


def is_template(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def template_strings(value: Any) -> Iterator[str]:
    """The template strings of a value or structure (none: the structure is a constant)."""
    if isinstance(value, dict):
        for v in value.values():
            yield from template_strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from template_strings(v)
    elif is_template(value):
        yield value


def compile_value(value: Any, allowed: Iterable[str]) -> Render:
    """Compile a value or structure into ``render(variables) -> value``.

    Raises TemplateError for a syntax error or a name outside ``allowed``.
    """
    allowed = frozenset(allowed) | frozenset(_HELPERS)
    if isinstance(value, dict):
        parts = [(k, compile_value(v, allowed)) for k, v in value.items()]
        return lambda variables: {k: render(variables) for k, render in parts}
    if isinstance(value, list):
        items = [compile_value(v, allowed) for v in value]
        return lambda variables: [render(variables) for render in items]
    if not is_template(value):
        return lambda variables: value
    try:
        ast = _env.parse(value)
        _check_names(ast, allowed)
        if _is_single_expression(ast):
            source = value.strip()[2:-2]
            expression = _env.compile_expression(source, undefined_to_none=True)
            return _explained(value, lambda variables: expression(**variables))
        template = _env.from_string(value)
    except TemplateSyntaxError as exc:
        raise TemplateError(f"template syntax error: {exc.message} in {value!r}") from None
    return _explained(value, template.render)


class TemplateRuntimeError(Exception):
    """A template that failed while rendering; the message names the expression."""


def _explained(source: str, render: Render) -> Render:
    def run(variables: dict[str, Any]) -> Any:
        try:
            return render(variables)
        except TooDeep:
            raise
        except Exception as exc:
            raise TemplateRuntimeError(f"{source.strip()!r} failed: {type(exc).__name__}: {exc}") from None

    return run


def _is_single_expression(ast: nodes.Template) -> bool:
    """``{{ expr }}`` and nothing else (surrounding whitespace aside): evaluate to a native value.
    Decided on the parsed template, so ``{{ {'a': {'b': 1}} }}`` counts too."""
    if len(ast.body) != 1 or not isinstance(ast.body[0], nodes.Output):
        return False
    parts = [n for n in ast.body[0].nodes if not (isinstance(n, nodes.TemplateData) and not n.data.strip())]
    return len(parts) == 1 and not isinstance(parts[0], nodes.TemplateData)


def _check_names(ast: nodes.Template, allowed: frozenset[str]) -> None:
    unknown = sorted(meta.find_undeclared_variables(ast) - allowed)
    if unknown:
        names = ", ".join(sorted(allowed - frozenset(_HELPERS)))
        raise TemplateError(f"unknown name(s) {', '.join(unknown)} in template; available here: {names}")


def env_names(value: Any) -> list[str]:
    """The ``env.NAME`` attributes a template structure reads (to report unset variables)."""
    found: list[str] = []
    if isinstance(value, dict):
        for v in value.values():
            found += env_names(v)
    elif isinstance(value, list):
        for v in value:
            found += env_names(v)
    elif is_template(value):
        try:
            ast = _env.parse(value)
        except TemplateSyntaxError:
            return found
        for node in ast.find_all(nodes.Getattr):
            if isinstance(node.node, nodes.Name) and node.node.name == "env":
                found.append(node.attr)
    return found


def attributes_read(value: Any, name: str) -> list[str | None]:
    """What a template structure reads of variable ``name``: ``name.x`` and ``name['x']`` give ``"x"``; any
    other use (``name``, ``name[key]``) gives None, so a caller can demand that every use be spelled out."""
    found: list[str | None] = []
    if isinstance(value, dict):
        for v in value.values():
            found += attributes_read(v, name)
    elif isinstance(value, list):
        for v in value:
            found += attributes_read(v, name)
    elif is_template(value):
        try:
            ast = _env.parse(value)
        except TemplateSyntaxError:
            return found
        spelled: set[int] = set()
        for attr in ast.find_all(nodes.Getattr):
            if isinstance(attr.node, nodes.Name) and attr.node.name == name:
                found.append(attr.attr)
                spelled.add(id(attr.node))
        for item in ast.find_all(nodes.Getitem):
            if isinstance(item.node, nodes.Name) and item.node.name == name:
                if isinstance(item.arg, nodes.Const) and isinstance(item.arg.value, str):
                    found.append(item.arg.value)
                    spelled.add(id(item.node))
        found += [None for n in ast.find_all(nodes.Name) if n.name == name and id(n) not in spelled]
    return found
