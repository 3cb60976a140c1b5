"""What a verified event starts: a workflow, a forward to an internal URL, a log line.

An action succeeds only once its effect is durable (the workflow started or was signalled,
the target answered 2xx); otherwise it raises ``ActionFailed`` and the endpoint answers 5xx,
so the sender retries. Every input is a template over the event, compiled at load time.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import orjson

from gateway_engine.config.templates import Render
from gateway_engine.foundation import events
from gateway_engine.foundation.errors import GatewayError
from gateway_engine.runtime.invoke import invoke
from gateway_engine.upstreams.credentials import UpstreamAuth
from gateway_engine.upstreams.seam import Timeouts, transport_factories

log = logging.getLogger("gateway_engine.webhooks")
TEMPLATE_NAMES = ("body", "headers", "source", "event")
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
#: the workflow routes' answers for a signal no run can receive (retrying may help only against a race with the start)
UNRECEIVED = frozenset({"WORKFLOW_NOT_FOUND", "WORKFLOW_CLOSED", "UNKNOWN_SIGNAL"})


class ActionFailed(Exception):
    """An action whose effect is not durable; ``detail`` (no secrets, no bodies) goes into the 5xx answer."""

    def __init__(self, detail: str, status: int | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status


class Action:
    """The shared part: the kind, the optional ``when`` and what to report."""

    kind = ""

    def __init__(self, when: Render | None) -> None:
        self.when = when

    def applies(self, variables: Mapping[str, Any]) -> bool:
        return self.when is None or bool(self.when(dict(variables)))

    async def run(self, config: Any, variables: Mapping[str, Any]) -> dict[str, Any]:
        raise NotImplementedError


class WorkflowAction(Action):
    """Start a workflow (its id derived from the event, so a retried delivery finds it started)
    or signal a running one, through the gateway's own workflow routes, in-process."""

    kind = "workflow"

    def __init__(
        self,
        when: Render | None,
        *,
        route: str,
        start: str | None,
        signal: str | None,
        workflow_id: Render,
        payload: Render,
        identity: dict[str, Any],
        headers: dict[str, str],
        skip_unreceived: bool = False,
    ) -> None:
        super().__init__(when)
        self.route, self.start, self.signal, self.skip_unreceived = route, start, signal, skip_unreceived
        self.workflow_id, self.payload = workflow_id, payload
        self.identity, self.headers = identity, headers

    async def run(self, config: Any, variables: Mapping[str, Any]) -> dict[str, Any]:
        workflow_id = str(self.workflow_id(dict(variables)) or "")
        if not workflow_id:
            raise ActionFailed("the workflow id rendered empty")
        payload = self.payload(dict(variables))
        if self.start:
            result = await self._call(config, {}, {"workflow": self.start, "input": payload, "id": workflow_id})
        else:
            args = payload if isinstance(payload, list) else [payload]
            result = await self._call(config, {"id": workflow_id}, {"name": self.signal, "args": args})
        answer = result.body if isinstance(result.body, dict) else {}
        raw_data = answer.get("data")
        data: dict[str, Any] = raw_data if isinstance(raw_data, dict) else {}
        code = answer["error"].get("code") if isinstance(answer.get("error"), dict) else None
        if self.start and (code == "WORKFLOW_ID_CONFLICT" or (result.ok and data.get("existing"))):
            # the id comes from the event: an earlier delivery of it started this run already
            return {"action": "workflow", "workflowId": workflow_id, "status": "already-started"}
        if not result.ok and self.skip_unreceived and code in UNRECEIVED:
            log.warning(
                "webhook %s: signal %s not received by %s (%s); skipped as configured",
                variables["source"],
                self.signal,
                workflow_id,
                code,
            )
            return {"action": "workflow", "workflowId": workflow_id, "status": "unreceived"}
        if not result.ok:
            raise ActionFailed(
                f"workflow {self.start or self.signal!r} ({workflow_id}) answered {result.status}"
                + (f" {code}" if code else ""),
                result.status,
            )
        return {"action": "workflow", "workflowId": workflow_id, "status": "started" if self.start else "signalled"}

    async def _call(self, config: Any, params: dict[str, str], body: Any) -> Any:
        try:
            return await invoke(
                config, self.route, params=params, body=body, identity=self.identity, upstream_headers=self.headers
            )
        except GatewayError as err:
            raise ActionFailed(f"workflow route {self.route} failed: {err.code}", err.status) from None


def service_identity(source: str) -> dict[str, Any]:
    """Who the workflow routes see: the gateway acting for a verified sender, as a service key with the
    ``workflows:admin`` scope (it signals runs whoever owns them, and starts runs for ``input.userId``)."""
    name = f"webhook:{source}"
    return {
        "sub": None,
        "user_id": None,
        "method": "api_key",
        "consumer": name,
        "key_name": name,
        "scopes": ["workflows:admin"],
        "roles": [],
    }


def identity_headers(route: Any, identity: Mapping[str, Any]) -> dict[str, str]:
    """The headers the route's auth plugin would forward for ``identity`` (its ``forward_identity`` option):
    in-process calls skip that plugin, so the gateway sets them itself."""
    auth = next((p for p in route.plugins if p.name == "auth"), None)
    forward = (auth.options.get("forward_identity") or {}) if auth is not None else {}
    if not forward.get("enabled"):
        return {}
    headers = {}
    for field, header in forward.get("headers", {}).items():
        value = identity.get(field)
        if value:
            headers[header] = ",".join(value) if isinstance(value, list) else str(value)
    return headers


