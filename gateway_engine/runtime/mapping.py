"""Rendering a route's templates over the request and the upstream answer (response mapping, error rules)."""

from __future__ import annotations

import logging
import os
from typing import Any

import orjson

from gateway_engine.compiled.model import CompiledConfig, CompiledRoute
from gateway_engine.config.bodies import TooDeep, too_deep
from gateway_engine.foundation.context import RequestContext
from gateway_engine.foundation.errors import GatewayError
from gateway_engine.foundation.reply import Reply
from gateway_engine.runtime.client_body import parse_json_body

log = logging.getLogger("gateway_engine.proxy")


async def template_variables(ctx: RequestContext, config: CompiledConfig) -> dict[str, Any]:
    """Names a request template sees; built once per request, only for routes that template."""
    cached = ctx.state.get("_vars")
    if cached is None:
        body = (
            await parse_json_body(ctx, config)
            if ctx.route is not None and ctx.route.request.needs_body
            else ctx.body_json
        )
        cached = {
            "body": body,
            "query": ctx.query,
            "params": ctx.params,
            "headers": _safe_headers(ctx),
            "identity": ctx.identity or {},
            "env": config.env,
        }
        ctx.state["_vars"] = cached
    return cached


def _safe_headers(ctx: RequestContext) -> dict[str, str]:
    strip = ctx.route.strip_headers if ctx.route else frozenset()
    return {k: v for k, v in ctx.headers.items() if k not in strip}


def render(
    route: CompiledRoute,
    render: Any,
    variables: dict[str, Any],
    ctx: RequestContext | None = None,
    *,
    answer: bool = False,
) -> Any:
    """Run a compiled template; ``answer`` says it maps the upstream's answer (so bad data there is a 502)."""
    try:
        return render(variables)
    except TooDeep as exc:  # `fromjson` met nesting past the limit: bad data, not a bad config
        if answer:
            raise GatewayError(502, "UPSTREAM_ERROR", f"The upstream answer holds JSON text that {exc}.") from None
        raise GatewayError(400, "BODY_TOO_DEEP", f"The request holds JSON text that {exc}.") from None
    except Exception as exc:  # a template failing at runtime is the config's fault, not the client's
        raise mapping_error(route, ctx, exc) from None


def mapping_error(route: CompiledRoute, ctx: RequestContext | None, problem: Any) -> GatewayError:
    detail = f"{route.source_file}:{route.source_line}: route {route.qualified_name}: {problem}"
    if route.upstream is not None:
        detail = route.upstream.masker.text(detail)
    log.warning("mapping failed: %s", detail)
    if ctx is not None:
        ctx.state["mapping_error"] = detail
    where = f"{os.path.basename(os.path.dirname(route.source_file))}/{os.path.basename(route.source_file)}"
    return GatewayError(  # where in the config, never the server's own paths: `routes.d/orders.yaml:12`
        502,
        "MAPPING_ERROR",
        f"The gateway could not map this request or response (route {route.qualified_name}, "
        f"{where}:{route.source_line}).",
    )


async def map_response(ctx: RequestContext, route: CompiledRoute, config: CompiledConfig, reply: Reply) -> None:
    plan = route.response
    assert plan is not None
    if reply.status < 400 and not plan.maps_success:
        return
    raw = await reply.read(config.limits["response_body"])
    depth = config.limits["body_depth"]
    try:
        body = orjson.loads(raw) if raw.strip() else None
        usable = not too_deep(body, depth, raw)
    except orjson.JSONDecodeError:
        if reply.status < 400:
            raise GatewayError(
                502, "UPSTREAM_INVALID_JSON", "The upstream answered a body that is not JSON; this route maps JSON."
            ) from None
        usable = False
    if not usable:
        if reply.status < 400:
            raise GatewayError(502, "UPSTREAM_ERROR", f"The upstream answer nests deeper than {depth} levels.")
        body = raw[: config.limits["error_details"]].decode("utf-8", "replace")  # an error page: its text, shortened
    variables = {
        "body": body,
        "status": reply.status,
        "headers": dict(reply.headers),
        "params": ctx.params,
        "query": ctx.query,
        "identity": ctx.identity or {},
    }
    for rule in plan.fail:
        if render(route, rule.when, variables, ctx, answer=True):
            raise GatewayError(rule.status, rule.code, rule.message)
    if reply.status >= 400:
        if plan.error_code is not None:
            ctx.state["error_code"] = str(render(route, plan.error_code, variables, ctx, answer=True))
        if plan.error_message is not None:
            ctx.state["error_message"] = str(render(route, plan.error_message, variables, ctx, answer=True))
        return
    if plan.data is not None:
        data = render(route, plan.data, variables, ctx, answer=True)
        try:
            reply.set_json(data)
        except TypeError as exc:  # a template gave something with no JSON form
            raise mapping_error(route, ctx, f"the mapped data cannot be encoded: {_why(exc)}") from None
    if plan.meta is not None:
        extra = render(route, plan.meta, variables, ctx, answer=True)
        try:
            orjson.dumps(extra)  # meta is small: checked here, so the envelope never writes a Python repr
        except TypeError as exc:
            raise mapping_error(route, ctx, f"the mapped meta cannot be encoded: {_why(exc)}") from None
        ctx.state["meta"] = extra
    if plan.status is not None:
        reply.status = plan.status


def _why(exc: TypeError) -> str:
    """The encoder's complaint, with the usual cause when a template gave a method (``a.get`` with no key ``get``)."""
    text = str(exc)
    if "method" in text or "function" in text:
        text += " (the template gave a method, not data: the value has no key of that name)"
    return text
