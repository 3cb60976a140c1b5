"""The credential-verifier seam: how a feature lends the auth plugin a way to check keys it stores.

A feature (the key store) puts a ``CredentialVerifier`` into ``GatewayInfo.verifiers``
under a name while its config compiles; the ``auth`` plugin, told that name in its
options, asks it about every presented key its own tables do not hold. The plugin
never learns where keys live, and the feature never learns about HTTP headers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

#: what a verification says (the Unkey vocabulary): only VALID lets a request through
VALID, NOT_FOUND, MALFORMED, DISABLED, EXPIRED = "VALID", "NOT_FOUND", "MALFORMED", "DISABLED", "EXPIRED"
UNAVAILABLE = "UNAVAILABLE"  # the verifier could not decide (its store is down): a 503, or the last known answer


@dataclass(frozen=True)
class VerifiedCredential:
    """The outcome of one verification and, when VALID, who the key belongs to.

    ``kind`` is ``platform`` or ``client`` for a tenant's key and ``gateway`` for an
    operator's key (no tenant). ``rate_limit`` is the key's own limit per minute.
    """

    status: str
    key_id: str | None = None
    name: str | None = None
    kind: str | None = None
    platform: str | None = None  # the platform's code
    platform_id: str | None = None
    client_id: str | None = None
    external_id: str | None = None
    scopes: frozenset[str] = field(default_factory=frozenset)
    roles: tuple[str, ...] = ()
    rate_limit: int | None = None
    expires_at: float | None = None  # POSIX seconds
    checked_at: float | None = None  # POSIX seconds the store last gave this answer
    #: with UNAVAILABLE: the store's last answer about this key (what `auth: {on_store_error: last_known}` may use)
    last_known: VerifiedCredential | None = None

    @property
    def valid(self) -> bool:
        return self.status == VALID


class CredentialVerifier(Protocol):
    def claims(self, presented: str) -> bool:
        """Whether a key of this shape is this verifier's to judge (its prefix): other keys are not looked up."""
        ...

    async def verify(self, presented: str) -> VerifiedCredential:
        """The key's status and owner; never raises for a bad key, and never keeps the key itself."""
        ...
