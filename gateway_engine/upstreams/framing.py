"""Request framing and header rules every transport applies: token names, no control characters, one exact length.

Framing is decided on parsed fields, never on text: the gateway sets exactly one of
``Content-Length`` or ``Transfer-Encoding: chunked``, and a streamed body must match the
length it declares (400 otherwise), so no client bytes can become a second request.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

from gateway_engine.foundation.errors import GatewayError

#: RFC 9110 5.1 ``token``: what a field name (and a method) may be made of
TOKEN = r"[-!#$%&'*+.^_`|~0-9A-Za-z]+"
_NAME_RE = re.compile(TOKEN)
#: a control character other than HTAB: none may be in a field value (RFC 9110 5.5), so nothing ends or folds a line
_CONTROL_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def header_error(name: str) -> GatewayError:
    """400: the values that vary per request come from the client, directly or through a template of its input."""
    return GatewayError(400, "BAD_HEADER", f"Header {name[:64]!r} has an invalid name or value (a control character).")


def check_headers(headers: list[tuple[str, str]]) -> None:
    """Refuse a header whose name is not a token or whose value holds a control character other than HTAB."""
    for name, value in headers:
        if _NAME_RE.fullmatch(name) is None or _CONTROL_RE.search(value) is not None:
            raise header_error(name)


def length_error() -> GatewayError:
    return GatewayError(400, "BODY_LENGTH_MISMATCH", "The request body does not match its declared Content-Length.")


def declared_length(headers: list[tuple[str, str]]) -> int | None:
    """The one Content-Length the headers declare (None without one); 400 if it is not a number or the copies differ."""
    declared = None
    for name, value in headers:
        if name == "content-length":
            value = value.strip(" \t")
            if not (value.isdigit() and value.isascii() and len(value) <= 19):
                raise header_error(name)
            if declared is not None and int(value) != declared:
                raise header_error(name)
            declared = int(value)
    return declared


async def exactly(body: AsyncIterator[bytes], length: int) -> AsyncIterator[bytes]:
    """``body``, refused (400) as soon as it goes past ``length`` bytes or ends short of it; the chunk that completes
    the length is held until the body is known to end there, so the upstream never gets a whole request first."""
    sent = 0
    held = None
    async for chunk in body:
        if not chunk:
            continue
        sent += len(chunk)
        if held is not None or sent > length:
            raise length_error()
        if sent == length:
            held = chunk
            continue
        yield chunk
    if sent != length:
        raise length_error()
    if held is not None:
        yield held


Body = bytes | AsyncIterator[bytes] | None


def framed(headers: list[tuple[str, str]], body: Body) -> tuple[list[tuple[str, str]], Body]:
    """For the library transports: validated headers without framing fields (the library frames ``bytes`` itself),
    and a streamed body held to the length it declares."""
    check_headers(headers)
    length = declared_length(headers) if body is not None and not isinstance(body, (bytes, bytearray)) else None
    headers = [(k, v) for k, v in headers if k != "transfer-encoding" and (k != "content-length" or length is not None)]
    if length is not None:
        headers = [(k, v) for k, v in headers if k != "content-length"] + [("content-length", str(length))]
        body = exactly(body, length)  # type: ignore[arg-type]
    return headers, body
