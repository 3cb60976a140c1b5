"""cors: answer browser preflights and label every reply for the allowed origins."""

from __future__ import annotations

import json
import re
from typing import Any

from gateway_engine import GatewayError, Plugin, Reply, RequestContext

DEFAULT_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
DEFAULT_HEADERS = ["content-type", "authorization", "x-api-key", "client-x-api-key", "x-request-id", "idempotency-key"]
DEFAULT_EXPOSE = ["x-request-id", "ratelimit-limit", "ratelimit-remaining", "ratelimit-reset", "retry-after"]
SAFELISTED_HEADERS = frozenset({"accept", "accept-language", "content-language", "content-type"})
_ORIGIN = re.compile(r"^[a-z][a-z0-9+.-]*://[^/\s?#]+$")
# upstream CORS headers are replaced: the gateway alone decides who may read a reply
_OWNED = frozenset({"access-control-allow-origin", "access-control-allow-credentials", "access-control-expose-headers"})


def expand_origins(items: list[str]) -> list[str]:
    """Configured origins, with items holding a JSON array (an env var like ``["https://a","https://b"]``) expanded."""
    out: list[str] = []
    for item in items:
        item = item.strip()
        if item.startswith("["):
            values = json.loads(item)
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise ValueError(f"allow_origins item {item!r} must be a JSON array of strings")
            out += [v.strip().rstrip("/").lower() for v in values]
        elif item:
            out.append(item.rstrip("/").lower())
    return out


