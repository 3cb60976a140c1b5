"""The upstream call: build the upstream request from the route's plan, send it, map the answer."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote, unquote_plus, urlencode

import orjson

from gateway_engine.compiled.model import FORWARDING_HEADERS, CompiledConfig, CompiledRoute, query_name
from gateway_engine.compiled.routing import decode_param
from gateway_engine.config.bodies import MAX_PROBLEMS, problems
from gateway_engine.foundation.context import RequestContext, forwarding
from gateway_engine.foundation.errors import GatewayError
from gateway_engine.foundation.reply import Reply
from gateway_engine.runtime.client_body import BodyError, declared_length, has_body, read_body, stream_body
from gateway_engine.runtime.mapping import map_response, mapping_error, render, template_variables
from gateway_engine.upstreams.encoding import encode_body, form_pairs

log = logging.getLogger("gateway_engine.proxy")

OFF_LOOP_VALIDATION = 64 * 1024  # bodies larger than this are validated in a worker thread, not on the event loop

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "host",
        "proxy-connection",
    }
)
_DROP_REQUEST = HOP_BY_HOP | FORWARDING_HEADERS
_RESERVED_EVERYWHERE = _DROP_REQUEST | {"content-length", "content-type"}  # reserved in every spelling on every route
_DROP_RESPONSE = HOP_BY_HOP | {"server", "x-powered-by", "date"}  # the server adds its own date
_BODY_FRAMING = frozenset({"content-length", "content-type", "transfer-encoding"})
# names no source may forward on a route (bodiless upstream method?, answer body read by the gateway?),
# dropped in the one pass over the client's headers and from the static and identity headers as they join
_DROP_FOR = {
    (bodiless, reads_body): (_BODY_FRAMING if bodiless else frozenset())
    | ({"accept-encoding"} if reads_body else set())
    for bodiless in (False, True)
    for reads_body in (False, True)
}


async def forward(ctx: RequestContext, route: CompiledRoute, config: CompiledConfig) -> Reply:
    upstream = route.upstream
    if upstream is None:
        raise GatewayError(
            503,
            "BACKEND_NOT_CONFIGURED",
            f"Backend {route.backend!r} is not configured: set {', '.join(route.missing_env)}.",
            details={"missing": list(route.missing_env)},
        )
    plan = route.request
    raw_params = ctx.state.get("_raw_params", {})
    # only a plan with templates reads them: the others get an empty mapping, never consulted
    variables: dict[str, Any] = await template_variables(ctx, config) if plan.has_templates else {}
    if plan.body_schema is not None:
        if len(ctx.body or b"") > OFF_LOOP_VALIDATION:
            await asyncio.to_thread(_validate_body, plan, variables["body"])
        else:
            _validate_body(plan, variables["body"])
    if plan.params is not None:
        raw_params = _computed_params(ctx, route, raw_params, variables)
    if route.param_rules:
        raw_params = checked_params(ctx, route, raw_params)
    url = upstream.url + route.upstream_path.build(raw_params)
    query = _query(ctx, route, variables)
    if query:
        url += "?" + query

    bodiless = route.upstream_method in ("GET", "HEAD")
    drop = _DROP_FOR[bodiless, route.needs_response_body]
    headers = _client_headers(ctx, route.strip_headers, route.reserved_headers, drop)
    if upstream.headers:
        static = {k for k, _ in upstream.headers}
        headers = [(k, v) for k, v in headers if k not in static]
        headers.extend((k, v) for k, v in upstream.headers if k not in drop)
    forwarded_for = ctx.client_ip
    headers.append(("x-forwarded-for", forwarded_for))
    headers.append(("x-forwarded-proto", ctx.scope.get("scheme", "http")))
    host = ctx.headers.get("host")
    if host is not None:
        if "," in host and sum(1 for k, _ in ctx.scope["headers"] if k.lower() == b"host") > 1:
            raise GatewayError(400, "BAD_HOST", "The request has more than one Host header.")  # RFC 9112 3.2
        headers.append(("x-forwarded-host", host))
    headers.append(("x-request-id", ctx.request_id))
    if ctx.upstream_headers:  # the gateway's value replaces any client copy (even a forwarded one)
        names = {k.lower() for k in ctx.upstream_headers}
        headers = [(k, v) for k, v in headers if k.replace("_", "-") not in names]
        headers.extend((k.lower(), v) for k, v in ctx.upstream_headers.items() if k.lower() not in drop)
    if route.needs_response_body:  # any accept-encoding was dropped above
        headers.append(("accept-encoding", "identity"))

    body: bytes | AsyncIterator[bytes] | None = None
    body_error = BodyError()
    if bodiless:  # the client's body (already used by templates, if any) is not sent upstream; its framing was dropped
        if has_body(ctx) and ctx.body is None:
            await read_body(ctx, config.limits["request_body"])
    elif plan.body is not None or plan.encoding == "form":
        value = render(route, plan.body, variables, ctx) if plan.body is not None else variables["body"]
        body, content_type = _encoded(route, value, plan.encoding, ctx)
        headers = [(k, v) for k, v in headers if k not in ("content-length", "content-type")]
        if content_type:
            headers.append(("content-type", content_type))
        headers.append(("content-length", str(len(body))))
    elif ctx.body is not None:
        body = ctx.body
        headers = [(k, v) for k, v in headers if k != "content-length"]
        headers.append(("content-length", str(len(body))))
    elif has_body(ctx) and upstream.retries and declared_length(ctx) <= config.limits["request_body"]:
        body = await read_body(ctx, config.limits["request_body"])  # replayable, so it can be retried
        headers = [(k, v) for k, v in headers if k != "content-length"]
        headers.append(("content-length", str(len(body))))
    elif has_body(ctx):
        body = stream_body(ctx, body_error)
    if plan.headers is not None:
        extra = render(route, plan.headers, variables, ctx) or {}
        names = {k.lower() for k in extra}  # a header whose template gives null (or "") is removed
        headers = [(k, v) for k, v in headers if k not in names] + [
            (k.lower(), str(v)) for k, v in extra.items() if v is not None and v != ""
        ]

    method = route.upstream_method or ctx.method
    if plan.presign is not None and (plan.presign.when is None or render(route, plan.presign.when, variables, ctx)):
        return _presigned(upstream, method, url, plan.presign.expires)
    url = upstream.auth.apply(method, url, headers, body)
    started = time.perf_counter()
    token = forwarding.set(ctx)
    try:
        reply = await upstream.transport.send(method, url, headers, body)
    except GatewayError:
        if body_error.error is not None:
            raise body_error.error from None
        raise
    finally:
        forwarding.reset(token)
        ctx.upstream_latency = time.perf_counter() - started
    if body_error.error is not None:
        await reply.aclose()
        raise body_error.error
    if reply.status >= 400 and upstream.masker:  # an error page may echo the request, credentials included
        await upstream.masker.scrub(reply, config.limits["response_body"])
    reply.headers = [(k, v) for k, v in reply.headers if k not in _DROP_RESPONSE]
    if route.response is not None:
        await map_response(ctx, route, config, reply)
    return reply


def _computed_params(
    ctx: RequestContext, route: CompiledRoute, raw_params: dict[str, str], variables: dict[str, Any]
) -> dict[str, str]:
    out = dict(raw_params)
    for name, value in (render(route, route.request.params, variables, ctx) or {}).items():
        if value is None or value == "":
            raise GatewayError(400, "INVALID_PARAMETER", f"Parameter {name!r} is required.")
        ctx.params[name] = str(value)
        out[name] = quote(str(value), safe="/")
    return out


def _presigned(upstream: Any, method: str, url: str, expires: int) -> Reply:
    import datetime

    signed = upstream.auth.presign(method, url, expires)
    expires_at = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=expires)
    body = orjson.dumps(
        {"url": signed, "method": method, "expiresAt": expires_at.isoformat(timespec="seconds").replace("+00:00", "Z")}
    )
    return Reply(200, [("content-type", "application/json"), ("cache-control", "no-store")], body, from_upstream=True)


def checked_params(ctx: RequestContext, route: CompiledRoute, raw_params: dict[str, str]) -> dict[str, str]:
    """The path parameters after the route's ``params`` rules (400 INVALID_PARAMETER for a value they refuse)."""
    out = dict(raw_params)
    for rule in route.param_rules:
        value = rule.apply(ctx.params[rule.name])
        if value is None:
            raise GatewayError(400, "INVALID_PARAMETER", f"Path parameter {rule.name!r} must be {rule.describe()}.")
        out[rule.name] = quote(value, safe="/" if rule.name in route.upstream_path.path_names else "")
        ctx.params[rule.name] = value  # templates see the upstream value a `map` chose
    return out


