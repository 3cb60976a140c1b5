"""request_id: one id per request, sent upstream and back to the client."""

from __future__ import annotations

import re

from gateway_engine import Plugin, Reply, RequestContext


class RequestIdPlugin(Plugin):
    """Accepts a well-formed incoming id (or makes one), echoes it in the response header."""

    name = "request_id"
    priority = 100_000
    runs_unrouted = True
    options_schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "header": {
                "type": "string",
                "default": "X-Request-Id",
                "description": "Header carrying the id, both ways.",
            },
            "trust_incoming": {
                "type": "boolean",
                "default": True,
                "description": "Reuse a client-sent id when it is 1-128 characters of [A-Za-z0-9._-]; otherwise always generate one.",
            },
        },
    }
    _VALID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")

    def __init__(self, options, gateway):
        super().__init__(options, gateway)
        self.header = options["header"].lower()
        self.trust = options["trust_incoming"]

    async def on_request(self, ctx: RequestContext) -> None:
        incoming = ctx.headers.get(self.header)
        if self.trust and incoming and self._VALID.match(incoming):
            ctx.request_id = incoming

    async def on_response(self, ctx: RequestContext, reply: Reply) -> None:
        reply.set_header(self.header, ctx.request_id)