class ForwardAction(Action):
    """POST the mapped event as JSON to an internal URL, with its own upstream auth."""

    kind = "forward"

    def __init__(
        self, when: Render | None, *, url: str, auth: UpstreamAuth, body: Render, headers: Render, timeout: float
    ) -> None:
        super().__init__(when)
        self.url, self.auth, self.body, self.headers = url, auth, body, headers
        self.transport = transport_factories()["http1"](
            timeouts=Timeouts(connect=min(5.0, timeout), read=timeout, total=timeout), max_connections=20
        )

    async def run(self, config: Any, variables: Mapping[str, Any]) -> dict[str, Any]:
        event = variables["event"]
        payload = orjson.dumps(self.body(dict(variables)), default=str)
        headers = [
            ("content-type", "application/json"),
            ("idempotency-key", f"{variables['source']}:{event['id']}"),
            ("x-webhook-source", variables["source"]),
            ("x-webhook-event-id", str(event["id"])),
        ]
        headers += [(k.lower(), str(v)) for k, v in self.headers(dict(variables)).items() if v is not None]
        url = self.auth.apply("POST", self.url, headers, payload)
        try:
            reply = await self.transport.send("POST", url, headers, payload)
        except GatewayError as err:
            raise ActionFailed(f"forward to {_safe(self.url)} failed: {err.code}", err.status) from None
        await reply.aclose()
        if not 200 <= reply.status < 300:
            raise ActionFailed(f"forward to {_safe(self.url)} answered {reply.status}", reply.status)
        return {"action": "forward", "status": "delivered"}

    async def aclose(self) -> None:
        await self.transport.aclose()


class LogAction(Action):
    """One JSON line with the event's source, id and type plus the mapped fields."""

    kind = "log"

    def __init__(self, when: Render | None, *, level: str, message: str, fields: Render) -> None:
        super().__init__(when)
        self.level, self.message, self.fields = _LEVELS[level], message, fields

    async def run(self, config: Any, variables: Mapping[str, Any]) -> dict[str, Any]:
        event = variables["event"]
        line = {
            "message": self.message,
            "source": variables["source"],
            "event_id": event["id"],
            "event_type": event["type"],
            **self.fields(dict(variables)),
        }
        log.log(self.level, orjson.dumps(line, default=str).decode())
        return {"action": "log", "status": "logged"}


class PublishAction(Action):
    """Hand the mapped event to the in-process event seam under a topic (realtime channels subscribe there)."""

    kind = "publish"

    def __init__(
        self, when: Render | None, *, topic: str, key: Render | None, value: Render, attributes: Render
    ) -> None:
        super().__init__(when)
        self.topic, self.key, self.value, self.attributes = topic, key, value, attributes

    async def run(self, config: Any, variables: Mapping[str, Any]) -> dict[str, Any]:
        key = self.key(dict(variables)) if self.key is not None else None
        headers = {k: str(v) for k, v in self.attributes(dict(variables)).items() if v is not None}
        value = self.value(dict(variables))
        receivers = events.publish(
            events.Message(self.topic, value, key=str(key) if key not in (None, "") else None, headers=headers)
        )
        return {"action": "publish", "status": "published" if receivers else "no-subscriber"}


class EmitAction(Action):
    """Emit an outbound event: hand it to the in-process event seam under its type, for the tenant it names.

    Whatever subscribes to the type there (the outbound webhooks outbox, realtime channels) takes it;
    this feature knows none of them. The action is done only once every subscriber's write finished
    (``publish_and_wait``): a failed write fails the action, so the sender gets no 2xx for an event that
    was lost and its retry runs the action again; the message key (source and event id) lets the outbox
    write a retried event once."""

    kind = "emit"

    def __init__(self, when: Render | None, *, event: str, data: Render, tenant: Render) -> None:
        super().__init__(when)
        self.event, self.data, self.tenant = event, data, tenant

    async def run(self, config: Any, variables: Mapping[str, Any]) -> dict[str, Any]:
        tenant = self.tenant(dict(variables))
        if tenant in (None, ""):
            raise ActionFailed(f"emit {self.event}: the tenant rendered empty")
        key = f"{variables['source']}:{variables['event']['id']}"
        message = events.Message(self.event, self.data(dict(variables)), key=key, headers={"tenant": str(tenant)})
        try:
            receivers = await events.publish_and_wait(message)
        except Exception as exc:  # the subscriber logged why; the sender only learns that it may retry
            log.warning("webhook %s: event type %s not taken: %s", variables["source"], self.event, type(exc).__name__)
            raise ActionFailed(f"emit {self.event}: the event could not be written; retry later") from None
        if not receivers:
            log.warning("webhook %s: nothing receives event type %s", variables["source"], self.event)
            return {"action": "emit", "event": self.event, "status": "no-subscriber"}
        return {"action": "emit", "event": self.event, "status": "emitted"}


def _safe(url: str) -> str:
    """A URL for messages: no credentials, no query."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('?', 1)[0].rsplit('@', 1)[-1]}"
