"""Standard Webhooks signing: ``whsec_`` secrets and the webhook-id / -timestamp / -signature headers.

The signature is HMAC-SHA256 over ``{id}.{timestamp}.{body}`` keyed with the secret's base64
bytes, sent as ``v1,<base64>``; during a rotation the old secret signs too (space-separated),
so a receiver that still holds it verifies.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os

PREFIX = "whsec_"
MIN_KEY_BYTES = 24
MAX_KEY_BYTES = 64


def new_secret() -> str:
    return PREFIX + base64.b64encode(os.urandom(32)).decode()


def secret_problem(secret: object) -> str | None:
    """Why ``secret`` is not a usable Standard Webhooks secret (None when it is)."""
    if not isinstance(secret, str) or not secret.startswith(PREFIX):
        return f"a secret is `{PREFIX}` followed by base64"
    try:
        key = base64.b64decode(secret[len(PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        return f"a secret is `{PREFIX}` followed by base64"
    if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
        return f"a secret holds {MIN_KEY_BYTES} to {MAX_KEY_BYTES} bytes"
    return None


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret[len(PREFIX) :])
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def signed_headers(secrets: list[str], message_id: str, timestamp: int, body: bytes) -> list[tuple[str, str]]:
    """The three headers, signed with every secret in ``secrets`` (current first)."""
    return [
        ("webhook-id", message_id),
        ("webhook-timestamp", str(timestamp)),
        ("webhook-signature", " ".join(signature(s, message_id, timestamp, body) for s in secrets)),
    ]
