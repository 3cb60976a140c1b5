"""One webhook endpoint: cap the body, verify it raw, identify the event, claim its id, run the
actions, and answer 2xx only once they are durable (5xx otherwise, so the sender retries)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import orjson

from gateway_engine.config.templates import Render, TemplateRuntimeError
from gateway_engine.foundation.context import RequestContext
from gateway_engine.foundation.envelope import JSON, error_reply, success_body
from gateway_engine.foundation.errors import GatewayError
from gateway_engine.foundation.metrics import WEBHOOK_STORE_FULL
from gateway_engine.foundation.reply import Reply
from gateway_engine.runtime.client_body import read_body

from .actions import ActionFailed
from .dedupe import EventStore, StoreError, StoreFull
from .verify import Rejected

if TYPE_CHECKING:  # pragma: no cover
    from .definitions import Source

log = logging.getLogger("gateway_engine.webhooks")


class _ActionError(Exception):
    def __init__(self, index: int, kind: str, error: GatewayError) -> None:
        super().__init__(error.message)
        self.index, self.kind, self.error = index, kind, error


class WebhookEndpoint:
    """Called like a built-in endpoint: ``await endpoint(config, ctx) -> Reply``."""

    __slots__ = ("source", "store", "lease", "label")

    def __init__(self, source: "Source", store: EventStore, lease: float) -> None:
        self.source, self.store, self.lease = source, store, lease
        self.label = f"webhook.{source.name}"  # the metrics route label

    async def __call__(self, config: Any, ctx: RequestContext) -> Reply:
        ctx.state["builtin"] = self.label
        try:
            return await self._handle(config, ctx)
        except GatewayError as err:
            return self._error(ctx, err)

    async def _handle(self, config: Any, ctx: RequestContext) -> Reply:
        source = self.source
        if ctx.method != "POST":
            raise GatewayError(
                405,
                "METHOD_NOT_ALLOWED",
                f"{ctx.method} is not allowed here; allowed: POST.",
                headers={"Allow": "POST"},
            )
        if source.verifier is None or source.missing:
            raise GatewayError(
                503,
                "WEBHOOK_NOT_CONFIGURED",
                f"Webhook source {source.name} is not configured"
                + (f": set {', '.join(source.missing)}." if source.missing else "."),
            )
        _check_label(source.body_format, ctx.headers.get("content-type", ""))
        body = await read_body(ctx, source.max_body)
        try:
            source.verifier.verify(ctx.headers, body, time.time())
        except Rejected as exc:
            self._log(logging.WARNING, "rejected", reason=str(exc), client_ip=ctx.client_ip)
            raise GatewayError(401, "INVALID_WEBHOOK_SIGNATURE", f"The webhook was not verified: {exc}.") from None
        variables: dict[str, Any] = {
            "body": _parse(source.body_format, body),
            "headers": ctx.headers,
            "source": source.name,
        }
        event_id = _render(source, source.event_id, variables)
        event = {
            "id": str(event_id) if event_id not in (None, "") else hashlib.sha256(body).hexdigest(),
            "type": _render(source, source.event_type, variables),
        }
        variables["event"] = event
        key = f"{source.name}:{event['id'] if len(event['id']) <= 128 else hashlib.sha256(event['id'].encode()).hexdigest()}"
        token = os.urandom(12).hex()
        claim = await self._claim(key, token, event)
        if claim not in ("claimed", "unrecorded"):
            self._log(logging.INFO, "duplicate" if claim == "done" else "busy", event=event)
            if claim == "busy":
                raise GatewayError(
                    409,
                    "WEBHOOK_IN_PROGRESS",
                    "This event is being handled by another delivery; retry later.",
                    headers={"Retry-After": "5"},
                )
            return self._ok(ctx, {"received": True, "duplicate": True, "event": event})
        try:
            results = await self._run_actions(config, key, variables)
        except BaseException as exc:  # failed or cancelled: free the id so the sender's retry runs the event
            if claim == "claimed":
                await self._release(key, token)
            if not isinstance(exc, _ActionError):
                raise
            self._log(logging.ERROR, "failed", event=event, action=exc.index, kind=exc.kind, reason=exc.error.message)
            raise GatewayError(
                exc.error.status,
                exc.error.code,
                f"Action {exc.index} ({exc.kind}) failed: {exc.error.message}",
                details={"action": exc.index, "kind": exc.kind},
            ) from None
        try:
            if claim == "claimed":
                await self.store.finish(key, source.window)
        except StoreError as exc:  # the actions are durable; their own marks keep a retry from redoing them
            log.error("webhook %s: could not record event %s as handled: %s", source.name, event["id"], exc)
        self._log(logging.INFO, "accepted", event=event, actions=len(results))
        return self._ok(ctx, {"received": True, "duplicate": False, "event": event, "actions": results})

    async def _run_actions(self, config: Any, key: str, variables: Mapping[str, Any]) -> list[dict[str, Any]]:
        results = []
        for i, action in enumerate(self.source.actions):
            try:
                if not action.applies(variables):
                    results.append({"action": action.kind, "status": "skipped"})
                elif await self._action_done(key, i):
                    results.append({"action": action.kind, "status": "already-done"})
                else:
                    results.append(await action.run(config, variables))
                    await self._mark_action(key, i)
            except ActionFailed as exc:
                raise _ActionError(i, action.kind, GatewayError(502, "WEBHOOK_ACTION_FAILED", exc.detail)) from None
            except TemplateRuntimeError as exc:
                raise _ActionError(i, action.kind, GatewayError(500, "MAPPING_ERROR", str(exc))) from None
            except StoreError as exc:
                raise _ActionError(i, action.kind, GatewayError(503, "WEBHOOK_STORE_UNAVAILABLE", str(exc))) from None
        return results

    async def _claim(self, key: str, token: str, event: Mapping[str, Any]) -> str:
        """The store's claim; ``unrecorded`` when it is unreachable and the source fails open."""
        try:
            return await self._store(self.store.claim(key, token, self.lease))
        except GatewayError as err:
            if not (self.source.dedupe_open and err.code == "WEBHOOK_STORE_UNAVAILABLE"):
                raise
            self._log(logging.WARNING, "unrecorded", event=event, reason="store unreachable; a retry may run it again")
            return "unrecorded"

    async def _action_done(self, key: str, index: int) -> bool:
        try:
            return await self.store.action_done(key, index)
        except StoreError:
            if self.source.dedupe_open:
                return False
            raise

    async def _mark_action(self, key: str, index: int) -> None:
        try:
            await self.store.mark_action(key, index, self.source.window)
        except StoreError:
            if not self.source.dedupe_open:
                raise

    async def _store(self, call: Any) -> Any:
        try:
            return await call
        except StoreFull as exc:  # refused rather than forgetting an id whose replay would then run again
            WEBHOOK_STORE_FULL.labels(self.source.name).inc()
            log.error(
                "webhook %s: %s; refusing new events with 503 (raise webhooks.memory_capacity, or use Redis)",
                self.source.name,
                exc,
            )
            raise GatewayError(
                503,
                "WEBHOOK_STORE_FULL",
                "The webhook store is full of recent events; retry later.",
                headers={"Retry-After": str(exc.retry_after)},
            ) from None
        except StoreError as exc:
            log.error("webhook %s: %s", self.source.name, exc)
            raise GatewayError(
                503, "WEBHOOK_STORE_UNAVAILABLE", "The webhook store is unreachable; retry later."
            ) from None

    async def _release(self, key: str, token: str) -> None:
        try:
            await asyncio.shield(self.store.release(key, token))
        except (StoreError, asyncio.CancelledError):
            log.error("webhook %s: could not free event %s; a retry waits for the lease", self.source.name, key)

    def _error(self, ctx: RequestContext, err: GatewayError) -> Reply:
        return error_reply(ctx, err, {"source": self.source.name})

    def _ok(self, ctx: RequestContext, data: Any) -> Reply:
        body = success_body(ctx, orjson.dumps(data, default=str), {"source": self.source.name})
        return Reply(200, [("content-type", JSON), ("x-request-id", ctx.request_id)], body)

    def _log(self, level: int, outcome: str, *, event: Mapping[str, Any] | None = None, **fields: Any) -> None:
        line = {"webhook": self.source.name, "outcome": outcome}
        if event is not None:
            line |= {"event_id": event["id"], "event_type": event["type"]}
        log.log(level, orjson.dumps(line | fields, default=str).decode())


