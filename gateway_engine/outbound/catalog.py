"""Event types: declared in ``events.d`` (name, description, payload JSON Schema) plus the gateway's own.

The catalog checks emitted data against the payload schema and describes every type in
OpenAPI 3.1's top-level ``webhooks`` section: the requests a subscriber will receive.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from gateway_engine.config.documents import Document
from gateway_engine.foundation.errors import ConfigError

#: the gateway's operational events, always declared
BUILT_IN: Mapping[str, tuple[str, dict[str, Any]]] = {
    "webhook.test": ("A test delivery, sent when the endpoint's test is asked for.", {"type": "object"}),
    "endpoint.disabled": (
        "An endpoint was disabled: it answered 410 Gone, or failed continuously for too long.",
        {"type": "object", "properties": {"endpointId": {"type": "string"}, "reason": {"type": "string"}}},
    ),
    "message.attempt.exhausted": (
        "A message's last scheduled attempt to an endpoint failed; it will not be retried unless replayed.",
        {"type": "object", "properties": {"endpointId": {"type": "string"}, "messageId": {"type": "string"}}},
    ),
}


@dataclass(frozen=True)
class EventType:
    name: str
    description: str
    schema: dict[str, Any]
    validator: Draft202012Validator


class Catalog:
    def __init__(self, types: Mapping[str, EventType]) -> None:
        self.types = dict(types)

    def get(self, name: str) -> EventType | None:
        return self.types.get(name)

    def matching(self, pattern: str) -> list[str]:
        return sorted(n for n in self.types if fnmatchcase(n, pattern))

    def problem(self, name: str, data: Any) -> str | None:
        """Why ``data`` is not a payload of event ``name`` (None when it is)."""
        event = self.types.get(name)
        if event is None:
            return f"no event type {name!r} is declared"
        error = next(iter(event.validator.iter_errors(data)), None)
        if error is None:
            return None
        where = "/".join(str(p) for p in error.absolute_path) or "(root)"
        return f"the data of {name} is invalid at {where}: {error.message[:200]}"

    def openapi(self) -> dict[str, dict[str, Any]]:
        """The OpenAPI 3.1 ``webhooks`` items: one POST per event type."""
        return {name: {"post": _operation(event)} for name, event in sorted(self.types.items())}


def compile_catalog(documents: list[Document], errors: list[ConfigError]) -> Catalog:
    types: dict[str, EventType] = {}
    where: dict[str, str] = {}
    for name, (description, payload) in BUILT_IN.items():
        types[name] = EventType(name, description, payload, Draft202012Validator(payload))
    for doc in documents:
        for i, spec in enumerate(doc.data["events"]):
            name = spec["name"]
            if name in types:
                first = where.get(name, "the gateway's own events")
                errors.append(doc.error(("events", i, "name"), f"event type {name!r} is already declared in {first}"))
                continue
            payload = spec.get("schema", {})
            try:
                Draft202012Validator.check_schema(payload)
            except SchemaError as exc:
                errors.append(doc.error(("events", i, "schema"), f"not a JSON Schema: {exc.message}"))
                continue
            types[name] = EventType(name, spec.get("description", ""), payload, Draft202012Validator(payload))
            where[name] = doc.file
    return Catalog(types)


def _operation(event: EventType) -> dict[str, Any]:
    header = {"required": True, "schema": {"type": "string"}}
    return {
        "operationId": f"event.{event.name}",
        "tags": ["outbound webhooks"],
        "summary": event.description or event.name,
        "parameters": [
            {"name": "webhook-id", "in": "header", **header, "description": "The message id (the same on retries)."},
            {"name": "webhook-timestamp", "in": "header", **header, "description": "Unix seconds of this attempt."},
            {
                "name": "webhook-signature",
                "in": "header",
                **header,
                "description": "`v1,<base64 HMAC-SHA256 of id.timestamp.body>`, space-separated during a rotation.",
            },
        ],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["id", "type", "timestamp", "data"],
                        "properties": {
                            "id": {"type": "string"},
                            "type": {"const": event.name},
                            "timestamp": {"type": "string", "format": "date-time"},
                            "data": event.schema,
                        },
                    }
                }
            },
        },
        "responses": {
            "2XX": {"description": "Received. Any other answer (3xx included) is retried; 410 disables the endpoint."}
        },
    }
