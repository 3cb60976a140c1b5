"""Answering an aggregated route: every backend call started as soon as what it waits for is there.

Independent calls run concurrently; a call waits only for the results its templates read.
Each call goes through the proxy exactly as a single route's call does (its backend's URL,
upstream auth, pooled and resilient transport), under its own timeout within the route's
total. The first required failure cancels the calls still running. The merge follows the
declaration order, so the answer never depends on which backend was faster.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from gateway_engine.compiled.model import CompiledConfig, CompiledRoute, Upstream
from gateway_engine.config.bodies import too_deep
from gateway_engine.foundation.context import RequestContext
from gateway_engine.foundation.envelope import JSON, error_reply
from gateway_engine.foundation.errors import GatewayError
from gateway_engine.foundation.metrics import record_upstream_call
from gateway_engine.foundation.reply import Reply
from gateway_engine.runtime.client_body import has_body, parse_json_body, read_body
from gateway_engine.runtime.mapping import template_variables
from gateway_engine.runtime.proxy import checked_params, forward
from gateway_engine.upstreams.seam import Transport

from .openapi import operation
from .shaping import Shape, ShapeError, merge_caching


@dataclass(frozen=True)
class Call:
    """One backend entry, compiled: a route on that backend's upstream plus how its answer is merged."""

    name: str
    route: CompiledRoute
    deps: tuple[str, ...]
    required: bool
    fallback: Any
    timeout: float
    shape: Shape
    line: int = 0


@dataclass
class Outcome:
    call: Call
    status: int | None = None  # the backend's HTTP status, the gateway's for a failed call, None if never sent
    latency: float | None = None
    code: str | None = None  # why it failed (an error code), None when it succeeded
    value: Any = None  # the answer's target: what dependents read as results.<name>
    part: Any = None  # the shaped part merged into the answer
    headers: list[tuple[str, str]] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.code is None

    def meta(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.call.name,
            "backend": self.call.route.backend,
            "status": self.status,
            "latency_ms": round(self.latency * 1000, 1) if self.latency is not None else None,
            "fallback": not self.ok and not self.call.required,
        }
        if self.code is not None:
            out["error"] = self.code
        return out


