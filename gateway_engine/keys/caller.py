"""Who calls the admin API, from the identity the auth plugin forwards, and the config check behind it.

The auth plugin forwards ``consumer``, ``tenant``, ``key_id`` and ``scopes`` in the headers
below and strips any copy a client sends. ``validate`` insists that every route to a
``keys://`` upstream runs the auth plugin (not optional) forwarding exactly these, so the
headers can be trusted here. A caller whose key belongs to a platform (a tenant) sees and
changes only that platform's clients and keys; an operator's key (YAML, or a stored key
of kind ``gateway``) sees everything. No forwarded consumer means no caller: 401.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway_engine.foundation.errors import GatewayError

#: identity field -> the header the auth plugin must forward it in
IDENTITY_HEADERS = {
    "consumer": "x-consumer-id",
    "tenant": "x-tenant-id",
    "key_id": "x-key-id",
    "scopes": "x-auth-scopes",
}


@dataclass(frozen=True)
class Caller:
    consumer: str
    tenant: str | None  # a platform id, or None for an operator
    key_id: str | None
    scopes: frozenset[str]

    def may_grant(self, scopes: list[str]) -> list[str]:
        """The scopes of ``scopes`` this caller does not hold itself (a key never grants more than its maker's)."""
        if "*" in self.scopes:
            return []
        return sorted(set(scopes) - self.scopes)


def caller_of(headers: dict[str, str]) -> Caller:
    consumer = headers.get(IDENTITY_HEADERS["consumer"])
    if not consumer:
        raise GatewayError(401, "UNAUTHENTICATED", "The admin API needs an authenticated caller.")
    scopes = frozenset(s.strip() for s in headers.get(IDENTITY_HEADERS["scopes"], "").split(",") if s.strip())
    return Caller(
        consumer=consumer,
        tenant=headers.get(IDENTITY_HEADERS["tenant"]) or None,
        key_id=headers.get(IDENTITY_HEADERS["key_id"]) or None,
        scopes=scopes,
    )
