"""A bounded LRU of verified JWTs, so a token seen again skips its signature check.

A hit needs the whole token to be equal (dict keys compare every byte), so a token
that shares a prefix, a header or a payload with a cached one is verified afresh. A
success is kept until the token's own ``exp`` (plus the verifier's leeway, exactly
when an uncached check would start refusing it) or ``ttl``, whichever comes first;
``nbf``/``iat`` need no re-check, as a token that passed them once stays past them.
A failure is kept only ``failure_ttl`` seconds (it may be a not-yet-valid token), and
only a 401: a 503 (the JWKS could not be fetched) is never cached. One cache belongs
to one verifier, so a config with another key, audience or issuer never sees it.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any

from gateway_engine import GatewayError

# Longer tokens are verified every time rather than held: caps the cache's memory at size * this.
MAX_CACHED_TOKEN = 8192


class TokenCache:
    """token → (claims or 401 error, wall-clock deadline, monotonic deadline), least recently used first."""

    def __init__(self, *, size: int, ttl: float, failure_ttl: float, leeway: float) -> None:
        self.size = size
        self.ttl = ttl
        self.failure_ttl = failure_ttl
        self.leeway = leeway
        self._entries: OrderedDict[str, tuple[dict[str, Any] | GatewayError, float, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, token: str) -> dict[str, Any] | GatewayError | None:
        """The cached result (claims as a fresh shallow copy), or None when absent or past its deadline."""
        entry = self._entries.get(token)
        if entry is None:
            return None
        result, wall_deadline, mono_deadline = entry
        if time.time() >= wall_deadline or time.monotonic() >= mono_deadline:
            del self._entries[token]
            return None
        self._entries.move_to_end(token)
        return result if isinstance(result, GatewayError) else dict(result)

    def put(self, token: str, result: dict[str, Any] | GatewayError) -> None:
        if self.size <= 0 or len(token) > MAX_CACHED_TOKEN:
            return
        now_mono = time.monotonic()
        if isinstance(result, GatewayError):
            if result.status != 401 or self.failure_ttl <= 0:
                return
            wall_deadline, mono_deadline = float("inf"), now_mono + self.failure_ttl
        else:
            exp = result.get("exp")
            wall_deadline = float(exp) + self.leeway if isinstance(exp, int | float) else float("inf")
            mono_deadline = now_mono + self.ttl
            result = dict(result)  # the caller's copy may be changed; the cached one never is
        self._entries[token] = (result, wall_deadline, mono_deadline)
        self._entries.move_to_end(token)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)
