"""API-key tables for the auth plugin: keys are held only as SHA-256 digests and looked up by digest."""

from __future__ import annotations

import hashlib
import hmac
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True)
class KeyEntry:
    """One declared key. ``digest`` is the SHA-256 of the key; the key itself is never kept."""

    name: str
    digest: bytes
    scopes: frozenset[str] | None  # None: not declared (a client key then inherits its platform's)
    roles: tuple[str, ...] | None
    expires: float | None  # POSIX timestamp
    disabled: bool
    platform: str | None  # api key: tenant id (default: its name); client key: the platform key it belongs to
    client_id: str | None

    def expired(self, now: float) -> bool:
        return self.expires is not None and now >= self.expires


log = logging.getLogger("gateway_engine.auth")


class KeyTable:
    """Digest → entry. A lookup hashes the presented key, finds it by digest, then compares in constant time."""

    def __init__(self, section: str, entries: list[dict[str, Any]], *, client: bool) -> None:
        self.by_digest: dict[bytes, KeyEntry] = {}
        names: set[str] = set()
        for raw in entries:
            entry = _entry(section, raw, client=client)
            if entry is None:
                continue
            if entry.name in names:
                raise ValueError(f"auth.{section}: the name {entry.name!r} is used twice")
            if entry.digest in self.by_digest:  # two env vars holding one key (aliases): the first entry wins
                log.warning(
                    "auth.%s: %r has the same key as %r; %r is ignored",
                    section,
                    entry.name,
                    self.by_digest[entry.digest].name,
                    entry.name,
                )
                continue
            names.add(entry.name)
            self.by_digest[entry.digest] = entry

    def __len__(self) -> int:
        return len(self.by_digest)

    def lookup(self, presented: str) -> KeyEntry | None:
        """The entry of a presented key, exactly as sent: no trimming, no case folding."""
        digest = hashlib.sha256(presented.encode("latin-1")).digest()
        entry = self.by_digest.get(digest)
        if entry is not None and hmac.compare_digest(entry.digest, digest):
            return entry
        return None


def _entry(section: str, raw: dict[str, Any], *, client: bool) -> KeyEntry | None:
    """One entry, or None when it has no key material (its ``${ENV}`` is unset and was dropped)."""
    name = raw["name"]
    where = f"auth.{section}[{name}]"
    key, key_hash = raw.get("key"), raw.get("key_sha256")
    if key is not None and key_hash is not None:
        raise ValueError(f"{where}: set `key` or `key_sha256`, not both")
    if key is None and key_hash is None:
        return None
    if key is not None:
        if not key or key != key.strip():
            raise ValueError(
                f"{where}: the key is empty or has leading/trailing whitespace (check its env var); "
                "no HTTP client can present it"
            )
        try:
            digest = hashlib.sha256(key.encode("latin-1")).digest()
        except UnicodeEncodeError:
            raise ValueError(f"{where}: the key must be ASCII/latin-1 text to travel in an HTTP header") from None
    else:
        assert key_hash is not None  # key is None here, and an entry with neither returned above
        try:
            digest = bytes.fromhex(key_hash)
        except ValueError:
            digest = b""
        if len(digest) != 32:
            raise ValueError(f"{where}: key_sha256 must be 64 hex digits (see `gateway-engine hash-key`)")
    scopes = raw.get("scopes")
    roles = raw.get("roles")
    return KeyEntry(
        name=name,
        digest=digest,
        scopes=frozenset(scopes) if scopes is not None else (None if client else frozenset()),
        roles=tuple(roles) if roles is not None else (None if client else ()),
        expires=parse_expires(raw["expires"], where) if raw.get("expires") is not None else None,
        disabled=bool(raw.get("disabled", False)),
        platform=raw.get("platform") if client else raw.get("platform", name),
        client_id=raw.get("client_id", name) if client else raw.get("client_id"),
    )


def parse_expires(value: str, where: str) -> float:
    """An ISO date (expires at 00:00 UTC that day) or datetime (naive means UTC) as a timestamp."""
    try:
        moment = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"{where}: expires must be an ISO date or datetime, e.g. 2030-01-31 or 2030-01-31T12:00:00Z"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()
