"""Stored-key verification with an in-process cache that every key change invalidates.

A presented key's digest is looked up in a bounded LRU: positive results live ``cache_ttl``
seconds, negative ones ``negative_ttl``. A key not in it is checked for shape and checksum
first (no store round trip for a malformed one). A change anywhere (this process or
another on the same store) notifies the ``keys`` channel with the affected digests, and
each process drops them: the bound on a revoked key still working is the notification's
delivery time (PostgreSQL: milliseconds; SQLite: ``store.poll_interval``), which
``gateway_keys_invalidation_lag_seconds`` measures. A lookup racing an invalidation is
not cached, so a stale read never outlives the change that made it stale. An entry past its
``ttl`` stays in the LRU until evicted: when the store is down, ``verify`` answers UNAVAILABLE
with that entry as ``last_known`` (the auth plugin's ``on_store_error: last_known`` may use it).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

import orjson

from gateway_engine.foundation.credentials import (
    DISABLED,
    EXPIRED,
    MALFORMED,
    NOT_FOUND,
    UNAVAILABLE,
    VALID,
    VerifiedCredential,
)

from . import keyformat, keyring
from .metrics import INVALIDATION_LAG, VERIFICATIONS
from .metrics import MALFORMED as MALFORMED_COUNT
from .settings import KeysSettings

log = logging.getLogger("gateway_engine.keys")
CHANNEL = "keys"
_MALFORMED = VerifiedCredential(MALFORMED)
_UNAVAILABLE = VerifiedCredential(UNAVAILABLE)
_counters: dict[tuple[str, str], Any] = {}  # VERIFICATIONS by (result, source)


def credential_of(row: dict[str, Any] | None, now: float) -> VerifiedCredential:
    """What a stored row means for a request: its status and owner, as the store said at ``now``."""
    if row is None:
        return VerifiedCredential(NOT_FOUND, checked_at=now)
    revoked = row["status"] != keyring.ACTIVE
    inactive = row["platform_active"] is False or row["client_active"] is False
    return VerifiedCredential(
        status=DISABLED if revoked or inactive else VALID,
        key_id=row["id"],
        name=row["name"],
        kind=row["owner_kind"],
        platform=row["platform_code"],
        platform_id=row["platform_id"],
        client_id=row["client_id"],
        external_id=row["client_external_id"],
        scopes=frozenset(row["scopes"]),
        roles=tuple(row["roles"]),
        rate_limit=row["rate_limit"],
        expires_at=row["expires_at"],
        checked_at=now,
    )


class StoredKeyVerifier:
    """The keys feature's ``CredentialVerifier`` (``auth: {verifier: keys}``)."""

    def __init__(self, settings: KeysSettings, lookup: Callable[[str], Any], on_valid: Callable[[str, float], None]):
        self.settings = settings
        self._lookup = lookup  # async digest -> row | None
        self._on_valid = on_valid  # counts usage (batched)
        self._cache: OrderedDict[str, tuple[VerifiedCredential, float]] = OrderedDict()
        self._generation = 0  # bumped by every invalidation: lookups that raced one are not cached

    def claims(self, presented: str) -> bool:
        prefix, sep, _ = presented.partition("_")
        return bool(sep) and prefix in self.settings.accept_prefixes

    async def verify(self, presented: str) -> VerifiedCredential:
        digest = keyformat.digest(presented)
        cached = self._cache.get(digest)
        # only a well-formed key was ever cached, and a digest found is that key's: its shape and checksum
        # (half the cost of a cached verification) are checked once per entry, not once per request
        if cached is None and not keyformat.well_formed(presented, self.settings.accept_prefixes):
            MALFORMED_COUNT.inc()
            return _MALFORMED
        now = time.time()
        if cached is not None and cached[1] > time.monotonic():
            self._cache.move_to_end(digest)
            credential, source = cached[0], "cache"
        else:
            generation = self._generation
            try:
                credential = credential_of(await self._lookup(digest), now)
            except Exception as exc:  # the store is down: UNAVAILABLE (a 503), never a pass of its own accord
                log.warning("stored key lookup failed (%s)", type(exc).__name__)
                VERIFICATIONS.labels(UNAVAILABLE, "store").inc()
                if cached is None:  # never seen, or invalidated by a change: nothing to fall back on
                    return _UNAVAILABLE
                return VerifiedCredential(UNAVAILABLE, last_known=_at(cached[0], now))
            source = "store"
            if generation == self._generation:
                self._remember(digest, credential)
        credential = _at(credential, now)
        counter = _counters.get((credential.status, source))
        if counter is None:  # the labelled child, resolved once (``labels`` takes a lock and builds a key)
            counter = _counters[(credential.status, source)] = VERIFICATIONS.labels(credential.status, source)
        counter.inc()
        if credential.status == VALID and credential.key_id is not None:
            self._on_valid(credential.key_id, now)
        return credential

    def _remember(self, digest: str, credential: VerifiedCredential) -> None:
        ttl = self.settings.cache_ttl if credential.status != NOT_FOUND else self.settings.negative_ttl
        self._cache[digest] = (credential, time.monotonic() + ttl)
        self._cache.move_to_end(digest)
        while len(self._cache) > self.settings.cache_size:
            self._cache.popitem(last=False)

    def forget(self, digests: Iterable[str]) -> None:
        self._generation += 1
        for digest in digests:
            self._cache.pop(digest, None)

    def on_notification(self, payload: str) -> None:
        """A ``keys`` channel message: ``{"digests": [...], "at": POSIX seconds}``."""
        try:
            message = orjson.loads(payload)
            digests, at = list(message["digests"]), float(message["at"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            log.warning("ignored a malformed keys notification")
            return
        self.forget(digests)
        INVALIDATION_LAG.observe(max(0.0, time.time() - at))

    def __len__(self) -> int:
        return len(self._cache)


def _at(credential: VerifiedCredential, now: float) -> VerifiedCredential:
    """The credential as of ``now``: a valid key whose expiry passed is EXPIRED."""
    if credential.status == VALID and credential.expires_at is not None and now >= credential.expires_at:
        return dataclasses.replace(credential, status=EXPIRED)
    return credential


def change_message(digests: Iterable[str]) -> str:
    return orjson.dumps({"digests": list(digests), "at": time.time()}).decode()
