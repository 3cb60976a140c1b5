"""Path templates, the compiled router, and safe upstream path building."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Generic, TypeVar
from urllib.parse import quote, unquote

from gateway_engine.foundation.errors import GatewayError

T = TypeVar("T")
_PARAM = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)(?::(path))?\}$")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::path)?\}")


class PathTemplateError(ValueError):
    """A path template that cannot be compiled."""


@dataclass(frozen=True)
class PathTemplate:
    """A public path such as ``/invoices/{id}`` or ``/users/{rest:path}``."""

    text: str
    segments: tuple[str, ...]       # literal segments, or "" where a parameter stands
    params: tuple[str | None, ...]  # parameter name per segment (None for literals)
    catch_all: str | None           # name of the trailing {name:path} parameter
    names: tuple[str, ...] = field(init=False, compare=False, repr=False)  # every parameter, in order

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", tuple(p for p in self.params if p) + ((self.catch_all,) if self.catch_all else ()))

    @classmethod
    def parse(cls, text: str) -> "PathTemplate":
        parts = text.strip("/").split("/") if text.strip("/") else []
        segments, params, catch_all = [], [], None
        for i, part in enumerate(parts):
            match = _PARAM.match(part)
            if match:
                if match.group(2):
                    if i != len(parts) - 1:
                        raise PathTemplateError(f"{{{match.group(1)}:path}} must be the last segment of {text!r}")
                    catch_all = match.group(1)
                    break
                segments.append("")
                params.append(match.group(1))
            elif "{" in part or "}" in part:
                raise PathTemplateError(f"segment {part!r} of {text!r}: a parameter must fill a whole segment")
            else:
                segments.append(part)
                params.append(None)
        names = [p for p in params if p] + ([catch_all] if catch_all else [])
        if len(names) != len(set(names)):
            raise PathTemplateError(f"a parameter is named twice in {text!r}")
        return cls(text, tuple(segments), tuple(params), catch_all)

    @property
    def is_static(self) -> bool:
        return not self.catch_all and not any(self.params)

    def sort_key(self) -> tuple:
        # more literal segments first, catch-alls last, longer before shorter
        return (self.catch_all is not None, -sum(1 for p in self.params if p is None), -len(self.segments))

    def match(self, parts: list[str]) -> dict[str, str] | None:
        """Match raw (still percent-encoded) path segments; parameters are decoded here."""
        n = len(self.segments)
        if self.catch_all is None and len(parts) != n:
            return None
        if self.catch_all is not None and len(parts) <= n:
            return None
        out: dict[str, str] = {}
        for i in range(n):
            name = self.params[i]
            if name is None:
                if parts[i] != self.segments[i]:
                    return None
            else:
                if not parts[i]:
                    return None
                out[name] = parts[i]
        if self.catch_all is not None:
            out[self.catch_all] = "/".join(parts[n:])
        return out


def decode_segment(raw: str) -> str:
    return unquote(raw, encoding="utf-8", errors="strict")


class UpstreamPath:
    """``upstream_path`` with ``{param}`` holes, filled with percent-encoded values.

    A value can never add a path segment, a query, a fragment or a dot-segment:
    ``/`` ``?`` ``#`` ``@`` ``%`` and control characters are encoded, and ``.``/``..``
    are refused, so the result always stays below the configured base path.
    """

    def __init__(self, text: str, path_params: frozenset[str] = frozenset()) -> None:
        self.text = text
        self.pieces: list[str | tuple[str, bool]] = []
        pos = 0
        for m in _PLACEHOLDER.finditer(text):
            self.pieces.append(text[pos:m.start()])
            self.pieces.append((m.group(1), m.group(0).endswith(":path}") or m.group(1) in path_params))
            pos = m.end()
        self.pieces.append(text[pos:])
        self.literal = quote(text, safe="/:@!$&'()*+,;=-._~%") if len(self.pieces) == 1 else None
        #: placeholders whose value may span several segments (``{name:path}``)
        self.path_names = frozenset(p[0] for p in self.pieces if isinstance(p, tuple) and p[1])

    @property
    def names(self) -> list[str]:
        return [p[0] for p in self.pieces if isinstance(p, tuple)]

    def build(self, params: dict[str, str]) -> str:
        if self.literal is not None:
            return self.literal
        out = []
        for piece in self.pieces:
            if isinstance(piece, str):
                out.append(quote(piece, safe="/:@!$&'()*+,;=-._~%"))
            else:
                name, is_path = piece
                raw = params[name]
                if is_path:
                    out.append("/".join(_encode_segment(decode_param(seg)) for seg in raw.split("/")))
                else:
                    out.append(_encode_segment(decode_param(raw)))
        return "".join(out)


def decode_param(raw: str) -> str:
    try:
        return decode_segment(raw)
    except UnicodeDecodeError:
        raise GatewayError(400, "BAD_PATH", "A path parameter is not valid percent-encoded UTF-8.") from None


def _encode_segment(value: str) -> str:
    if value in ("", ".", "..") or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise GatewayError(400, "BAD_PATH", "A path parameter is empty, a dot-segment or holds control characters.")
    return quote(value, safe="-._~!$&'()*+,;=:")


class Router(Generic[T]):
    """Method + path → target, built once. Static paths are a dict lookup."""

    def __init__(self, entries: list[tuple[str, PathTemplate, T]]) -> None:
        self.static: dict[str, dict[str, T]] = {}
        dynamic: dict[tuple, tuple[PathTemplate, dict[str, T]]] = {}
        for method, template, target in entries:
            if template.is_static:
                self.static.setdefault("/" + "/".join(template.segments), {})[method] = target
            else:  # grouped by shape: /orders/{id} and /orders/{order_id} are one path
                shape = (template.segments, tuple(p is None for p in template.params), template.catch_all is not None)
                dynamic.setdefault(shape, (template, {}))[1][method] = target
        self.dynamic = sorted(dynamic.values(), key=lambda item: item[0].sort_key())

    def match(self, raw_path: str) -> tuple[dict[str, T], dict[str, str]] | None:
        """The methods table and raw parameters for ``raw_path``, or None."""
        key = raw_path.rstrip("/") or "/"
        table = self.static.get(key if key.startswith("/") else "/" + key)
        if table is not None:
            return table, {}
        parts = raw_path.strip("/").split("/")
        for template, methods in self.dynamic:
            params = template.match(parts)
            if params is not None:
                return methods, params
        return None
