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