class CorsPlugin(Plugin):
    """Preflights are answered here (before auth, so they never need credentials).

    The preflight header set is built once in ``__init__``, as Starlette's
    CORSMiddleware does; per request only the origin is checked and echoed.
    Error replies carry the CORS headers too, so a browser can read a 401 or 429.
    """

    name = "cors"
    priority = 2000
    runs_unrouted = True
    options_schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "allow_origins": {
                "type": "array",
                "items": {"type": "string"},
                "default": [],
                "description": "Origins allowed exactly (`https://app.example.com`), or `*` for any. "
                "An item holding a JSON array of origins is expanded.",
            },
            "allow_origin_regex": {
                "type": "array",
                "items": {"type": "string"},
                "default": [],
                "description": "Regular expressions an origin may fully match instead (`https://.*\\.example\\.com`).",
            },
            "allow_methods": {
                "type": "array",
                "items": {"type": "string"},
                "default": DEFAULT_METHODS,
                "description": "Methods a preflight may ask for; `*` allows any.",
            },
            "allow_headers": {
                "type": "array",
                "items": {"type": "string"},
                "default": DEFAULT_HEADERS,
                "description": "Request headers a preflight may ask for (CORS-safelisted ones are always allowed); `*` allows any.",
            },
            "expose_headers": {
                "type": "array",
                "items": {"type": "string"},
                "default": DEFAULT_EXPOSE,
                "description": "Response headers the browser lets scripts read.",
            },
            "allow_credentials": {
                "type": "boolean",
                "default": False,
                "description": "Let browsers send cookies / Authorization and read the answer (needs explicit origins).",
            },
            "max_age": {
                "type": "integer",
                "minimum": 0,
                "default": 600,
                "description": "Seconds a browser may cache a preflight answer.",
            },
        },
    }

    def __init__(self, options: dict[str, Any], gateway: Any) -> None:
        super().__init__(options, gateway)
        origins = expand_origins(options["allow_origins"])
        # check_options refuses `*` with credentials, so `*` always means a literal `*` reply
        self.any_origin = "*" in origins
        self.origins = frozenset(origins)
        self.regexes = [re.compile(p) for p in options["allow_origin_regex"]]
        self.credentials = options["allow_credentials"]
        methods = [m.upper() for m in options["allow_methods"]]
        self.any_method = "*" in methods
        self.methods = frozenset(methods)
        headers = [h.lower() for h in options["allow_headers"]]
        self.any_header = "*" in headers
        self.allowed_headers = frozenset(headers) | SAFELISTED_HEADERS
        self.preflight_headers = [("access-control-max-age", str(options["max_age"]))]
        if not self.any_method:
            self.preflight_headers.append(("access-control-allow-methods", ", ".join(methods)))
        if not self.any_header:
            self.preflight_headers.append(("access-control-allow-headers", ", ".join(sorted(self.allowed_headers))))
        self.simple_headers = []
        if self.credentials:
            self.preflight_headers.append(("access-control-allow-credentials", "true"))
            self.simple_headers.append(("access-control-allow-credentials", "true"))
        if options["expose_headers"]:
            self.simple_headers.append(("access-control-expose-headers", ", ".join(options["expose_headers"])))

    @classmethod
    def check_options(cls, options: dict[str, Any]) -> list[str]:
        problems = []
        try:
            origins = expand_origins(options.get("allow_origins", []))
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            return [f"allow_origins: {exc}"]
        for origin in origins:
            if origin != "*" and not _ORIGIN.match(origin):
                problems.append(f"allow_origins: {origin!r} is not an origin (scheme://host[:port], no path)")
        if "*" in origins and options.get("allow_credentials"):
            problems.append(
                "allow_origins '*' cannot be combined with allow_credentials: true "
                "(browsers refuse it); list the origins explicitly"
            )
        for pattern in options.get("allow_origin_regex", []):
            try:
                re.compile(pattern)
            except re.error as exc:
                problems.append(f"allow_origin_regex: {pattern!r} is not a valid regular expression: {exc}")
        return problems

    def allowed(self, origin: str) -> bool:
        return self.any_origin or origin in self.origins or any(r.fullmatch(origin) for r in self.regexes)

    async def on_request(self, ctx: RequestContext) -> Reply | GatewayError | None:
        origin = ctx.headers.get("origin")
        if origin is None or ctx.method != "OPTIONS" or "access-control-request-method" not in ctx.headers:
            return None
        ctx.state["cors_preflight"] = True
        if not self.allowed(origin):
            return GatewayError(400, "CORS_ORIGIN_DENIED", "This origin may not call the API from a browser.")
        allow_origin = self._origin_headers(origin)
        method = ctx.headers["access-control-request-method"].strip()
        if not self.any_method and method not in self.methods:
            return GatewayError(
                400,
                "CORS_METHOD_DENIED",
                f"Method {method!r} is not allowed for cross-origin requests.",
                headers=allow_origin,
            )
        requested = [
            h.strip().lower() for h in ctx.headers.get("access-control-request-headers", "").split(",") if h.strip()
        ]
        denied = [h for h in requested if h not in self.allowed_headers]
        if denied and not self.any_header:
            return GatewayError(
                400,
                "CORS_HEADERS_DENIED",
                "Some requested headers are not allowed for cross-origin requests.",
                details={"headers": denied},
                headers=allow_origin,
            )
        headers = self.preflight_headers + list(allow_origin.items())
        if self.any_method:
            headers.append(("access-control-allow-methods", method))
        if self.any_header and requested:
            headers.append(("access-control-allow-headers", ", ".join(requested)))
        return Reply(204, headers, b"")

    def _origin_headers(self, origin: str) -> dict[str, str]:
        """The origin headers a preflight answer for an allowed origin carries."""
        if self.any_origin:
            return {"access-control-allow-origin": "*"}
        return {"access-control-allow-origin": origin, "vary": "Origin"}

    async def on_response(self, ctx: RequestContext, reply: Reply) -> None:
        if ctx.state.get("cors_preflight"):
            return  # answered (or refused) above with exactly the headers it needs
        reply.headers = [(k, v) for k, v in reply.headers if k not in _OWNED]
        if not self.any_origin:
            add_vary_origin(reply)
        origin = ctx.headers.get("origin")
        if origin is None or not self.allowed(origin):
            return
        reply.headers.append(("access-control-allow-origin", "*" if self.any_origin else origin))
        reply.headers.extend(self.simple_headers)


def add_vary_origin(reply: Reply) -> None:
    """Append ``Origin`` to Vary (merging repeated Vary headers) unless it, or ``*``, is already there."""
    values = [v for k, v in reply.headers if k == "vary"]
    if not values:
        reply.headers.append(("vary", "Origin"))
        return
    tokens = {t.strip().lower() for v in values for t in v.split(",")}
    if "origin" in tokens or "*" in tokens:
        return
    reply.set_header("vary", ", ".join([*values, "Origin"]))
