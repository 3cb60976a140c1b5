"""``gateway-engine explain``: run one request through the real pipeline without a live backend.

The matched route's transport is swapped for one that records the upstream request
and answers a sample response, so what is printed is exactly what the gateway
would send and answer. Secrets (any value of an env var the config references, and
each upstream's auth secrets, in their encoded forms too) are masked in everything printed.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import orjson

from gateway_engine.compiled.model import CompiledConfig
from gateway_engine.config.env import referenced_names
from gateway_engine.config.loader import read_config_dir
from gateway_engine.config.secrets import MASK, Masker
from gateway_engine.config.templates import env_names
from gateway_engine.foundation.context import RequestContext
from gateway_engine.foundation.envelope import error_reply
from gateway_engine.foundation.errors import GatewayError
from gateway_engine.foundation.reply import Reply
from gateway_engine.runtime.app import own_names, run_pipeline
from gateway_engine.runtime.invoke import body_receiver, build_scope


class _Capture:
    """A transport that records the request and answers the sample response."""

    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes | None) -> None:
        self.sample = (status, headers, body)
        self.sent: dict[str, Any] | None = None

    async def send(self, method: str, url: str, headers: list[tuple[str, str]], body: Any) -> Reply:
        if body is not None and not isinstance(body, (bytes, bytearray)):
            body = b"".join([chunk async for chunk in body])
        self.sent = {"method": method, "url": url, "headers": headers, "body": body}
        status, sample_headers, sample_body = self.sample
        if sample_body is None:
            raise GatewayError(
                502, "NO_SAMPLE_RESPONSE", "No --upstream-response given; the upstream request is shown above."
            )
        return Reply(status, list(sample_headers), sample_body, from_upstream=True)

    async def aclose(self) -> None:
        return None


def explain(
    config: CompiledConfig,
    method: str,
    target: str,
    *,
    body: bytes | None = None,
    headers: list[tuple[str, str]] | None = None,
    upstream_status: int = 200,
    upstream_body: bytes | None = None,
    call_bodies: dict[str, bytes] | None = None,
) -> dict[str, Any]:
    """``call_bodies``: for a route whose handler makes several calls, the sample answer of each by name."""
    return asyncio.run(
        _explain(config, method.upper(), target, body, headers or [], upstream_status, upstream_body, call_bodies or {})
    )


async def _explain(
    config, method, target, body, headers, upstream_status, upstream_body, call_bodies
) -> dict[str, Any]:
    path, _, query = target.partition("?")
    scope = build_scope(method, path, query, headers, body)
    receive = body_receiver(body)

    secrets = _masker(config)
    matched = config.router.match(path)
    route = matched[0].get(method) if matched else None
    if route is None:
        ctx = RequestContext(scope, receive, None, {}, "127.0.0.1")
        code = "ROUTE_NOT_FOUND" if matched is None else "METHOD_NOT_ALLOWED"
        reply = error_reply(
            ctx, GatewayError(404 if matched is None else 405, code, f"No {method} route matches {path!r}.")
        )
        return {"route": None, "upstream_request": None, "response": _reply(reply, secrets)}
    capture = _Capture(upstream_status, [("content-type", "application/json")], upstream_body)
    calls: dict[str, tuple[_Capture, Any]] = {}  # a handler's calls, by name: what each sent, to which upstream

    def record(name: str, upstream: Any) -> _Capture:
        sample = call_bodies.get(name, upstream_body)
        calls[name] = (_Capture(upstream_status, [("content-type", "application/json")], sample), upstream)
        return calls[name][0]

    if route.handler is not None:
        route = dataclasses.replace(route, handler=route.handler.with_transports(record))
    elif route.upstream is not None:
        route = dataclasses.replace(route, upstream=dataclasses.replace(route.upstream, transport=capture))
    ctx = RequestContext(scope, receive, route, {}, "127.0.0.1")
    ctx.state["_raw_params"] = own_names(route, matched[1])
    reply = await run_pipeline(ctx, route, config)
    if reply.stream is not None:
        await reply.read(config.limits["response_body"])
    upstream = _sent(capture, route.upstream, secrets)
    mapping_error = ctx.state.get("mapping_error")
    shown = {}
    if route.handler is not None:  # every call the handler may make, in its order (request None: not sent)
        shown["upstream_requests"] = [
            {"call": name, "request": _sent(*calls[name], secrets) if name in calls else None}
            for name, _ in route.handler.calls()
        ]
    return {
        "route": {
            "name": route.qualified_name,
            "file": f"{route.source_file}:{route.source_line}",
            "path": route.path,
            "params": ctx.params,
            "plugins": [p.name for p in route.plugins],
        },
        "upstream_request": upstream,
        **shown,
        "mapping_error": secrets.text(mapping_error) if mapping_error else None,
        "response": _reply(reply, secrets),
    }


def _reply(reply: Reply, secrets: Masker) -> dict[str, Any]:
    text = (reply.body or b"").decode("utf-8", "replace")
    try:
        body: Any = orjson.loads(text)
    except orjson.JSONDecodeError:
        body = text
    masked = secrets.text(orjson.dumps(body).decode())
    return {"status": reply.status, "headers": dict(reply.headers), "body": orjson.loads(masked)}


def _masker(config: CompiledConfig) -> Masker:
    """Every env value the config references, and what each upstream's auth derives from them."""
    raw = read_config_dir(config.root)
    names: set[str] = set()
    for doc in [raw.gateway, *raw.backends]:
        if doc is not None:
            names |= set(referenced_names(doc.data)) | set(env_names(doc.data))
    derived = [s for upstream in config.upstreams for s in upstream.auth.secrets]
    return Masker([*(config.env[n] for n in names if n in config.env), *derived])


def _sent(capture: _Capture, upstream: Any, secrets: Masker) -> dict[str, Any] | None:
    if not capture.sent:
        return None
    return {
        "method": capture.sent["method"],
        "url": secrets.text(capture.sent["url"]),
        "headers": {k: _mask_header(k, v, upstream, secrets) for k, v in capture.sent["headers"]},
        "body": secrets.text(capture.sent["body"].decode("utf-8", "replace")) if capture.sent["body"] else None,
    }


def _mask_header(name: str, value: str, upstream: Any, secrets: Masker) -> str:
    if upstream is not None and name in upstream.auth.header_names:
        return MASK
    return secrets.text(value)