def _validate_body(plan: Any, body: Any) -> None:
    """400 with the first few problems (``_bodies.problems`` bounds their number and size)."""
    try:
        found = problems(plan.body_schema, body)
    except RecursionError:  # a schema that recurses more per level than the depth limit allows for
        raise GatewayError(400, "BODY_TOO_DEEP", "The request body nests too deeply to validate.") from None
    if found:
        more = "" if len(found) < MAX_PROBLEMS else " or more"
        raise GatewayError(
            400, "VALIDATION_ERROR", f"The request body is invalid ({len(found)}{more} problem(s)).", details=found
        )


def _encoded(route: CompiledRoute, value: Any, encoding: str, ctx: RequestContext) -> tuple[bytes, str | None]:
    try:
        return encode_body(value, encoding)
    except (TypeError, ValueError) as exc:  # a template gave something that has no JSON or form encoding
        raise mapping_error(route, ctx, f"the {encoding} body cannot be encoded: {exc}") from None


def _client_headers(
    ctx: RequestContext, strip: frozenset[str], reserved: frozenset[str], drop: frozenset[str]
) -> list[tuple[str, str]]:
    """The client headers to forward. A name with `_` that a CGI/WSGI upstream reads as a reserved one (``X-User_Id``
    is ``HTTP_X_USER_ID``) is dropped, as nginx drops names with underscores: it could only be a spoof."""
    listed = ctx.headers.get("connection")
    if listed:  # headers the client's Connection header names are hop-by-hop too (RFC 9110 7.6.1)
        strip = strip | {t.strip().lower() for t in listed.split(",")}
    out = []
    for k, v in ctx.scope["headers"]:
        name = k.decode("latin-1").lower()
        if name in _DROP_REQUEST or name in strip or name in drop:
            continue
        if "_" in name and ((same := name.replace("_", "-")) in _RESERVED_EVERYWHERE or same in reserved):
            continue
        out.append((name, v.decode("latin-1")))
    return out


