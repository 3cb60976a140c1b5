"""``${VAR}`` and ``${VAR:-default}`` interpolation, recording which variables are missing."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}|\$\$")


class Interpolation:
    """Resolves variables in a config tree; ``missing`` names every unset one (never a value)."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.missing: list[str] = []
        self.referenced: list[str] = []

    def text(self, value: str) -> str | None:
        """Interpolate one string. A string that is exactly ``${UNSET}`` becomes None."""
        whole = _VAR.fullmatch(value)
        if whole and whole.group(0) != "$$" and whole.group(2) is None and whole.group(1) not in self.environ:
            self._note(whole.group(1), missing=True)
            return None
        return _VAR.sub(self._replace, value)

    def _replace(self, match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        if name in self.environ and (self.environ[name] != "" or default is None):
            self._note(name, missing=False)
            return self.environ[name]
        if default is not None:
            self._note(name, missing=False)
            return default
        self._note(name, missing=True)
        return ""

    def _note(self, name: str, *, missing: bool) -> None:
        if name not in self.referenced:
            self.referenced.append(name)
        if missing and name not in self.missing:
            self.missing.append(name)

    def tree(self, value: Any) -> Any:
        """Interpolate every string in a tree. An item that is exactly ``${UNSET}`` is dropped from
        its list or mapping (so defaults apply); a literal ``null`` in the YAML stays."""
        if isinstance(value, str):
            return self.text(value) if "$" in value else value
        if isinstance(value, list):
            return [v for item in value if not _unset(v := self.tree(item), item)]
        if isinstance(value, dict):
            return {k: v for k, item in value.items() if not _unset(v := self.tree(item), item)}
        return value


def _unset(resolved: Any, original: Any) -> bool:
    return resolved is None and original is not None


def referenced_names(value: Any) -> list[str]:
    """Every variable a tree mentions (for ``validate --strict``)."""
    found: list[str] = []
    if isinstance(value, str):
        found.extend(m.group(1) for m in _VAR.finditer(value) if m.group(0) != "$$" and m.group(2) is None)
    elif isinstance(value, list):
        for item in value:
            found.extend(referenced_names(item))
    elif isinstance(value, dict):
        for item in value.values():
            found.extend(referenced_names(item))
    return found


def malformed_references(value: Any, path: tuple = ()) -> list[tuple[tuple, str]]:
    """``(path, fragment)`` for each string holding a ``${`` that is no well-formed reference (``${NAME``,
    ``${1X}``, ``${NAME:default}``): left alone it would reach a URL or header as literal text."""
    if isinstance(value, str):
        rest = _VAR.sub("", value) if "$" in value else ""
        start = rest.find("${")
        return [(path, rest[start : start + 40])] if start >= 0 else []
    found: list[tuple[tuple, str]] = []
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        found += malformed_references(item, (*path, key))
    return found


def first_reference(value: Any, name: str, path: tuple = ()) -> tuple | None:
    """The path of the first string that reads variable ``name`` (``${NAME}`` or a template's ``env.NAME``)."""
    if isinstance(value, str):
        if any(m.group(1) == name for m in _VAR.finditer(value)) or re.search(rf"\benv\.{name}\b", value):
            return path
        return None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        found = first_reference(item, name, (*path, key))
        if found is not None:
            return found
    return None
