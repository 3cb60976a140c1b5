"""Signature schemes: is a delivery genuine and fresh? Every check runs over the raw body bytes,
before anything parses them, and compares digests in constant time against every secret."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from typing import Any, Protocol


class Rejected(Exception):
    """A delivery that failed verification; the message is safe to show (it never holds a secret)."""


class Verifier(Protocol):
    def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> None: ...


def _matches(expected: Sequence[bytes], presented: Sequence[bytes | None]) -> bool:
    """True when any presented signature equals any expected one; every pair is compared (no short-circuit)."""
    found = False
    for want in expected:
        for got in presented:
            if got is not None:
                found |= hmac.compare_digest(want, got)
    return found


def _timestamp(value: str) -> int:
    try:
        return int(value.strip())
    except ValueError:
        raise Rejected("the signature timestamp is not a number of seconds") from None


def _fresh(timestamp: int, now: float, tolerance: float) -> None:
    if abs(now - timestamp) > tolerance:
        raise Rejected(f"the signature timestamp is more than {tolerance:g}s away from the gateway's clock")


def _unhex(value: str) -> bytes | None:
    try:
        return bytes.fromhex(value.strip())
    except ValueError:
        return None


def _unbase64(value: str) -> bytes | None:
    try:
        return base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name.lower())
    if not value:
        raise Rejected(f"the {name} header is missing")
    return value


class StripeVerifier:
    """``Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>...]``, HMAC-SHA256(secret, ``{t}.{body}``).

    The secret (``whsec_...``) is the key as written. Several ``v1`` values are accepted:
    Stripe sends one per active secret while a secret is being rolled.
    """

    def __init__(self, secrets: Sequence[str], tolerance: float) -> None:
        self.keys = [s.encode() for s in secrets]
        self.tolerance = tolerance

    def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> None:
        pairs = [item.split("=", 1) for item in _header(headers, "Stripe-Signature").split(",") if "=" in item]
        stamps = [v.strip() for k, v in pairs if k.strip() == "t"]
        signatures = [_unhex(v) for k, v in pairs if k.strip() == "v1"]
        if len(stamps) != 1 or not signatures:
            raise Rejected("the Stripe-Signature header has no t= timestamp or no v1= signature")
        timestamp = _timestamp(stamps[0])
        content = stamps[0].encode() + b"." + body
        if not _matches([hmac.new(k, content, hashlib.sha256).digest() for k in self.keys], signatures):
            raise Rejected("no v1 signature in Stripe-Signature matches")
        _fresh(timestamp, now, self.tolerance)


_PLACEHOLDER = re.compile(r"\{(\w*)\}")


class HmacVerifier:
    """A signature header holding HMAC(secret, signed content), hex or base64, after an optional prefix.

    ``signed_content`` is split once into literal bytes and the ``{body}``/``{timestamp}``
    placeholders, so the signed bytes are assembled without decoding the body.
    """

    def __init__(
        self,
        secrets: Sequence[str],
        *,
        header: str,
        algorithm: str = "sha256",
        encoding: str = "hex",
        prefix: str = "",
        timestamp_header: str | None = None,
        signed_content: str = "{body}",
        tolerance: float = 300.0,
    ) -> None:
        self.keys = [s.encode() for s in secrets]
        self.header, self.prefix = header, prefix
        self.digest = getattr(hashlib, algorithm)
        self.decode = _unhex if encoding == "hex" else _unbase64
        self.timestamp_header, self.tolerance = timestamp_header, tolerance
        self.parts = parse_signed_content(signed_content, timestamp_header is not None)

    def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> None:
        value = _header(headers, self.header)
        if not value.startswith(self.prefix):
            raise Rejected(f"the {self.header} header does not start with {self.prefix!r}")
        presented = [self.decode(value[len(self.prefix) :])]
        stamp = _header(headers, self.timestamp_header) if self.timestamp_header else ""
        fills = {"body": body, "timestamp": stamp.encode("latin-1")}
        content = b"".join(fills[p] if isinstance(p, str) else p for p in self.parts)
        if not _matches([hmac.new(k, content, self.digest).digest() for k in self.keys], presented):
            raise Rejected(f"the {self.header} signature does not match")
        if not self.timestamp_header:
            return
        timestamp = _timestamp(stamp)
        _fresh(timestamp, now, self.tolerance)


def parse_signed_content(template: str, has_timestamp: bool) -> list[Any]:
    """Split ``{timestamp}.{body}`` into the names and literal bytes it joins; ValueError for anything else in braces."""
    parts: list[Any] = []
    last = 0
    for match in _PLACEHOLDER.finditer(template):
        name = match.group(1)
        if name not in ("body", "timestamp"):
            raise ValueError(f"signed_content may use {{body}} and {{timestamp}}, not {{{name}}}")
        if name == "timestamp" and not has_timestamp:
            raise ValueError("signed_content uses {timestamp} but no timestamp_header is set")
        parts += [template[last : match.start()].encode(), name]
        last = match.end()
    parts.append(template[last:].encode())
    if "body" not in parts:
        raise ValueError("signed_content must include {body}, or the body would not be signed")
    return [p for p in parts if p != b""]


class StandardWebhooksVerifier:
    """Standard Webhooks (standardwebhooks.com, also Svix): ``webhook-signature: v1,<base64> ...`` =
    base64(HMAC-SHA256(base64decode(secret without ``whsec_``), ``{webhook-id}.{webhook-timestamp}.{body}``))."""

    def __init__(self, secrets: Sequence[str], tolerance: float) -> None:
        self.keys = [_standard_key(s) for s in secrets]
        self.tolerance = tolerance

    def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> None:
        delivery = _header(headers, "webhook-id")
        stamp = _header(headers, "webhook-timestamp")
        entries = _header(headers, "webhook-signature").split()
        presented = [_unbase64(e[3:]) for e in entries if e.startswith("v1,")]
        content = f"{delivery}.{stamp}.".encode("latin-1") + body
        if not _matches([hmac.new(k, content, hashlib.sha256).digest() for k in self.keys], presented):
            raise Rejected("no v1 signature in webhook-signature matches")
        timestamp = _timestamp(stamp)
        _fresh(timestamp, now, self.tolerance)


def _standard_key(secret: str) -> bytes:
    key = _unbase64(secret.removeprefix("whsec_"))
    if not key:
        raise ValueError("a standard-webhooks secret must be `whsec_` followed by base64")
    return key


class SharedSecretVerifier:
    """The secret itself in a header. The weakest scheme: it does not cover the body, and whoever
    sees one delivery can send others; use it only when the sender can do nothing better."""

    def __init__(self, secrets: Sequence[str], *, header: str, prefix: str = "") -> None:
        self.digests = [hashlib.sha256(s.encode()).digest() for s in secrets]  # equal lengths for compare_digest
        self.header, self.prefix = header, prefix

    def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> None:
        value = _header(headers, self.header)
        if not value.startswith(self.prefix):
            raise Rejected(f"the {self.header} header does not start with {self.prefix!r}")
        if not _matches(self.digests, [hashlib.sha256(value[len(self.prefix) :].encode("latin-1")).digest()]):
            raise Rejected(f"the {self.header} header does not hold a valid secret")


def build_verifier(spec: Mapping[str, Any], secrets: Sequence[str], tolerance: float) -> Verifier:
    """The verifier a ``verify`` block describes (already schema-checked); ValueError for a bad secret or template."""
    scheme = spec["scheme"]
    if scheme == "stripe":
        return StripeVerifier(secrets, tolerance)
    if scheme == "standard-webhooks":
        return StandardWebhooksVerifier(secrets, tolerance)
    if scheme == "hmac":
        return HmacVerifier(
            secrets,
            header=spec["header"],
            algorithm=spec.get("algorithm", "sha256"),
            encoding=spec.get("encoding", "hex"),
            prefix=spec.get("prefix", ""),
            timestamp_header=spec.get("timestamp_header"),
            signed_content=spec.get("signed_content", "{body}"),
            tolerance=tolerance,
        )
    return SharedSecretVerifier(secrets, header=spec["header"], prefix=spec.get("prefix", ""))