class AggregateHandler:
    """The compiled ``backends:`` of one route (a ``RouteHandler``: the pipeline calls it in place of the proxy)."""

    def __init__(
        self, calls: tuple[Call, ...], order: tuple[Call, ...], total: float, missing_env: tuple[str, ...]
    ) -> None:
        self.declared = calls  # merge order
        self.order = order  # start order: every call after the ones it waits for
        self.total = total
        self.missing_env = missing_env
        self.summary = "; ".join(f"{c.name}: {c.route.upstream_template}" for c in calls)

    def calls(self) -> tuple[tuple[str, Upstream | None], ...]:
        return tuple((c.name, c.route.upstream) for c in self.declared)

    def with_transports(self, swap: Callable[[str, Upstream], Transport]) -> AggregateHandler:
        def swapped(c: Call) -> Call:
            up = c.route.upstream
            if up is None:
                return c
            route = dataclasses.replace(c.route, upstream=dataclasses.replace(up, transport=swap(c.name, up)))
            return dataclasses.replace(c, route=route)

        calls = {c.name: swapped(c) for c in self.declared}
        return AggregateHandler(
            tuple(calls.values()), tuple(calls[c.name] for c in self.order), self.total, self.missing_env
        )

    def openapi(self, enveloped: bool) -> dict[str, Any]:
        return operation(self.declared, enveloped)

    async def __call__(self, ctx: RequestContext, route: CompiledRoute, config: CompiledConfig) -> Reply:
        if self.missing_env:
            raise GatewayError(
                503,
                "BACKEND_NOT_CONFIGURED",
                f"Route {route.qualified_name!r} needs backends that are not configured: set {', '.join(self.missing_env)}.",
                details={"missing": list(self.missing_env)},
            )
        if has_body(ctx) and ctx.body is None:  # read once here: the calls run at once and share it
            if route.request.needs_body or ctx.headers.get("content-type", "").startswith("application/json"):
                await parse_json_body(ctx, config)
            else:
                await read_body(ctx, config.limits["request_body"])
        if route.param_rules:  # the client's parameters are checked once, before any call: a bad one is a 400
            ctx.state["_raw_params"] = checked_params(ctx, route, ctx.state.get("_raw_params", {}))
        base = await template_variables(ctx, config)
        started = time.perf_counter()
        outcomes = await self._run_all(ctx, route, config, base)
        ctx.upstream_latency = time.perf_counter() - started
        meta = [outcomes[c.name].meta() for c in self.declared]
        ctx.state["upstream_calls"] = meta  # the logging plugin writes them with the request's line
        failed = [outcomes[c.name] for c in self.declared if c.required and not outcomes[c.name].ok]
        if failed:
            first = failed[0]
            return error_reply(
                ctx,
                GatewayError(
                    502,
                    "BACKEND_FAILED",
                    f"Required backend {first.call.name!r} failed ({_said(first)}).",
                    details=[{"backend": o.call.name, "status": o.status, "code": o.code} for o in failed],
                ),
                extra_meta={"backends": meta},
            )
        merged: dict[str, Any] = {}
        for call in self.declared:  # declaration order, whatever finished first
            outcome = outcomes[call.name]
            part = outcome.part if outcome.ok else call.fallback
            if call.shape.group is not None:
                merged[call.shape.group] = part
            elif isinstance(part, dict):
                merged.update(part)
        complete = all(o.ok for o in outcomes.values())
        headers = [("content-type", JSON)]
        headers += (
            merge_caching([outcomes[c.name].headers for c in self.declared])
            if complete
            else [("cache-control", "no-store")]
        )
        ctx.state["meta"] = {**(ctx.state.get("meta") or {}), "backends": meta}
        return Reply(200, headers, orjson.dumps(merged), from_upstream=True)

    async def _run_all(
        self, ctx: RequestContext, route: CompiledRoute, config: CompiledConfig, base: dict[str, Any]
    ) -> dict[str, Outcome]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.total
        tasks: dict[str, asyncio.Task[Outcome]] = {}
        for call in self.order:  # a call's dependencies were created before it
            waits = [tasks[d] for d in call.deps]
            tasks[call.name] = loop.create_task(self._one(call, waits, ctx, route, config, base, deadline))
        pending: set[asyncio.Task[Outcome]] = set(tasks.values())
        try:
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                if any(t.result().call.required and not t.result().ok for t in done):
                    break  # the answer is a 502 now: the calls still running are not waited for
        finally:
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
        out = {}
        for call in self.declared:
            task = tasks[call.name]
            out[call.name] = task.result() if not task.cancelled() else Outcome(call, code="CANCELLED")
        return out

    async def _one(
        self,
        call: Call,
        waits: list[asyncio.Task[Outcome]],
        ctx: RequestContext,
        route: CompiledRoute,
        config: CompiledConfig,
        base: dict[str, Any],
        deadline: float,
    ) -> Outcome:
        results = {}
        for task in waits:
            dep = await task
            if not dep.ok:
                return Outcome(call, code="DEPENDENCY_FAILED")
            results[dep.call.name] = dep.value
        sub = ctx.fork(call.route)
        sub.state["_raw_params"] = ctx.state.get("_raw_params", {})
        sub.state["_vars"] = {**base, "params": sub.params, "results": results}
        outcome = Outcome(call)
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        limit = min(loop.time() + call.timeout, deadline)
        answered: int | None = None  # the status the backend itself answered, for the metrics
        error: str | None = None  # the gateway's error code when there was no usable answer
        try:
            async with asyncio.timeout_at(limit):
                reply = await forward(sub, call.route, config)
                outcome.status = answered = reply.status
                raw = await reply.read(config.limits["response_body"])
            outcome.headers = reply.headers
            if reply.status >= 400:
                outcome.code = "BACKEND_ERROR" if reply.status >= 500 else "BACKEND_REJECTED"
            else:
                outcome.value = call.shape.pick(_parsed(raw, config.limits["body_depth"]))
                outcome.part = call.shape.apply(outcome.value)
        except TimeoutError:
            outcome.status, outcome.code = 504, "UPSTREAM_TIMEOUT"
            error = outcome.code
        except GatewayError as err:
            outcome.status, outcome.code = outcome.status or err.status, err.code
            error = err.code
        except ShapeError:
            outcome.status, outcome.code = outcome.status or 502, "UNEXPECTED_ANSWER"
        if outcome.code != "BACKEND_NOT_CONFIGURED":
            outcome.latency = (
                sub.upstream_latency if sub.upstream_latency is not None else time.perf_counter() - started
            )
            record_upstream_call(route.name, call.route.backend, outcome.latency, answered, error)
        return outcome


def _parsed(raw: bytes, depth: int) -> Any:
    try:
        body = orjson.loads(raw) if raw.strip() else None
    except orjson.JSONDecodeError:
        raise GatewayError(502, "UPSTREAM_INVALID_JSON", "The backend answered a body that is not JSON.") from None
    if too_deep(body, depth, raw):
        raise GatewayError(502, "UPSTREAM_ERROR", f"The backend's answer nests deeper than {depth} levels.")
    return body


def _said(outcome: Outcome) -> str:
    if outcome.status is None:
        return outcome.code or "not called"
    return f"HTTP {outcome.status}" + (f", {outcome.code}" if outcome.code else "")
