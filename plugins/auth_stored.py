"""Stored keys for the auth plugin: a platform key (and a client key) checked by a credential verifier.

The verifier is lent by a feature (the key store) under a name in ``GatewayInfo.verifiers``;
this module only turns its answers into identities and 401s. Both keys of a tenant request
are verified; the client key must belong to a client of the platform key's platform. The
identity's scopes are the intersection of both keys' scopes (an empty list on the client
key inherits the platform's), roles likewise, and each key's own rate limit travels in
``key_limits`` for the ``rate_limit`` plugin. When the verifier's store is down, ``on_store_error``
decides: a 503 (``closed``), or the store's last answer about the key (``last_known``), never a pass
for a key the store did not confirm.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from gateway_engine import CredentialVerifier, GatewayError, VerifiedCredential

_CODES = {"DISABLED": "DISABLED", "EXPIRED": "EXPIRED"}
UNAVAILABLE = GatewayError(503, "KEY_STORE_UNAVAILABLE", "Keys cannot be verified right now; try again shortly.")
LAST_KNOWN_PATTERN = r"^[1-9][0-9]{0,5}(s|m|h)$"
_UNIT = {"s": 1, "m": 60, "h": 3600}
_MAX_LAST_KNOWN = 86_400.0
log = logging.getLogger("gateway_engine.auth")
_last_warning = float("-inf")


def last_known_seconds(options: dict[str, Any]) -> float:
    """``last_known_for`` in seconds (the schema checked its shape); ValueError above 24h."""
    text = options["last_known_for"]
    seconds = float(text[:-1]) * _UNIT[text[-1]]
    if seconds > _MAX_LAST_KNOWN:
        raise ValueError(f"last_known_for: {text} is longer than 24h")
    return seconds


def settle(credential: VerifiedCredential, last_known_for: float | None) -> VerifiedCredential:
    """With ``on_store_error: last_known``, an UNAVAILABLE answer becomes the store's last answer about the key
    when there is one, young enough, that the store actually gave (never "unknown key": that would blame the
    client for the outage). Otherwise the credential is unchanged (a 503)."""
    if credential.status != "UNAVAILABLE" or last_known_for is None:
        return credential
    last = credential.last_known
    if last is None or last.checked_at is None or last.status in ("NOT_FOUND", "MALFORMED"):
        return credential
    if time.time() - last.checked_at > last_known_for:
        return credential
    global _last_warning
    if time.monotonic() - _last_warning > 60:  # one line a minute, not one per request of an outage
        _last_warning = time.monotonic()
        log.warning("key store unreachable: answering keys as the store last did (on_store_error: last_known)")
    return last


def refusal(credential: VerifiedCredential, code: str, label: str) -> GatewayError | None:
    """The 401 (or 503) for a credential that does not let a request through; None when it does."""
    if credential.valid:
        return None
    if credential.status == "UNAVAILABLE":
        return UNAVAILABLE
    suffix = _CODES.get(credential.status)
    if suffix is None:  # malformed and unknown keys are not told apart
        return GatewayError(401, f"INVALID_{code}", f"The {label} is not valid.")
    what = "disabled (revoked, or its owner deactivated)" if suffix == "DISABLED" else "expired"
    return GatewayError(401, f"{code}_{suffix}", f"The {label} {credential.name!r} is {what}.")


async def stored_identity(
    verifier: CredentialVerifier,
    key: str,
    client_key: str | None,
    *,
    require_client: bool,
    client_header: str,
    last_known_for: float | None = None,
) -> dict[str, Any] | GatewayError:
    platform = settle(await verifier.verify(key), last_known_for)
    refused = refusal(platform, "API_KEY", "API key")
    if refused is not None:
        return refused
    if platform.kind == "client":
        return GatewayError(401, "INVALID_API_KEY", f"The API key is a client key: send it in {client_header}.")
    if client_key is None:
        if require_client:
            return GatewayError(401, "CLIENT_KEY_REQUIRED", f"This route requires a client key in {client_header}.")
        return _identity(platform, None)
    client = settle(await verifier.verify(client_key), last_known_for)
    if client.valid and (client.kind != "client" or client.platform_id != platform.platform_id):
        client = VerifiedCredential("NOT_FOUND")  # a valid key of another platform is no client key here
    refused = refusal(client, "CLIENT_KEY", "client key")
    if refused is not None:
        return refused
    return _identity(platform, client)


def _narrow(platform: frozenset[str], client: frozenset[str]) -> frozenset[str]:
    if not client:
        return platform
    if "*" in platform:
        return client
    return platform if "*" in client else platform & client


def _identity(platform: VerifiedCredential, client: VerifiedCredential | None) -> dict[str, Any]:
    scopes, roles = platform.scopes, platform.roles
    limits = [[platform.key_id, platform.rate_limit]] if platform.rate_limit else []
    if client is not None:
        scopes = _narrow(scopes, client.scopes)
        roles = tuple(r for r in roles if r in client.roles) if client.roles else roles
        if client.rate_limit:
            limits.append([client.key_id, client.rate_limit])
    tenant = platform.platform_id if platform.kind == "platform" else None
    consumer = platform.platform or platform.name or platform.key_id
    if client is not None:
        consumer = f"{consumer}/{client.client_id}"
    return {
        "method": "api_key",
        "consumer": consumer,
        "sub": None,
        "user_id": None,
        "email": None,
        "role": roles[0] if roles else None,
        "roles": list(roles),
        "scopes": sorted(scopes),
        "claims": None,
        "key_name": (client or platform).name,
        "key_id": (client or platform).key_id,
        "platform": platform.platform,
        "tenant": tenant,
        "client_id": client.client_id if client is not None else None,
        "external_id": client.external_id if client is not None else None,
        "key_limits": limits,
    }
