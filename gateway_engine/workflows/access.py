"""Who sees which workflow run: the rule, the identity it is decided from, and the config check
that makes the identity trustworthy.

A user (a JWT, forwarded as ``X-User-Id``) owns the runs they start and sees and controls only
those; another user's run answers 404, as if it did not exist. A service key holding the
``workflows:admin`` scope (or ``*``) sees and controls every run, and may start one on behalf of
``input.userId``, who then owns it. Any other key is refused. A request without any forwarded
identity can only be an in-process call (``invoke`` skips the auth plugin: webhook actions,
workflow steps), because ``validate`` insists every workflows route runs the auth plugin, not
optional, forwarding these headers, and clients cannot send them (they are stripped); such a
call acts as a service.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway_engine.foundation.errors import GatewayError

#: identity field -> the header the auth plugin must forward it in
IDENTITY_HEADERS = {"user_id": "x-user-id", "method": "x-auth-method", "scopes": "x-auth-scopes"}
ADMIN_SCOPES = frozenset({"workflows:admin", "*"})


@dataclass(frozen=True)
class Caller:
    """Who asks: a user id, or None for a service that sees every run."""

    user: str | None

    def owns(self, owner: str | None) -> bool:
        return self.user is None or self.user == owner


def caller_of(headers: dict[str, str]) -> Caller:
    """The caller from the forwarded identity headers (lower-case names); 403 for a key without the scope."""
    user = headers.get(IDENTITY_HEADERS["user_id"])
    if user:
        return Caller(user)
    method = headers.get(IDENTITY_HEADERS["method"])
    if method is None:
        return Caller(None)  # in-process: the gateway itself
    scopes = {s.strip() for s in headers.get(IDENTITY_HEADERS["scopes"], "").split(",")}
    if method == "api_key" and scopes & ADMIN_SCOPES:
        return Caller(None)
    raise GatewayError(
        403, "FORBIDDEN", "Workflows need a user token, or a service key with the workflows:admin scope."
    )
