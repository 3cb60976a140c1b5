"""security_headers: Helmet's defaults for an API, on every reply the chain produces."""

from __future__ import annotations

from typing import Any

from gateway_engine import Plugin, Reply, RequestContext

#: option → (header, Helmet-equivalent default); `false` leaves the header unset
DEFAULTS = {
    "content_type_options": ("x-content-type-options", "nosniff"),
    "frame_options": ("x-frame-options", "DENY"),
    "referrer_policy": ("referrer-policy", "no-referrer"),
    "cross_origin_opener_policy": ("cross-origin-opener-policy", "same-origin"),
    "cross_origin_resource_policy": ("cross-origin-resource-policy", "same-origin"),
    "dns_prefetch_control": ("x-dns-prefetch-control", "off"),
}
CSP_DEFAULT = "default-src 'none'; frame-ancestors 'none'"
_HEADER_VALUE = {"type": ["string", "boolean", "null"]}


def _header_option(header: str, default: str) -> dict[str, Any]:
    return {**_HEADER_VALUE, "default": default, "description": f"Value of `{header}`; `false` leaves it unset."}


class SecurityHeadersPlugin(Plugin):
    """Response-only. Its priority is above every plugin that can refuse a request
    (ip_filter 3000, cors, auth, rate_limit), because a response-only plugin gets its
    response phase only when the plugins before it ran: a 401, 403 or 429 gets these
    headers too. Running late in the response phase, it sees the final content type.
    """

    name = "security_headers"
    priority = 95_000
    runs_unrouted = True
    options_schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            **{opt: _header_option(header, value) for opt, (header, value) in DEFAULTS.items()},
            "content_security_policy": _header_option("content-security-policy", CSP_DEFAULT),
            "content_security_policy_on": {
                "enum": ["json", "all"],
                "type": "string",
                "default": "json",
                "description": "Which replies get the CSP: `json` (API answers; pages served through the gateway keep "
                "their own policy) or `all`.",
            },
            "hsts": {
                "type": ["object", "null"],
                "default": None,
                "additionalProperties": False,
                "description": "`Strict-Transport-Security`, sent only when set (serve over HTTPS first).",
                "properties": {
                    "max_age": {
                        "type": "integer",
                        "minimum": 0,
                        "default": 31536000,
                        "description": "Seconds browsers remember to use HTTPS.",
                    },
                    "include_subdomains": {
                        "type": "boolean",
                        "default": True,
                        "description": "Apply to every subdomain too.",
                    },
                    "preload": {
                        "type": "boolean",
                        "default": False,
                        "description": "Ask to be in browsers' HSTS preload lists.",
                    },
                },
            },
            "headers": {
                "type": "object",
                "additionalProperties": {"type": "string"},
                "default": {},
                "description": 'Extra headers set on every reply (`{Permissions-Policy: "camera=()"}`).',
            },
            "remove": {
                "type": "array",
                "items": {"type": "string"},
                "default": ["server", "x-powered-by"],
                "description": "Headers removed from every reply (they reveal the upstream's software).",
            },
        },
    }

    def __init__(self, options: dict[str, Any], gateway: Any) -> None:
        super().__init__(options, gateway)
        always = [(header, options[opt]) for opt, (header, _) in DEFAULTS.items() if options[opt]]
        hsts = options["hsts"]
        if hsts is not None:
            value = f"max-age={hsts.get('max_age', 31536000)}"
            value += "; includeSubDomains" if hsts.get("include_subdomains", True) else ""
            value += "; preload" if hsts.get("preload", False) else ""
            always.append(("strict-transport-security", value))
        always += [(k.lower(), v) for k, v in options["headers"].items()]
        csp = options["content_security_policy"]
        self.csp = ("content-security-policy", csp) if csp else None
        self.csp_on_all = options["content_security_policy_on"] == "all"
        self.always = always
        self.drop = frozenset(h.lower() for h in options["remove"]) | {k for k, _ in always}

    @classmethod
    def check_options(cls, options: dict[str, Any]) -> list[str]:
        return [
            f"{opt}: use a header value, or false to leave it unset (true means nothing here)"
            for opt in [*DEFAULTS, "content_security_policy"]
            if options.get(opt) is True
        ]

    async def on_response(self, ctx: RequestContext, reply: Reply) -> None:
        headers = [(k, v) for k, v in reply.headers if k not in self.drop]
        headers += self.always
        if self.csp is not None and (self.csp_on_all or reply.is_json):
            headers = [(k, v) for k, v in headers if k != "content-security-policy"]
            headers.append(self.csp)
        reply.headers = headers
