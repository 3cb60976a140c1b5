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
    segments: tuple[str, ...]  # literal segments, or "" where a parameter stands
    params: tuple[str | None, ...]  # parameter name per segment (None for literals)
    catch_all: str | None  # name of the trailing {name:path} parameter
    names: tuple[str, ...] = field(init=False, compare=False, repr=False)  # every parameter, in order

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "names", tuple(p for p in self.params if p) + ((self.catch_all,) if self.catch_all else ())
        )

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

    The upstream decodes and normalises the path, so values are judged decoded (and once more, for an
    upstream that decodes twice): a ``{param}`` holding ``/`` or ``\\`` (unless its rule says
    ``allow_encoded_slash``: then the slash stays ``%2F``), or any piece that is empty or a dot-segment
    (``..``, ``.;x``, ``..;jsessionid``, ``...``), is a 400 ``BAD_PATH``. ``/ ? # @ ; %`` and controls are encoded.
    Last, the decoded, normalised result must still start with the static part before the first hole.
    """

    def __init__(
        self, text: str, path_params: frozenset[str] = frozenset(), slash_params: frozenset[str] = frozenset()
    ) -> None:
        self.text = text
        self.pieces: list[str | tuple[str, int]] = []
        pos = 0
        for m in _PLACEHOLDER.finditer(text):
            self.pieces.append(text[pos : m.start()])
            name = m.group(1)
            kind = (
                _PATH
                if m.group(0).endswith(":path}") or name in path_params
                else (_OPAQUE if name in slash_params else _SEGMENT)
            )
            self.pieces.append((name, kind))
            pos = m.end()
        self.pieces.append(text[pos:])
        self.literal = quote(text, safe=_LITERAL_SAFE) if len(self.pieces) == 1 else None
        self.encoded = [quote(p, safe=_LITERAL_SAFE) if isinstance(p, str) else p for p in self.pieces]
        #: placeholders whose value may span several segments (``{name:path}``)
        self.path_names = frozenset(p[0] for p in self.pieces if isinstance(p, tuple) and p[1] == _PATH)
        #: what every built path must stay below, decoded and normalised
        first = self.pieces[0]  # the text before the first placeholder
        self.base = normalised(unquote(str(first).rpartition("/")[0] + "/")) if self.literal is None else ""

    @property
    def names(self) -> list[str]:
        return [p[0] for p in self.pieces if isinstance(p, tuple)]

    def check(self, name: str, value: str) -> None:
        """BAD_PATH if the decoded ``value`` may not fill ``{name}`` (for values known at load time)."""
        for piece in self.pieces:
            if isinstance(piece, tuple) and piece[0] == name:
                for part in value.split("/") if piece[1] == _PATH else (value,):
                    _encode_value(part, piece[1] != _SEGMENT)

    def build(self, params: dict[str, str]) -> str:
        if self.literal is not None:
            return self.literal
        out = []
        for piece in self.encoded:
            if isinstance(piece, str):
                out.append(piece)
            else:
                name, kind = piece
                raw = params[name]
                if kind == _PATH:
                    out.append("/".join(_encode_value(decode_param(seg), True) for seg in raw.split("/")))
                else:
                    out.append(_encode_value(decode_param(raw), kind == _OPAQUE))
        path = "".join(out)
        decoded = unquote(path) if "%" in path else path
        if _DOT_SEGMENT(decoded) and not normalised(decoded).startswith(self.base):
            raise GatewayError(400, "BAD_PATH", "A path parameter leads outside the route's upstream path.")
        return path


_SEGMENT, _PATH, _OPAQUE = 0, 1, 2  # a {param}: one segment; several segments; one segment that may hold %2F
_LITERAL_SAFE = "/:@!$&'()*+,;=-._~%"  # the config's own text is trusted as written
_VALUE_SAFE = "-._~!$&'()*+,=:"  # sub-delims but `;` (path parameters to Tomcat-style servers)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_PLAIN = re.compile(r"[A-Za-z0-9_~-][A-Za-z0-9._~-]*").fullmatch  # nothing to encode, never a dot-segment
_DOT_SEGMENT = re.compile(r"(?:^|[/\\])[. ]*\.[. ]*(?:;[^/\\]*)?(?:$|[/\\])").search  # one C pass, as is_dot_segment
_SLASHES = re.compile(r"[/\\]")


def decode_param(raw: str) -> str:
    try:
        return decode_segment(raw)
    except UnicodeDecodeError:
        raise GatewayError(400, "BAD_PATH", "A path parameter is not valid percent-encoded UTF-8.") from None


def is_dot_segment(segment: str) -> bool:
    """``.``/``..`` as servers read them: a ``;params`` suffix dropped, trailing dots and spaces trimmed (Windows)."""
    if "." not in segment:
        return False
    core = segment.split(";", 1)[0]
    return core != "" and not core.strip(". ")


def normalised(path: str) -> str:
    """``path`` (decoded) with ``\\`` as ``/`` and dot-segments resolved, as a normalising upstream serves it."""
    out: list[str] = []
    for segment in path.replace("\\", "/").split("/"):
        if is_dot_segment(segment):
            if segment.split(";", 1)[0].strip(" ") != "." and len(out) > 1:
                out.pop()
        else:
            out.append(segment)
    return "/".join(out)


def _encode_value(value: str, slash_ok: bool) -> str:
    """One decoded parameter value, percent-encoded; BAD_PATH if it (or its second decoding) could move the path."""
    if _PLAIN(value):
        return value
    _check_value(value, slash_ok)
    if "%" in value:  # what an upstream that decodes twice would see
        _check_value(unquote(value, errors="replace"), slash_ok)
    return quote(value, safe=_VALUE_SAFE)


def _check_value(value: str, slash_ok: bool) -> None:
    if not value or _CONTROL.search(value):
        raise GatewayError(400, "BAD_PATH", "A path parameter is empty or holds control characters.")
    if not slash_ok and ("/" in value or "\\" in value):
        raise GatewayError(400, "BAD_PATH", "A path parameter holds a slash or backslash.")
    for piece in _SLASHES.split(value) if slash_ok else (value,):
        if not piece or is_dot_segment(piece):
            raise GatewayError(400, "BAD_PATH", "A path parameter is or holds an empty or dot-segment.")


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