_LABELS = {"json": "application/json", "form": "application/x-www-form-urlencoded"}


def _check_label(body_format: str, content_type: str) -> None:
    """415 for a Content-Type naming another format than the source sends (none, or any for `text`, is fine)."""
    kind = content_type.split(";", 1)[0].strip().lower()
    expected = _LABELS.get(body_format)
    if expected is None or not kind or kind == expected or (body_format == "json" and kind.endswith("+json")):
        return
    raise GatewayError(415, "UNSUPPORTED_MEDIA_TYPE", f"This source sends {expected}, not {kind}.")


def _parse(body_format: str, body: bytes) -> Any:
    """The payload for templates, parsed from the verified raw bytes as the source's format, never as the
    delivery labels itself: the same delivery always yields the same event id."""
    if body_format == "form":
        return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    if body_format == "text":
        return body.decode("utf-8", "replace")
    if not body.strip():
        return None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise GatewayError(400, "INVALID_JSON", f"The webhook body is not valid JSON: {exc}.") from None


def _render(source: "Source", render: Render | None, variables: dict[str, Any]) -> Any:
    if render is None:
        return None
    try:
        return render(dict(variables))
    except TemplateRuntimeError as exc:
        raise GatewayError(500, "MAPPING_ERROR", f"Webhook {source.name}: {exc}") from None
