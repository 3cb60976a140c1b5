"""JWT verification for the auth plugin.

Algorithms come only from the configured allowlist, never from the token: the
token's ``alg`` merely picks a key family, and each family has its own key
source (HS* the shared secret; RS/PS/ES/EdDSA the public key or the JWKS). So
``alg: none`` and HS256-signed-with-the-RSA-public-key tokens cannot verify.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from jwt.algorithms import Algorithm, ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from gateway_engine import GatewayError

from .jwt_cache import TokenCache

log = logging.getLogger("gateway_engine.auth")

HMAC_ALGS = frozenset({"HS256", "HS384", "HS512"})
_FAMILIES = (
    ((rsa.RSAPublicKey,), frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})),
    ((ec.EllipticCurvePublicKey,), frozenset({"ES256", "ES384", "ES512"})),
    ((ed25519.Ed25519PublicKey, ed448.Ed448PublicKey), frozenset({"EdDSA"})),
)
_JWK_TYPES: dict[str, type[Algorithm]] = {
    "RSA": RSAAlgorithm,
    "EC": ECAlgorithm,
    "OKP": OKPAlgorithm,
}  # no "oct": HS keys never come from a JWKS


def invalid(message: str) -> GatewayError:
    return GatewayError(401, "INVALID_TOKEN", message, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})


def algorithms_for(key: Any) -> frozenset[str]:
    """The asymmetric algorithms a public key can verify (empty for anything else)."""
    return next((algs for types, algs in _FAMILIES if isinstance(key, types)), frozenset())


class JwtVerifier:
    """Verifies bearer tokens against ``auth.jwt`` of gateway.yaml; built once, shared by every route."""

    def __init__(self, spec: dict[str, Any], config_dir: str) -> None:
        self.allow = frozenset(spec["algorithms"])
        self.secret: bytes | None = spec["secret"].encode() if spec.get("secret") else None
        self.audience = spec.get("audience")
        self.issuer = spec.get("issuer")
        self.leeway = spec.get("leeway", 30)
        self.require = list(spec.get("required_claims", ["exp"]))
        self.claims = {
            name: spec.get(f"{name}_claim", default)
            for name, default in (("roles", "role"), ("scopes", "scope"), ("user_id", "sub"), ("email", "email"))
        }
        sources = [k for k in ("public_key", "public_key_file", "jwks_url") if spec.get(k)]
        if len(sources) > 1:
            raise ValueError(f"auth.jwt: set one of public_key, public_key_file, jwks_url (found {', '.join(sources)})")
        self.public_key: Any = None
        self.jwks: Jwks | None = None
        if spec.get("public_key") or spec.get("public_key_file"):
            pem = spec.get("public_key") or _read(Path(config_dir) / spec["public_key_file"])
            self.public_key = load_public_key(pem)
            if not algorithms_for(self.public_key) & self.allow:
                raise ValueError("auth.jwt: the public key's type matches none of the allowed algorithms")
        elif spec.get("jwks_url"):
            self.jwks = Jwks(
                spec["jwks_url"],
                ttl=spec.get("jwks_cache_ttl", 3600),
                min_interval=spec.get("jwks_min_refresh", 60),
                timeout=spec.get("jwks_timeout", 5),
            )
        self.cache = TokenCache(
            size=spec.get("cache_size", 4096),
            ttl=spec.get("cache_ttl", 300),
            failure_ttl=spec.get("cache_failure_ttl", 1),
            leeway=self.leeway,
        )
        if self.secret is not None and len(self.secret) < 32 and self.allow & HMAC_ALGS:
            log.warning("auth.jwt.secret is shorter than 32 bytes; use a longer random secret for HS256")

    async def verify(self, token: str) -> dict[str, Any] | GatewayError:
        """The verified claims, or the 401/503 to answer; a token seen a moment ago comes from the cache."""
        cached = self.cache.get(token)
        if cached is not None:
            return cached
        result = await self._verify(token)
        self.cache.put(token, result)
        return result

    async def _verify(self, token: str) -> dict[str, Any] | GatewayError:
        """The full check. Messages name the failed check, never the token."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            return invalid("The token is malformed.")
        alg = header.get("alg")
        if alg not in self.allow:
            return invalid("The token's signing algorithm is not accepted.")
        if alg in HMAC_ALGS:
            key, algorithms = self.secret, self.allow & HMAC_ALGS
        else:
            found = await self._public_key(header.get("kid"))
            if isinstance(found, GatewayError):
                return found
            key, jwk_alg = found
            algorithms = algorithms_for(key) & self.allow & ({jwk_alg} if jwk_alg else self.allow)
        if key is None:
            return GatewayError(
                503,
                "AUTH_NOT_CONFIGURED",
                "JWT verification is not configured for this algorithm (its key in auth.jwt is unset).",
            )
        if alg not in algorithms:
            return invalid("The token's signing algorithm does not match its key.")
        try:
            return jwt.decode(
                token,
                key,
                algorithms=sorted(algorithms),
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": self.require},
            )
        except jwt.ExpiredSignatureError:
            return GatewayError(
                401,
                "TOKEN_EXPIRED",
                "The token has expired.",
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        except jwt.ImmatureSignatureError:
            return invalid("The token is not valid yet (nbf/iat is in the future).")
        except jwt.InvalidAudienceError:
            return invalid("The token's audience (aud) is not accepted.")
        except jwt.InvalidIssuerError:
            return invalid("The token's issuer (iss) is not accepted.")
        except jwt.MissingRequiredClaimError as exc:
            return invalid(f"The token lacks the required claim {exc.claim!r}.")
        except jwt.InvalidSignatureError:
            return invalid("The token's signature is invalid.")
        except (jwt.InvalidTokenError, jwt.InvalidKeyError):
            return invalid("The token is malformed or its claims are invalid.")

    async def _public_key(self, kid: str | None) -> tuple[Any, str | None] | GatewayError:
        if self.public_key is not None:
            return self.public_key, None
        if self.jwks is None:
            return None, None
        try:
            found = await self.jwks.key(kid)
        except JwksUnavailable:
            return GatewayError(503, "AUTH_UNAVAILABLE", "The token signing keys (JWKS) could not be fetched.")
        return found if found is not None else invalid("The token's signing key (kid) is not known.")

    def identity(self, claims: dict[str, Any]) -> dict[str, Any]:
        """The identity fields a token carries, by the configured claim names."""
        roles = _as_list(claim(claims, self.claims["roles"]))
        scopes = claim(claims, self.claims["scopes"])
        user_id = claim(claims, self.claims["user_id"])
        email = claim(claims, self.claims["email"])
        return {
            "user_id": None if user_id is None else str(user_id),
            "email": None if email is None else str(email),
            "roles": roles,
            "scopes": scopes.split() if isinstance(scopes, str) else _as_list(scopes),
        }


class JwksUnavailable(Exception):
    """The JWKS was never fetched successfully."""


class Jwks:
    """A JWKS cache: fetched on first use, again after ``ttl`` or for an unknown kid, never more than once per ``min_interval``."""

    def __init__(self, url: str, *, ttl: float, min_interval: float, timeout: float) -> None:
        self.url = url
        self.ttl = ttl
        self.min_interval = min_interval
        self.timeout = timeout
        self.keys: dict[str | None, tuple[Any, str | None]] = {}
        self.fetched_at: float | None = None
        self.attempted_at = float("-inf")
        self._lock = asyncio.Lock()

    async def key(self, kid: str | None) -> tuple[Any, str | None] | None:
        stale = self.fetched_at is None or time.monotonic() - self.fetched_at >= self.ttl
        if stale or self._find(kid) is None:
            await self._refresh()
        if self.fetched_at is None:
            raise JwksUnavailable
        return self._find(kid)

    def _find(self, kid: str | None) -> tuple[Any, str | None] | None:
        if kid is None and len(self.keys) == 1:
            return next(iter(self.keys.values()))
        return self.keys.get(kid)

    async def _refresh(self) -> None:
        async with self._lock:
            now = time.monotonic()
            if now - self.attempted_at < self.min_interval:
                return  # fetched (or failed) a moment ago, maybe by a concurrent request: don't hammer the IdP
            self.attempted_at = now
            try:
                async with httpx.AsyncClient(timeout=self.timeout) as client:
                    response = await client.get(self.url)
                    response.raise_for_status()
                    keys = parse_jwks(response.json())
            except (httpx.HTTPError, ValueError, TypeError, KeyError) as exc:
                log.warning("JWKS fetch from %s failed: %s", self.url.split("?")[0], type(exc).__name__)
                return
            self.keys, self.fetched_at = keys, now


def parse_jwks(document: dict[str, Any]) -> dict[str | None, tuple[Any, str | None]]:
    """kid → (public key, the JWK's own ``alg`` if any); unusable, encryption and symmetric keys are skipped."""
    keys: dict[str | None, tuple[Any, str | None]] = {}
    for jwk in document["keys"]:
        kind = _JWK_TYPES.get(jwk.get("kty", "")) if isinstance(jwk, dict) else None
        if kind is None or jwk.get("use", "sig") != "sig":
            continue
        try:
            key = kind.from_jwk(jwk)
        except (jwt.InvalidKeyError, ValueError, TypeError, KeyError):
            continue
        keys[jwk.get("kid")] = (key.public_key() if hasattr(key, "public_key") else key, jwk.get("alg"))
    return keys


def load_public_key(pem: str) -> Any:
    """A PEM public key or certificate (``\\n`` escapes, as env vars often carry them, are accepted)."""
    if "\n" not in pem.strip():
        pem = pem.replace("\\n", "\n")
    data = pem.strip().encode()
    try:
        if b"BEGIN CERTIFICATE" in data:
            return x509.load_pem_x509_certificate(data).public_key()
        return serialization.load_pem_public_key(data)
    except ValueError:
        raise ValueError("auth.jwt: the public key is not a PEM public key or certificate") from None


def claim(claims: dict[str, Any], name: str) -> Any:
    """A claim by name, or by dotted path into nested objects (``realm_access.roles``)."""
    if name in claims:
        return claims[name]
    value: Any = claims
    for part in name.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def _read(path: Path) -> str:
    try:
        return path.read_text("utf-8")
    except OSError as exc:
        raise ValueError(f"auth.jwt.public_key_file: cannot read {path.name}: {exc.strerror}") from None
