"""One backend's part of the merged answer: ``target`` → ``allow``/``deny`` → ``rename`` → ``group``.

Compiled once from a backend entry's ``response``; applied to the backend's parsed JSON.
A shape that does not fit the answer (no such target, not an object where keys are picked)
is a ``ShapeError``: that backend failed, and its ``required``/``fallback`` rules decide.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any


class ShapeError(Exception):
    """The backend's answer does not have the shape its ``response`` mapping expects."""


@dataclass(frozen=True)
class Shape:
    target: tuple[str, ...] = ()  # a dotted path into the answer: what the backend contributes
    allow: tuple[str, ...] | None = None  # keys kept (of the object, or of each object of a list)
    deny: frozenset[str] = frozenset()  # keys dropped
    rename: Mapping[str, str] = field(default_factory=dict)
    group: str | None = None  # the key the part is nested under; None: its keys merge into the answer

    @property
    def writes(self) -> frozenset[str]:
        """The keys of the merged answer this part writes (known at load time: that is how collisions are found)."""
        if self.group is not None:
            return frozenset({self.group})
        return frozenset(self.rename.get(k, k) for k in self.allow or () if k not in self.deny)

    def pick(self, body: Any) -> Any:
        """The ``target`` of the answer (what dependent backends read as ``results.<name>``)."""
        value = body
        for i, key in enumerate(self.target):
            if isinstance(value, dict) and key in value:
                value = value[key]
            elif isinstance(value, list) and key.isdigit() and int(key) < len(value):  # `data.0`: a list's first
                value = value[int(key)]
            else:
                raise ShapeError(f"the answer has no {'.'.join(self.target[: i + 1])!r}")
        return value

    def apply(self, value: Any) -> Any:
        """The part as merged: filtered and renamed (an object, or each object of a list)."""
        if isinstance(value, list) and self.group is not None:
            return [self._keys(v) if isinstance(v, dict) else v for v in value]
        if isinstance(value, dict):
            return self._keys(value)
        if self.group is None:
            raise ShapeError(f"the answer is {type(value).__name__}, not an object whose keys merge in")
        if self.allow is not None or self.deny or self.rename:
            raise ShapeError(f"the answer is {type(value).__name__}, not an object to pick keys from")
        return value

    def _keys(self, value: dict[str, Any]) -> dict[str, Any]:
        if self.allow is not None:
            value = {k: value[k] for k in self.allow if k in value}
        if self.deny:
            value = {k: v for k, v in value.items() if k not in self.deny}
        if self.rename:
            value = {self.rename.get(k, k): v for k, v in value.items()}
        return value


def merge_caching(parts: list[list[tuple[str, str]]]) -> list[tuple[str, str]]:
    """Caching headers for a complete answer made of ``parts`` (each backend's answer headers).

    Only what every part allows: ``Cache-Control`` when every part sent one (``no-store`` wins, then
    ``private``/``no-cache``, and the smallest ``max-age``), ``Last-Modified`` the latest and
    ``Expires`` the earliest when every part sent it. An ETag stays with the bytes it described, so none.
    """
    out: list[tuple[str, str]] = []
    controls = [dict(h).get("cache-control") for h in parts]
    if parts and all(c is not None for c in controls):
        out += _cache_control([c for c in controls if c is not None])
    for name, pick in (("last-modified", max), ("expires", min)):
        dates = [_date(dict(h).get(name)) for h in parts]
        if parts and all(d is not None for d in dates):
            out.append((name, format_datetime(pick(d for d in dates if d is not None), usegmt=True)))
    return out


def _cache_control(values: list[str]) -> list[tuple[str, str]]:
    directives = [
        {d.strip().lower().partition("=")[0]: d.strip().partition("=")[2] for d in v.split(",")} for v in values
    ]
    if any("no-store" in d for d in directives):
        return [("cache-control", "no-store")]
    parts = [word for word in ("private", "no-cache") if any(word in d for d in directives)]
    ages = [d.get("max-age", "") for d in directives]
    if all(a.isdigit() for a in ages):
        parts.append(f"max-age={min(int(a) for a in ages)}")
    elif "no-cache" not in parts:  # a part without a freshness lifetime: the whole is revalidated each time
        parts.append("no-cache")
    return [("cache-control", ", ".join(parts))]


def _date(value: str | None) -> Any:
    if value is None:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return parsed if parsed.tzinfo is not None else None
