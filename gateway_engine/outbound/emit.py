"""``emit:`` on a route: once the answer is written, the events its conditions pick go to the outbox.

    emit:
      - event: order.status_changed
        when: "{{ response.status == 200 }}"          # default: any 2xx answer
        data: {id: "{{ request.params.id }}", status: "{{ response.body.status }}"}
        tenant: "{{ identity.platform }}"              # default: the caller's tenant

Templates see ``request`` (method, path, params, query, headers, body when the route read it),
``response`` (status, headers, body as JSON when it is) and ``identity``. Nothing here can delay
or fail the client's answer: the hook runs after it was written and only logs and counts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import orjson

from gateway_engine.compiled.model import CompiledRoute
from gateway_engine.config.templates import Render, TemplateError, attributes_read, compile_value, template_strings
from gateway_engine.foundation.context import RequestContext
from gateway_engine.foundation.errors import ConfigError
from gateway_engine.foundation.reply import Reply

from . import metrics
from .catalog import Catalog
from .payload import UNPARSED, event_size
from .service import Outbound

log = logging.getLogger("gateway_engine.outbound")
NAMES = ("request", "response", "identity")
DEFAULT_DATA = "{{ response.body }}"


@dataclass(frozen=True)
class Emission:
    event: str
    when: Render | None
    data: Render
    tenant: Render | None
    data_json: str | None = None  # a constant's JSON, serialised and checked (schema, size) at load
    tenant_text: str | None = None  # a constant ``tenant:``, not rendered per answer


@dataclass(frozen=True)
class Reads:
    """What the templates of one route's emissions read: only that is gathered per answer."""

    names: frozenset[str]  # of NAMES
    response_body: bool  # ``response.body`` (or ``response`` whole): the answer's body is copied for it


def default_tenant(identity: dict[str, Any] | None) -> str | None:
    """The caller's tenant: the platform (tenant) of an API key, else ``user:<id>`` of a user."""
    if not identity:
        return None
    if identity.get("platform"):
        return str(identity["platform"])
    return f"user:{identity['user_id']}" if identity.get("user_id") else None


class EmitHook:
    """The after-answer hook of one route."""

    def __init__(self, service: Outbound, emissions: list[Emission], reads: Reads) -> None:
        self.service = service
        self.emissions = emissions
        self.reads = reads
        self.needs_body = reads.response_body

    def __call__(self, ctx: RequestContext, reply: Reply, body: bytes | None) -> None:
        """Runs on every answer of the route: what is constant was rendered at load, and the event is
        only queued here (``Outbound.emit_soon``); its row is made with its batch."""
        try:
            variables = _variables(ctx, reply, body, self.reads) if self.reads.names else {}
        except Exception:
            metrics.EMITTED.labels("failed").inc()
            log.exception("emit: the answer of %s could not be read", ctx.path)
            return
        succeeded = 200 <= reply.status < 300
        for emission in self.emissions:
            try:
                if not (emission.when(variables) if emission.when is not None else succeeded):
                    continue
                tenant = emission.tenant_text
                if tenant is None:
                    rendered = (
                        emission.tenant(variables) if emission.tenant is not None else default_tenant(ctx.identity)
                    )
                    tenant = str(rendered) if rendered else None
                if not tenant:
                    metrics.EMITTED.labels("no_tenant").inc()
                    log.error("event %s not emitted: the request has no tenant", emission.event)
                    continue
                if emission.data_json is not None:  # a constant: checked (schema, size) and serialised at load
                    self.service.emit_soon(tenant, emission.event, UNPARSED, emission.data_json)
                else:
                    self.service.emit_soon(tenant, emission.event, emission.data(variables))
            except Exception:  # a template that fails on this answer: logged, the answer is already out
                metrics.EMITTED.labels("failed").inc()
                log.exception("event %s could not be emitted", emission.event)


def _variables(ctx: RequestContext, reply: Reply, body: bytes | None, reads: Reads) -> dict[str, Any]:
    variables: dict[str, Any] = {}
    if "request" in reads.names:
        request_body = ctx.body_json
        if request_body is None and ctx.body:
            try:
                request_body = orjson.loads(ctx.body)
            except orjson.JSONDecodeError:
                request_body = None
        variables["request"] = {
            "method": ctx.method,
            "path": ctx.path,
            "params": dict(ctx.params),
            "query": dict(ctx.query),
            "headers": {k: v for k, v in ctx.headers.items() if ctx.route is None or k not in ctx.route.strip_headers},
            "body": request_body,
        }
    if "response" in reads.names:
        parsed: Any = None
        if body and reply.is_json:
            try:
                parsed = orjson.loads(body)
            except orjson.JSONDecodeError:
                parsed = None
        variables["response"] = {"status": reply.status, "headers": dict(reply.headers), "body": parsed}
    if "identity" in reads.names:
        variables["identity"] = ctx.identity or {}
    return variables


def _reads(items: list[dict[str, Any]]) -> Reads:
    names: set[str] = set()
    response: list[str | None] = []
    for item in items:
        templates = [item.get(field) for field in ("when", "data", "tenant")]
        names |= {name for name in NAMES if attributes_read(templates, name)}
        response += attributes_read(templates, "response")
    return Reads(frozenset(names), any(part in (None, "body") for part in response))


def compile_emits(
    routes: tuple[CompiledRoute, ...], catalog: Catalog, service: Outbound, errors: list[ConfigError]
) -> dict[str, list[Any]]:
    """The hooks of every route with ``emit:``, by qualified route name."""
    hooks: dict[str, list[Any]] = {}
    for route in routes:
        spec = route.extensions.get("emit")
        if spec is None:
            continue
        emissions = []
        items = [{"data": DEFAULT_DATA, **item} for item in (spec if isinstance(spec, list) else [spec])]
        for i, item in enumerate(items):
            where = f"routes[{route.name}].emit[{i}]"
            if catalog.get(item["event"]) is None:
                errors.append(_error(route, where, f"event type {item['event']!r} is not declared in events.d"))
                continue
            constant = next(template_strings(item["data"]), None) is None
            tenant = item.get("tenant")
            tenant_text = str(tenant) if tenant is not None and next(template_strings(tenant), None) is None else None
            try:
                data = compile_value(item["data"], NAMES)
                if constant and (problem := catalog.problem(item["event"], data({}))) is not None:
                    errors.append(_error(route, f"{where}.data", problem))
                    continue
                data_json = orjson.dumps(data({})) if constant else None
                limit = service.settings.max_payload
                if (
                    data_json is not None
                    and limit is not None
                    and (size := event_size(item["event"], data_json)) > limit
                ):
                    errors.append(
                        _error(
                            route,
                            f"{where}.data",
                            f"the event is {size} bytes, more than outbound_webhooks.max_payload ({limit})",
                        )
                    )
                    continue
                emissions.append(
                    Emission(
                        item["event"],
                        compile_value(item["when"], NAMES) if "when" in item else None,
                        data,
                        compile_value(item["tenant"], NAMES) if "tenant" in item else None,
                        data_json=data_json.decode() if data_json is not None else None,
                        tenant_text=tenant_text,
                    )
                )
            except TemplateError as exc:
                errors.append(_error(route, where, str(exc)))
        if emissions:
            hooks[route.qualified_name] = [EmitHook(service, emissions, _reads(items))]
    return hooks


def _error(route: CompiledRoute, where: str, message: str) -> ConfigError:
    return ConfigError(message, file=route.source_file, line=route.source_line, col=5, path=where)
