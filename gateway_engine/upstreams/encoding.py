"""Upstream body encodings: JSON, form (bracketed nesting, as Stripe and Rails read it), raw."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import orjson


def form_pairs(value: Any, prefix: str = "") -> list[tuple[str, str]]:
    """``{"a": {"b": 1}, "l": [{"p": "x"}]}`` → ``[("a[b]", "1"), ("l[0][p]", "x")]``."""
    if isinstance(value, dict):
        pairs: list[tuple[str, str]] = []
        for key, item in value.items():
            pairs += form_pairs(item, f"{prefix}[{key}]" if prefix else str(key))
        return pairs
    if isinstance(value, list):
        pairs = []
        for i, item in enumerate(value):
            pairs += form_pairs(item, f"{prefix}[{i}]")
        return pairs
    if value is None:
        return [(prefix, "")]
    if isinstance(value, bool):
        return [(prefix, "true" if value else "false")]
    return [(prefix, str(value))]


def form_encode(value: Any) -> bytes:
    pairs = form_pairs(value)
    return "&".join(f"{quote(k, safe='[]')}={quote(v, safe='')}" for k, v in pairs).encode()


def encode_body(value: Any, encoding: str) -> tuple[bytes, str | None]:
    """The body bytes and the content type to send for ``encoding``."""
    if encoding == "form":
        return form_encode(value), "application/x-www-form-urlencoded"
    if encoding == "raw":
        if isinstance(value, bytes):
            return value, None
        return (value if isinstance(value, str) else orjson.dumps(value).decode()).encode(), None
    return orjson.dumps(value), "application/json"
