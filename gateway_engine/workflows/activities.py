"""The step activity: call a gateway route in-process, as an HTTP request to the gateway would.

The route runs through ``invoke``: the same transport, upstream auth and mapping, without the
client-facing plugins (auth, rate limits, CORS), on behalf of the workflow's owner. Retryable
failures (5xx, 408, 429, timeouts) raise a retryable error, so Temporal's retry policy applies;
any other 4xx is final.
"""

from __future__ import annotations

from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from gateway_engine.compiled.model import CompiledConfig
from gateway_engine.foundation.errors import GatewayError
from gateway_engine.runtime.invoke import invoke

from .interpreter import CALL_ROUTE

_RETRYABLE = frozenset({408, 425, 429})


class RouteActivities:
    """Activities bound to one loaded config (the worker's)."""

    def __init__(self, config: CompiledConfig) -> None:
        self.config = config

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
