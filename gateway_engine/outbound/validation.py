"""The subscriptions API's input rules: URLs, event patterns, custom headers, retries (bounded, explained)."""

from __future__ import annotations

import asyncio
import re
from typing import Any
from urllib.parse import urlsplit

from gateway_engine.foundation.errors import GatewayError

from .catalog import Catalog
from .settings import DeliverySettings
from .signing import secret_problem
from .ssrf import Refused, check_host

_PATTERN = re.compile(r"^[a-z0-9_.*]{1,200}$")
_TOKEN = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$")
#: headers the gateway sets on every attempt: an endpoint's custom headers may not replace them
RESERVED = frozenset(
    {
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "content-type",
        "content-length",
        "host",
        "connection",
        "transfer-encoding",
        "user-agent",
        "te",
        "upgrade",
        "trailer",
        "keep-alive",
        "expect",
    }
)
RESOLVE_TIMEOUT = 5.0  # seconds a registration waits for the host's addresses
MAX_HEADERS = 20
MAX_PATTERNS = 100


def invalid(message: str, field: str) -> GatewayError:
    return GatewayError(422, "VALIDATION_ERROR", message, details=[{"field": field, "message": message}])


async def checked_url(value: Any, settings: DeliverySettings) -> str:
    if not isinstance(value, str) or not value or len(value) > 2000:
        raise invalid("url must be an http(s) URL of at most 2000 characters", "url")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise invalid("url is not a valid URL", "url") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
        raise invalid("url must be http:// or https:// with a host and no credentials", "url")
    if settings.https_only and parts.scheme != "https":
        raise invalid("url must be https:// (outbound_webhooks.https_only)", "url")
    if port == 0:
        raise invalid("url has no valid port", "url")
    try:
        await asyncio.wait_for(check_host(parts.hostname, settings.allow), RESOLVE_TIMEOUT)
    except TimeoutError:
        raise GatewayError(422, "URL_NOT_ALLOWED", "The URL's host does not resolve in time.") from None
    except Refused as exc:
        raise GatewayError(422, "URL_NOT_ALLOWED", f"The gateway does not deliver there: {exc}.") from None
    return value


def checked_events(value: Any, catalog: Catalog) -> list[str]:
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_PATTERNS:
        raise invalid(f"events must be a list of 1 to {MAX_PATTERNS} event types or patterns", "events")
    for pattern in value:
        if not isinstance(pattern, str) or not _PATTERN.match(pattern):
            raise invalid("an event is an event type or a pattern such as order.*", "events")
        if not catalog.matching(pattern):
            raise invalid(f"{pattern!r} matches no declared event type", "events")
    return sorted(set(value))


def checked_headers(value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or len(value) > MAX_HEADERS:
        raise invalid(f"headers must be an object of at most {MAX_HEADERS} names", "headers")
    out = {}
    for name, text in value.items():
        if not _TOKEN.match(name) or name.lower() in RESERVED or name.lower().startswith("webhook-"):
            raise invalid(f"header {name[:100]!r} is not a name an endpoint may set", "headers")
        if not isinstance(text, str) or len(text) > 1000 or any(c in text for c in "\r\n\0"):
            raise invalid(f"header {name!r} must be a one-line string of at most 1000 characters", "headers")
        out[name.lower()] = text
    return out


def checked_retries(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 50:
        raise invalid("maxRetries must be an integer from 0 to 50", "maxRetries")
    return value


def checked_secret(value: Any) -> str:
    problem = secret_problem(value)
    if problem is not None:
        raise invalid(problem, "secret")
    return str(value)


def checked_text(value: Any, field: str, limit: int = 1000) -> str:
    if not isinstance(value, str) or len(value) > limit:
        raise invalid(f"{field} must be a string of at most {limit} characters", field)
    return value


def checked_bool(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise invalid(f"{field} must be true or false", field)
    return value


def checked_limit(query: dict[str, str]) -> int:
    raw = query.get("limit", "50")
    if not raw.isdigit() or not 1 <= int(raw) <= 100:
        raise invalid("limit must be an integer from 1 to 100", "limit")
    return int(raw)
