"""The step activities: call a gateway route in-process, as an HTTP request to the gateway would; deliver
a step's ``emit:`` event or ``publish:`` message through the durable event seam (``events.deliver``).

The route runs through ``invoke``: the same transport, upstream auth and mapping, without the
client-facing plugins (auth, rate limits, CORS), on behalf of the workflow's owner. Retryable
failures (5xx, 408, 429, timeouts) raise a retryable error, so Temporal's retry policy applies;
any other 4xx is final. A delivery that nothing in the worker took (no outbound service for the event
type, no realtime channel with a backplane for the topic) or that failed is retried the same way.
"""

from __future__ import annotations

from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from gateway_engine.compiled.model import CompiledConfig
from gateway_engine.foundation import events
from gateway_engine.foundation.errors import GatewayError
from gateway_engine.runtime.invoke import invoke

from .interpreter import CALL_ROUTE, DELIVER_EVENT

_RETRYABLE = frozenset({408, 425, 429})


class RouteActivities:
    """Activities bound to one loaded config (the worker's)."""

    def __init__(self, config: CompiledConfig) -> None:
        self.config = config

    def all(self) -> list[Any]:
        """Every activity a worker registers."""
        return [self.call_route, self.deliver_event]

    @activity.defn(name=DELIVER_EVENT)
    async def deliver_event(self, request: dict[str, Any]) -> int:
        """``{emit: {event, data, tenant?}}`` or ``{publish: {topic, key?, data}}``; how many subscribers took it."""
        if "emit" in request:
            spec, owner = request["emit"], request.get("owner")
            tenant = spec.get("tenant") or (f"user:{owner}" if owner else None)
            if not tenant:
                message = "an emit: of a workflow without an owner needs a tenant"
                raise ApplicationError(message, {"code": "NO_TENANT", "message": message}, type="EventRejected")
            info = activity.info()  # the same on every retry of this step: a retried write is the same message
            key = f"{info.workflow_id}/{info.workflow_run_id}/{info.activity_id}"
            headers = {events.TENANT_HEADER: str(tenant)}
            found = events.Message(str(spec["event"]), spec.get("data"), key=key, headers=headers)
        else:
            spec = request["publish"]
            key = spec.get("key")
            found = events.Message(str(spec["topic"]), spec.get("data"), key=None if key is None else str(key))
        try:
            return await events.deliver(found)
        except events.NotDelivered as exc:
            details = {"code": "EVENT_NOT_DELIVERED", "message": str(exc)}
            raise ApplicationError(str(exc), details, type="EventNotDelivered") from None

    @activity.defn(name=CALL_ROUTE)
    async def call_route(self, request: dict[str, Any]) -> Any:
        owner = request.get("owner")
        identity: dict[str, Any] = {
            "sub": owner,
            "user_id": owner,
            "method": "workflow",
            "roles": [],
            "scopes": [],
            "consumer": owner or "workflow",
        }
        try:
            answer = await invoke(
                self.config,
                request["route"],
                params=request.get("params"),
                query=request.get("query"),
                body=request.get("body"),
                headers={"idempotency-key": request["idempotencyKey"]},
                identity=identity,
            )
        except KeyError as exc:  # the route was removed since the workflow was defined
            raise ApplicationError(
                str(exc.args[0]),
                {"code": "ROUTE_MISSING", "message": str(exc.args[0])},
                type="RouteMissing",
                non_retryable=True,
            ) from None
        except GatewayError as exc:
            raise ApplicationError(
                exc.message,
                {"status": exc.status, "code": exc.code, "message": exc.message},
                type="RouteRejected",
                non_retryable=True,
            ) from None
        body = answer.body
        if answer.ok:
            # the client-facing data: the envelope's `data` when the route has the envelope
            return body["data"] if isinstance(body, dict) and body.get("success") is True and "data" in body else body
        raw_error = body.get("error") if isinstance(body, dict) else None
        error: dict[str, Any] = raw_error if isinstance(raw_error, dict) else {}
        details = {
            "status": answer.status,
            "code": error.get("code") or f"HTTP_{answer.status}",
            "message": error.get("message") or f"{request['route']} answered HTTP {answer.status}.",
        }
        retryable = answer.status >= 500 or answer.status in _RETRYABLE
        raise ApplicationError(
            f"{request['route']}: {details['code']}: {details['message']}",
            details,
            type="RouteFailed" if retryable else "RouteRejected",
            non_retryable=not retryable,
        )
