"""The stored-key format: ``{prefix}_{43 base62 chars of 32 random bytes}{6 base62 chars of CRC-32}``.

The checksum lets the gateway refuse a mistyped or made-up key before any store lookup
(Zuplo's idea): it guards the database, not the secret, which is the 256 random bits.
Only the SHA-256 of a key is ever stored; ``start`` (prefix plus four characters) is what
listings show so that people can tell their keys apart.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import zlib

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
RANDOM_BYTES = 32
_RANDOM_CHARS = 43  # 62**43 > 2**256
_CHECK_CHARS = 6  # 62**6 > 2**32
PREFIX = re.compile(r"^[a-z][a-z0-9]{0,15}$")
_SHAPE = re.compile(r"^([a-z][a-z0-9]{0,15})_[0-9A-Za-z]{" + str(_RANDOM_CHARS + _CHECK_CHARS) + "}$")


def _base62(number: int, width: int) -> str:
    chars = []
    while number:
        number, digit = divmod(number, 62)
        chars.append(ALPHABET[digit])
    return "".join(reversed(chars)).rjust(width, "0")


def _checksum(text: str) -> str:
    return _base62(zlib.crc32(text.encode("ascii")), _CHECK_CHARS)


def generate(prefix: str) -> str:
    """A new key with ``prefix`` (lower-case letters and digits, starting with a letter, at most 16)."""
    if not PREFIX.match(prefix):
        raise ValueError(f"key prefix {prefix!r} must be 1-16 lower-case letters or digits, starting with a letter")
    body = f"{prefix}_{_base62(int.from_bytes(secrets.token_bytes(RANDOM_BYTES), 'big'), _RANDOM_CHARS)}"
    return body + _checksum(body)


def well_formed(presented: str, prefixes: frozenset[str] | None = None) -> bool:
    """Shape and checksum hold (and the prefix is one of ``prefixes`` when given): worth a lookup."""
    match = _SHAPE.match(presented)
    if match is None or (prefixes is not None and match.group(1) not in prefixes):
        return False
    body, check = presented[:-_CHECK_CHARS], presented[-_CHECK_CHARS:]
    return secrets.compare_digest(_checksum(body), check)


def prefix_of(presented: str) -> str:
    return presented.partition("_")[0]


def digest(presented: str) -> str:
    """The SHA-256 (hex) the store keeps and looks keys up by."""
    return hashlib.sha256(presented.encode("latin-1", "replace")).hexdigest()


def start_of(key: str) -> str:
    """What listings show: ``rp_Ab3x…``-style, enough to recognise a key, far too little to use it."""
    prefix, _, rest = key.partition("_")
    return f"{prefix}_{rest[:4]}"
