"""What goes on the wire: the headers of a request message, and a reply message read back as an HTTP answer.

The gateway owns the headers in ``GATEWAY_HEADERS``: their values come from the authenticated
request context, never from a client header, so a responder can trust them. A reply's ``status``
header is the HTTP status; its other headers (within bounds) become response headers.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from typing import Any

from gateway_engine.foundation.context import RequestContext
from gateway_engine.foundation.errors import GatewayError

from .replies import Outcome, StoredReply

CORRELATION_ID = "correlation-id"
REPLY_TO = "reply-to"
REPLY_PARTITION = "reply-partition"
IDEMPOTENCY_KEY = "idempotency-key"
#: identity field -> message header; the JWT subject is ``user_id``, a tenant key's tenant ``client_id``
IDENTITY_HEADERS = {"user_id": "user-id", "client_id": "tenant-id", "consumer": "consumer", "method": "auth-method"}
GATEWAY_HEADERS = frozenset(
    {CORRELATION_ID, REPLY_TO, REPLY_PARTITION, IDEMPOTENCY_KEY, "request-id", "content-type", "status"}
    | set(IDENTITY_HEADERS.values())
)
MAX_IDEMPOTENCY_KEY = 255
_MAX_REPLY_HEADERS = 32
_MAX_HEADER_VALUE = 4096
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
# reply headers that are not response headers: the gateway's own, and those the HTTP server frames itself
_NOT_RESPONSE_HEADERS = GATEWAY_HEADERS | {
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "trailer",
    "te",
    "location",
}
_SECRET = os.urandom(32)  # correlation ids from idempotency keys cannot be computed outside this process


def owner_of(ctx: RequestContext) -> str:
    """Who a result belongs to: the authenticated consumer ("" on a route without auth)."""
    identity = ctx.identity or {}
    return str(identity.get("consumer") or identity.get("user_id") or "")


def correlation_id(ctx: RequestContext, owner: str) -> str:
    """Derived from the ``Idempotency-Key`` (per caller and route) when given, else random."""
    key = ctx.headers.get(IDEMPOTENCY_KEY)
    if not key:
        return os.urandom(16).hex()
    if len(key) > MAX_IDEMPOTENCY_KEY:
        raise GatewayError(400, "INVALID_IDEMPOTENCY_KEY", f"Idempotency-Key is longer than {MAX_IDEMPOTENCY_KEY}.")
    route = ctx.route.qualified_name if ctx.route is not None else ""
    text = f"{owner}\0{route}\0{key}".encode()
    return hmac.new(_SECRET, text, hashlib.sha256).hexdigest()[:32]


def request_headers(ctx: RequestContext, content_type: str | None) -> list[tuple[str, bytes]]:
    """The gateway-owned headers every produced message carries (reply headers are added by the caller)."""
    out = [("request-id", ctx.request_id.encode())]
    if content_type:
        out.append(("content-type", content_type.encode("latin-1")))
    key = ctx.headers.get(IDEMPOTENCY_KEY)
    if key:
        out.append((IDEMPOTENCY_KEY, key.encode("latin-1")))
    identity = ctx.identity or {}
    for field, header in IDENTITY_HEADERS.items():
        value = identity.get(field)
        if value:
            out.append((header, str(value).encode()))
    return out


def preferences(ctx: RequestContext) -> tuple[bool, float | None]:
    """``Prefer`` (RFC 7240): whether ``respond-async`` is asked, and ``wait=N`` seconds (None when absent)."""
    text = ctx.headers.get("prefer", "")
    asynchronous, wait = False, None
    for token in re.split(r"[,;]", text.lower()):
        name, _, value = token.strip().partition("=")
        if name == "respond-async":
            asynchronous = True
        elif name == "wait" and value.strip().isdigit():
            wait = float(value.strip()[:6])
    return asynchronous, wait


def reply_outcome(record: Any, max_bytes: int) -> tuple[str | None, Outcome]:
    """The correlation id of a reply record and what it answers: the stored reply, or why it cannot be one."""
    cid: str | None = None
    status = 200
    headers: list[tuple[str, str]] = []
    for name, raw in record.headers or ():
        name = name.lower()
        value = (raw or b"").decode("latin-1")
        if name == CORRELATION_ID:
            cid = cid or value
        elif name == "status":
            status = int(value) if value.isdigit() and 200 <= int(value) <= 599 else 0
        elif name == "content-type" or (
            name not in _NOT_RESPONSE_HEADERS and _TOKEN.match(name) and len(headers) < _MAX_REPLY_HEADERS
        ):
            if len(value) <= _MAX_HEADER_VALUE and not any(c in value for c in "\r\n\0"):
                headers.append((name, value))
    value = record.value or b""
    if len(value) > max_bytes:
        return cid, GatewayError(502, "REPLY_TOO_LARGE", f"The service's reply is larger than {max_bytes} bytes.")
    if status == 0:
        return cid, GatewayError(502, "UPSTREAM_ERROR", "The service's reply has an invalid status header.")
    if not any(k == "content-type" for k, _ in headers) and value:
        headers.append(("content-type", "application/json"))
    return cid, StoredReply(status, tuple(headers), value)