def _query(ctx: RequestContext, route: CompiledRoute, variables: dict[str, Any]) -> str:
    plan = route.request
    if plan.query == "none":
        base = ""
    elif plan.query == "allow":
        base = urlencode(
            [(k, v) for k, v in ctx.query.items() if k in plan.query_allow and query_name(k) not in route.owned_query]
        )
    else:
        base = ctx.raw_query.decode("latin-1")
        if base and route.owned_query:  # the gateway's own keys are the only ones of their name
            base = "&".join(
                p for p in base.split("&") if query_name(unquote_plus(p.partition("=")[0])) not in route.owned_query
            )
    if plan.query_set is None:
        return base
    values = render(route, plan.query_set, variables, ctx)
    if plan.query_brackets:  # {"where": {"slug": {"equals": "x"}}} → where[slug][equals]=x (Payload, Rails, Stripe)
        pairs = [pair for k, v in values.items() if v is not None for pair in form_pairs({k: v})]
    else:  # structures as JSON text (Frappe's fields=["name"])
        pairs = [(k, v if isinstance(v, str) else orjson.dumps(v).decode()) for k, v in values.items() if v is not None]
    extra = urlencode(pairs)
    return f"{base}&{extra}" if base and extra else (base or extra)


def decoded_params(raw: dict[str, str]) -> dict[str, str]:
    return {k: decode_param(v) for k, v in raw.items()}
