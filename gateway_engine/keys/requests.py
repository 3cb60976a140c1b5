"""What the admin handlers receive, and the checks every body and query goes through (clear 400s, never a 500)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from jsonschema import Draft202012Validator

from gateway_engine.foundation.errors import GatewayError

from .caller import Caller

_NAME = {"type": "string", "minLength": 1, "maxLength": 200}
_CODE = {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"}
_SCOPES = {
    "type": "array",
    "maxItems": 100,
    "uniqueItems": True,
    "items": {"type": "string", "pattern": "^[A-Za-z0-9*][A-Za-z0-9:._*-]{0,99}$"},
}
_EXPIRES = {"type": ["string", "null"], "maxLength": 40}
_METADATA = {"type": "object", "maxProperties": 50}
KEY_FIELDS = {
    "name": _NAME,
    "scopes": _SCOPES,
    "roles": _SCOPES,
    "rateLimit": {"type": ["integer", "null"]},
    "expiresAt": _EXPIRES,
}


def schema(properties: dict[str, Any], required: tuple[str, ...] = ()) -> Draft202012Validator:
    return Draft202012Validator(
        {"type": "object", "additionalProperties": False, "properties": properties, "required": list(required)}
    )


PLATFORM_CREATE = schema(
    {"code": _CODE, "name": _NAME, "metadata": _METADATA, "key": {"type": "object"}}, ("code", "name")
)
PLATFORM_UPDATE = schema({"name": _NAME, "metadata": _METADATA, "active": {"type": "boolean"}})
CLIENT_CREATE = schema(
    {
        "platformId": {"type": "string"},
        "code": _CODE,
        "name": _NAME,
        "externalId": {"type": ["string", "null"], "minLength": 1, "maxLength": 200},
        "metadata": _METADATA,
        **{k: v for k, v in KEY_FIELDS.items() if k != "name"},
    },
    ("code", "name"),
)
CLIENT_UPDATE = schema(
    {
        "name": _NAME,
        "externalId": {"type": ["string", "null"], "minLength": 1, "maxLength": 200},
        "metadata": _METADATA,
        "active": {"type": "boolean"},
    }
)
KEY_CREATE = schema({**KEY_FIELDS, "platformId": {"type": "string"}, "clientId": {"type": "string"}}, ("name",))
KEY_UPDATE = schema(KEY_FIELDS)
NESTED_KEY = schema(KEY_FIELDS)


@dataclass(frozen=True)
class AdminRequest:
    method: str
    path: list[str]
    query: dict[str, str]
    body: Any
    caller: Caller


def checked(validator: Draft202012Validator, body: Any) -> dict[str, Any]:
    """The body when it fits; a 400 listing every problem otherwise."""
    problems = [
        f"{'/'.join(str(p) for p in e.absolute_path) or 'body'}: {e.message}"
        for e in sorted(validator.iter_errors(body), key=lambda e: list(map(str, e.absolute_path)))
    ][:20]
    if problems:
        raise GatewayError(
            400, "INVALID_BODY", "The request body is not valid: " + "; ".join(problems), details={"problems": problems}
        )
    assert isinstance(body, dict)  # the schemas are all objects
    return body


def expires_at(value: str | None, now: float) -> float | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise GatewayError(
            400, "INVALID_BODY", "expiresAt must be an ISO date-time such as 2030-01-31T12:00:00Z."
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    seconds = moment.timestamp()
    if seconds <= now:
        raise GatewayError(400, "INVALID_BODY", "expiresAt must be in the future.")
    return seconds


def rate_limit(value: int | None, bounds: tuple[int, int]) -> int | None:
    if value is not None and not bounds[0] <= value <= bounds[1]:
        raise GatewayError(
            400, "INVALID_BODY", f"rateLimit must be between {bounds[0]} and {bounds[1]} requests per minute."
        )
    return value


def page(query: dict[str, str]) -> tuple[int, int]:
    """``limit`` (1-500, default 50) and ``offset`` (default 0) from the query string."""
    return _int(query, "limit", 50, 1, 500), _int(query, "offset", 0, 0, 10_000_000)


def _int(query: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise GatewayError(400, "INVALID_PARAMETER", f"{name} must be an integer from {low} to {high}.")
    return value


def moment(query: dict[str, str], name: str) -> float | None:
    raw = query.get(name)
    if raw is None:
        return None
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise GatewayError(400, "INVALID_PARAMETER", f"{name} must be an ISO date-time.") from None
    seconds = (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    if not math.isfinite(seconds):
        raise GatewayError(400, "INVALID_PARAMETER", f"{name} must be an ISO date-time.")
    return seconds


def not_found(kind: str) -> GatewayError:
    return GatewayError(404, "NOT_FOUND", f"No such {kind}.")
