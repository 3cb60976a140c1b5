"""envelope: every JSON answer as ``{success, data | error, meta: {source, timestamp, requestId}}``."""

from __future__ import annotations

import orjson

from gateway_engine import GatewayError, Plugin, Reply, RequestContext, error_body, success_body

_JSON = [("content-type", "application/json")]
# the body is new: the upstream's encoding no longer applies, and its etag described other bytes
_REWRITTEN_SUCCESS = frozenset({"content-encoding", "etag"})
_REWRITTEN_ERROR = frozenset({"content-encoding"})


class EnvelopePlugin(Plugin):
    """Wraps upstream JSON in the envelope; upstream errors become envelope errors with details.

    Non-JSON successes (files, SSE, HTML) pass through untouched and streamed.
    Turn it off per route (``plugins: {envelope: false}``) for raw passthrough.
    """

    name = "envelope"
    priority = 10
    needs_response_body = True
    options_schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "max_body": {
                "type": "integer",
                "minimum": 1,
                "default": 16 * 1024 * 1024,
                "description": "Largest upstream JSON body wrapped, in bytes; larger answers are a 502 RESPONSE_TOO_LARGE.",
            },
            "error_details_max": {
                "type": "integer",
                "minimum": 0,
                "default": 4096,
                "description": "How many bytes of an upstream error body go into error.details.",
            },
        },
    }

    def __init__(self, options, gateway):
        super().__init__(options, gateway)
        self.max_body = options["max_body"]
        self.details_max = options["error_details_max"]

    async def on_response(self, ctx: RequestContext, reply: Reply) -> None:
        if not reply.from_upstream:
            return
        extra = ctx.state.get("meta")
        if reply.status >= 400:
            await self._wrap_error(ctx, reply)
            return
        if reply.status == 204 or reply.status == 304:
            return
        if not reply.is_json and not (reply.stream is None and not reply.body):
            return
        raw = await reply.read(self.max_body)
        if not raw or raw.isspace():  # (no strip(): that would copy a large body)
            raw = b"null"
        else:
            try:
                orjson.loads(raw)
            except orjson.JSONDecodeError:
                raise GatewayError(
                    502, "UPSTREAM_INVALID_JSON", "The upstream declared JSON but sent invalid JSON."
                ) from None
        reply.set_body(success_body(ctx, raw, extra))
        reply.set_headers(_JSON, remove=_REWRITTEN_SUCCESS)

    async def _wrap_error(self, ctx: RequestContext, reply: Reply) -> None:
        raw = await reply.read(max(self.max_body, self.details_max))
        snippet = raw[: self.details_max]
        details = None
        if snippet.strip():
            try:
                details = orjson.loads(snippet) if reply.is_json else snippet.decode("utf-8", "replace")
            except orjson.JSONDecodeError:
                details = snippet.decode("utf-8", "replace")
        code = ctx.state.get("error_code") or "UPSTREAM_ERROR"
        message = ctx.state.get("error_message") or f"The upstream answered HTTP {reply.status}."
        try:
            body = error_body(ctx, code, message, details, ctx.state.get("meta"))
        except orjson.JSONEncodeError:  # JSON nested too deep to write back: the page's text instead
            body = error_body(ctx, code, message, snippet.decode("utf-8", "replace"), ctx.state.get("meta"))
        reply.set_body(body)
        reply.set_headers(_JSON, remove=_REWRITTEN_ERROR)
