"""HTTP/1.1 answer heads, field by field: token names, no control characters, framing fields judged strictly."""

from __future__ import annotations

import re
import string

from gateway_engine.upstreams.framing import TOKEN

MAX_HEAD = 64 * 1024  # bytes of an answer's head, interim answers included; also a trailer block, a chunk line
MAX_FIELDS = 100  # header lines in one head


_NO_BODY, _LENGTH, _CHUNKED, _UNTIL_EOF = range(4)

_CHUNK_SIZE_RE = re.compile(rb"([0-9A-Fa-f]{1,16})(?:;[^\x00-\x08\x0a-\x1f\x7f]*+)?[ \t]*+")
_NAME_RE = re.compile(TOKEN)
#: what ``bytes.translate`` deletes from a head, leaving its control characters but HTAB: a valid head leaves only
#: the CRLFs that end its lines, in order (a bare CR or LF, or any other control character, leaves more)
_HEAD_BYTES = bytes(range(0x20, 0x7F)) + bytes(range(0x80, 0x100)) + b"\t"
_STATUS_PREFIXES = frozenset({"HTTP/1.1 ", "HTTP/1.0 "})
_STATUS_CODES = {str(code): code for code in range(100, 600)}  # RFC 9110 15: three digits, classes 1 to 5
_TARGET_SAFE = string.punctuation  # every visible ASCII character stays as it is (and "%" is not encoded twice)
_SET_HERE = frozenset({"host", "connection", "content-length", "transfer-encoding"})


def _parse_fields(lines: list[str], start: int) -> tuple[list[tuple[str, str]], str | None, bool, bool] | None:
    """Header (or trailer) lines from ``start`` (their bytes already checked: no control character but HTAB): the
    fields with lower-cased names, the one Content-Length, whether the body is chunked and whether the connection
    closes after; None if a line is not ``token ":" value`` (obs-fold included) or a framing field is invalid."""
    if len(lines) - start > MAX_FIELDS:
        return None
    headers = []
    length: str | None = None
    chunked = close = False
    names, framing = _LOWER_NAMES, _FRAMING
    for line in lines[start:]:
        name, colon, value = line.partition(":")
        lower = names.get(name)
        if lower is None:
            if not colon or _NAME_RE.fullmatch(name) is None:
                return None
            lower = name.lower()
            if len(names) < 4096:
                names[name] = lower
        value = value.strip(" \t")
        if lower in framing:
            if lower == "content-length":
                if not (value.isdigit() and value.isascii()):  # "5, 5" is one length too (RFC 9110 8.6)
                    values = {v.strip(" \t") for v in value.split(",")}
                    value = values.pop() if len(values) == 1 else ""
                    if not (value.isdigit() and value.isascii()):
                        return None
                if len(value) > 19 or (length is not None and value != length):
                    return None
                if length is not None:
                    continue
                length = value
            elif lower == "transfer-encoding":  # only exactly one "chunked": anything else cannot be framed here
                if chunked or value.lower() != "chunked":
                    return None
                chunked, value = True, "chunked"
            elif value != "keep-alive":
                close = close or "close" in [token.strip(" \t").lower() for token in value.split(",")]
        headers.append((lower, value))
    return headers, length, chunked, close


_LOWER_NAMES: dict[str, str] = {}  # field names seen in answers (valid tokens only) -> lower-cased (bounded)
_FRAMING = frozenset({"content-length", "transfer-encoding", "connection"})
