"""auth: API keys (with per-client tenant keys) and JWTs; per-route roles and scopes; identity headers upstream."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

from gateway_engine import GatewayError, GatewayInfo, Plugin, RequestContext

from .auth_jwt import JwtVerifier
from .auth_keys import KeyEntry, KeyTable
from .auth_stored import LAST_KNOWN_PATTERN, last_known_seconds, stored_identity

IDENTITY_FIELDS = (
    "user_id",
    "role",
    "roles",
    "email",
    "scopes",
    "client_id",
    "platform",
    "key_name",
    "consumer",
    "method",
    "tenant",
    "external_id",
    "key_id",
)
DEFAULT_IDENTITY_HEADERS = {
    "user_id": "X-User-Id",
    "role": "X-User-Role",
    "email": "X-User-Email",
    "client_id": "X-Client-Id",
    "platform": "X-Platform-Id",
    "external_id": "X-Client-External-Id",
}
_SAFE_HEADER_CHARS = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")
_STRINGS = {"type": "array", "items": {"type": "string", "minLength": 1}, "uniqueItems": True}


class AuthPlugin(Plugin):
    """Authenticates by the first accepted method whose credential is present; then checks roles and scopes.

    A present but invalid credential is always a 401, never a fall-through to the
    next method or to anonymous. Key tables and the JWT verifier come from the
    gateway-wide ``auth`` section and are shared by every route.
    """

    name = "auth"
    priority = 1000
    options_schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "accept": {
                "type": "array",
                "items": {"enum": ["api_key", "jwt"]},
                "minItems": 1,
                "uniqueItems": True,
                "default": ["api_key"],
                "description": "Methods tried in order; the first whose credential is present decides. "
                "`jwt` needs `auth.jwt` and `api_key` needs `auth.api_keys` in gateway.yaml.",
            },
            "optional": {
                "type": "boolean",
                "default": False,
                "description": "Let requests without any credential through anonymously "
                "(on routes without roles, scopes or client-key requirements).",
            },
            "scopes": {
                **_STRINGS,
                "default": [],
                "description": "Scopes the caller must all hold (key `scopes` or the JWT scopes claim); `*` grants every scope.",
            },
            "roles": {
                **_STRINGS,
                "default": [],
                "description": "Roles of which the caller must hold at least one (key `roles` or the JWT roles claim).",
            },
            "verifier": {
                "type": ["string", "null"],
                "minLength": 1,
                "default": None,
                "description": "Also accept stored keys, checked by the credential verifier a feature lends under "
                "this name (`keys`: the key store, see docs/stored-keys.md). Keys in `auth.api_keys` still work.",
            },
            "on_store_error": {
                "type": "string",
                "enum": ["closed", "last_known"],
                "default": "closed",
                "description": "When the verifier's store is unreachable: `closed` answers 503 KEY_STORE_UNAVAILABLE; "
                "`last_known` answers a key as the store last did, if that was at most `last_known_for` ago "
                "(a key it never confirmed still gets the 503: unverified keys are never let through).",
            },
            "last_known_for": {
                "type": "string",
                "pattern": LAST_KNOWN_PATTERN,
                "default": "15m",
                "description": "With `on_store_error: last_known`: how old the store's last answer may be "
                "(`30s`, `15m`, `1h`; at most 24h).",
            },
            "require_client_key": {
                "type": "boolean",
                "default": False,
                "description": "Require a per-client key (`auth.client_keys`) besides the platform API key.",
            },
            "api_key_header": {
                "type": "string",
                "minLength": 1,
                "default": "x-api-key",
                "description": "Header carrying the (platform) API key.",
            },
            "client_key_header": {
                "type": "string",
                "minLength": 1,
                "default": "client-x-api-key",
                "description": "Header carrying the per-client key of a tenant.",
            },
            "forward_identity": {
                "type": "object",
                "additionalProperties": False,
                "default": {"enabled": False, "headers": DEFAULT_IDENTITY_HEADERS},
                "description": "Identity headers sent upstream. Client-sent headers of these names are always removed.",
                "properties": {
                    "enabled": {
                        "type": "boolean",
                        "default": False,
                        "description": "Send the identity of authenticated requests to the upstream.",
                    },
                    "headers": {
                        "type": "object",
                        "additionalProperties": False,
                        "default": DEFAULT_IDENTITY_HEADERS,
                        "description": "Identity field → header name; replaces the default mapping when given.",
                        "properties": {
                            f: {"type": "string", "minLength": 1, "description": f"Header for the identity's `{f}`."}
                            for f in IDENTITY_FIELDS
                        },
                    },
                },
            },
        },
    }

    def __init__(self, options: dict[str, Any], gateway: GatewayInfo) -> None:
        super().__init__(options, gateway)
        self.accept = tuple(options["accept"])
        self.optional = options["optional"]
        self.scopes = frozenset(options["scopes"])
        self.roles = frozenset(options["roles"])
        self.require_client = options["require_client_key"]
        self.key_header = options["api_key_header"].lower()
        self.client_header = options["client_key_header"].lower()
        forward = options["forward_identity"]
        self.forward = forward.get("enabled", False)
        self.identity_headers = tuple(forward.get("headers", DEFAULT_IDENTITY_HEADERS).items())
        # never let a client choose its own identity or pass its keys on: these are removed before forwarding
        self.strip_request_headers = {
            self.key_header,
            self.client_header,
            *(h.lower() for _, h in self.identity_headers),
        }
        settings = gateway.settings.get("auth") or {}
        self.verifier_name: str | None = options.get("verifier")
        self.last_known_for = last_known_seconds(options) if options["on_store_error"] == "last_known" else None
        if "api_key" in self.accept and "api_keys" not in settings and self.verifier_name is None:
            raise ValueError(
                "accept lists api_key but gateway.yaml has no auth.api_keys (nor does auth name a verifier)"
            )
        if "jwt" in self.accept and "jwt" not in settings:
            raise ValueError("accept lists jwt but gateway.yaml has no auth.jwt section")
        # one key table and one verifier (with its JWKS cache) for the whole config, whatever the route options
        self.platform_keys: KeyTable = gateway.shared(
            "auth.api_keys", lambda: KeyTable("api_keys", settings.get("api_keys", []), client=False)
        )
        self.client_keys: KeyTable = gateway.shared(
            "auth.client_keys", lambda: KeyTable("client_keys", settings.get("client_keys", []), client=True)
        )
        self.jwt: JwtVerifier | None = None
        if "jwt" in self.accept:
            self.jwt = gateway.shared("auth.jwt", lambda: JwtVerifier(settings["jwt"], gateway.config_dir))
        self.challenge = {"WWW-Authenticate": "Bearer"} if "jwt" in self.accept else {}
        names = {"api_key": f"an API key in {options['api_key_header']}", "jwt": "a Bearer token in Authorization"}
        self.unauthenticated = GatewayError(
            401,
            "UNAUTHENTICATED",
            "Authentication required: send " + " or ".join(names[m] for m in self.accept) + ".",
            headers=self.challenge,
        )
        self._key_identities: dict[bytes, dict[str, Any]] = {}  # key digest → identity; bounded by the declared keys
        self.lone_client_key = GatewayError(
            401, "UNAUTHENTICATED", f"A client key must come with a platform API key in {options['api_key_header']}."
        )

    @classmethod
    def check_options(cls, options: dict[str, Any]) -> list[str]:
        try:
            return cls._option_problems(options)
        except (AttributeError, TypeError, KeyError):
            return []  # options of the wrong shape: the schema errors already say so

    @staticmethod
    def _option_problems(options: dict[str, Any]) -> list[str]:
        problems = []
        key, client = options["api_key_header"].lower(), options["client_key_header"].lower()
        if key == client:
            problems.append("api_key_header and client_key_header must differ")
        if options["require_client_key"] and "api_key" not in options["accept"]:
            problems.append("require_client_key needs api_key in accept (client keys come with a platform API key)")
        headers = [h.lower() for h in options["forward_identity"].get("headers", DEFAULT_IDENTITY_HEADERS).values()]
        for header in sorted(set(headers) & {key, client, "authorization", "cookie", "host"}):
            problems.append(f"forward_identity header {header!r} collides with a credential or reserved header")
        if len(set(headers)) != len(headers):
            problems.append("forward_identity.headers uses the same header name twice")
        return problems

    async def on_request(self, ctx: RequestContext) -> GatewayError | None:
        if ctx.state.get("options_fallback"):
            return None  # an OPTIONS probe or preflight: answered by cors or the engine, never forwarded
        for method in self.accept:
            if method == "api_key" and self.key_header in ctx.headers:
                result = await self._api_key(ctx)
                break
            if method == "jwt" and self.jwt is not None and "authorization" in ctx.headers:
                result = await self._jwt(ctx, self.jwt)
                break
        else:
            if self.client_header in ctx.headers:
                return self.lone_client_key
            if self.optional and not (self.scopes or self.roles or self.require_client):
                return None
            return self.unauthenticated
        if isinstance(result, GatewayError):
            return result
        ctx.identity = result
        ctx.consumer = result["consumer"]
        denied = self._authorize(result)
        if denied is not None:
            return denied
        if self.forward:
            for field, header in self.identity_headers:
                value = result.get(field)
                if value:
                    ctx.upstream_headers[header] = _header_value(
                        ",".join(value) if isinstance(value, list) else str(value)
                    )
        return None

    async def _api_key(self, ctx: RequestContext) -> dict[str, Any] | GatewayError:
        ambiguous = _repeated(ctx, self.key_header) or _repeated(ctx, self.client_header)
        if ambiguous is not None:
            return ambiguous
        now = time.time()
        found_key = self.platform_keys.lookup(ctx.headers[self.key_header])
        if found_key is None and self.verifier_name is not None:
            verifier = self.gateway.verifiers.get(self.verifier_name)
            if verifier is None:
                return GatewayError(503, "KEY_STORE_UNAVAILABLE", "Stored keys are not enabled on this gateway.")
            if verifier.claims(ctx.headers[self.key_header]):
                return await stored_identity(
                    verifier,
                    ctx.headers[self.key_header],
                    ctx.headers.get(self.client_header),
                    require_client=self.require_client,
                    client_header=self.client_header,
                    last_known_for=self.last_known_for,
                )
        entry = _check_key(found_key, now, "API_KEY", "API key")
        if isinstance(entry, GatewayError):
            return entry
        presented = ctx.headers.get(self.client_header)
        if presented is None:
            if self.require_client:
                return GatewayError(
                    401, "CLIENT_KEY_REQUIRED", f"This route requires a client key in {self.client_header}."
                )
            # a platform key alone always yields the same identity: built once per key (a copy per request)
            identity = self._key_identities.get(entry.digest)
            if identity is None:
                identity = self._key_identities[entry.digest] = _key_identity(
                    entry, entry.name, entry.scopes, entry.roles, entry.client_id
                )
            return dict(identity)
        found = self.client_keys.lookup(presented)
        if found is not None and found.platform is not None and found.platform != entry.name:
            found = None  # a valid client key of another platform is no key here
        client = _check_key(found, now, "CLIENT_KEY", "client key")
        if isinstance(client, GatewayError):
            return client
        # a platform key always has both: auth_keys._entry defaults them to empty for api_keys
        assert entry.scopes is not None and entry.roles is not None
        scopes = entry.scopes if client.scopes is None else _narrow(entry.scopes, client.scopes)
        roles = entry.roles if client.roles is None else tuple(r for r in entry.roles if r in client.roles)
        return _key_identity(entry, f"{entry.platform}/{client.client_id}", scopes, roles, client.client_id)

    async def _jwt(self, ctx: RequestContext, verifier: JwtVerifier) -> dict[str, Any] | GatewayError:
        ambiguous = _repeated(ctx, "authorization")
        if ambiguous is not None:
            return ambiguous
        scheme, _, token = ctx.headers["authorization"].partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return GatewayError(
                401, "INVALID_TOKEN", "The Authorization header must be `Bearer <token>`.", headers=self.challenge
            )
        claims = await verifier.verify(token.strip())
        if isinstance(claims, GatewayError):
            return claims
        if self.client_header in ctx.headers:
            return self.lone_client_key
        if self.require_client:
            return GatewayError(
                401,
                "CLIENT_KEY_REQUIRED",
                f"This route requires a platform API key and a client key in {self.client_header}.",
            )
        fields = verifier.identity(claims)
        return _identity(
            "jwt", fields["user_id"], claims=claims, key_name=None, platform=None, client_id=None, **fields
        )

    def _authorize(self, identity: dict[str, Any]) -> GatewayError | None:
        if self.roles and not self.roles & set(identity["roles"]):
            return GatewayError(
                403,
                "FORBIDDEN",
                f"This route requires one of the roles: {', '.join(sorted(self.roles))}.",
                details={"required_roles": sorted(self.roles)},
            )
        held = set(identity["scopes"])
        missing = sorted(self.scopes - held) if "*" not in held else []
        if missing:
            return GatewayError(
                403,
                "FORBIDDEN",
                f"This route requires the scope(s): {', '.join(sorted(self.scopes))}.",
                details={"required_scopes": sorted(self.scopes), "missing_scopes": missing},
            )
        return None

    # -- the generated API document (gateway_engine's Plugin.openapi_security hook) --------------
    def openapi_security(self) -> dict[str, Any]:
        """The accepted credentials as OpenAPI security schemes; any one accepted method suffices."""
        schemes: dict[str, Any] = {}
        requirement: list[dict[str, list[str]]] = []
        for method in self.accept:
            if method == "jwt":
                if self.require_client:
                    continue  # a token never satisfies a route that needs a client key
                schemes["bearerJwt"] = {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "A user's JWT in `Authorization: Bearer <token>`.",
                }
                requirement.append({"bearerJwt": []})
                continue
            key = _scheme_name("apiKey", self.key_header, "x-api-key")
            schemes[key] = {"type": "apiKey", "in": "header", "name": self.key_header, "description": "An API key."}
            alternative: dict[str, list[str]] = {key: []}
            if self.require_client:
                client = _scheme_name("clientKey", self.client_header, "client-x-api-key")
                schemes[client] = {
                    "type": "apiKey",
                    "in": "header",
                    "name": self.client_header,
                    "description": "A tenant's per-client key, sent with the platform API key.",
                }
                alternative[client] = []
            requirement.append(alternative)
        if self.optional and not (self.scopes or self.roles or self.require_client):
            requirement.append({})  # anonymous is fine too
        return {"schemes": schemes, "requirement": requirement}


def _scheme_name(kind: str, header: str, default: str) -> str:
    """One security scheme per header name: ``apiKey`` for the default header, ``apiKey.<header>`` otherwise."""
    return kind if header == default else f"{kind}.{header}"


def _identity(method: str, consumer: str | None, **fields: Any) -> dict[str, Any]:
    roles = fields["roles"]
    return {
        "method": method,
        "consumer": consumer,
        "sub": fields["user_id"],
        "role": roles[0] if roles else None,
        "claims": None,
        **fields,
    }


def _key_identity(
    entry: KeyEntry, consumer: str, scopes: frozenset[str] | None, roles: tuple[str, ...] | None, client_id: str | None
) -> dict[str, Any]:
    return _identity(
        "api_key",
        consumer,
        user_id=None,
        email=None,
        roles=list(roles or ()),
        scopes=sorted(scopes or ()),
        key_name=entry.name,
        platform=entry.platform,
        client_id=client_id,
    )


def _check_key(entry: KeyEntry | None, now: float, code: str, label: str) -> KeyEntry | GatewayError:
    """The entry when it may be used; otherwise the 401 (unknown keys are not told apart from malformed ones)."""
    if entry is None:
        return GatewayError(401, f"INVALID_{code}", f"The {label} is not valid.")
    if entry.disabled:
        return GatewayError(401, f"{code}_DISABLED", f"The {label} {entry.name!r} is disabled.")
    if entry.expired(now):
        return GatewayError(401, f"{code}_EXPIRED", f"The {label} {entry.name!r} has expired.")
    return entry


def _narrow(platform: frozenset[str], client: frozenset[str]) -> frozenset[str]:
    """A client key can only narrow its platform's scopes; `*` on one side means the other side's set."""
    if "*" in platform:
        return client
    return platform if "*" in client else platform & client


def _repeated(ctx: RequestContext, name: str) -> GatewayError | None:
    """A 400 when the client sent ``name`` on several lines: which credential it meant is not ours to pick.

    Repeated lines reach ``ctx.headers`` joined by ``, ``, so only a value with a comma costs a look at the raw lines."""
    if "," not in ctx.headers.get(name, ""):
        return None
    raw = name.encode("latin-1")
    if sum(1 for k, _ in ctx.scope["headers"] if k.lower() == raw) < 2:
        return None
    return GatewayError(400, "AMBIGUOUS_CREDENTIALS", f"Send one {name} header, not several.")


def _header_value(text: str) -> str:
    """Printable ASCII as is; anything else (non-ASCII, control characters) percent-encoded as UTF-8."""
    return text if text.isascii() and text.isprintable() else quote(text, safe=_SAFE_HEADER_CHARS)
