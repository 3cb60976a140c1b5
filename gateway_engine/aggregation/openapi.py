"""The OpenAPI operation fragment of an aggregated route: the merged answer's keys, meta.backends, the 502."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from .handler import Call

_BACKENDS = {
    "type": "array",
    "description": "Every backend call, in declaration order.",
    "items": {
        "type": "object",
        "required": ["name", "backend", "status", "latency_ms", "fallback"],
        "properties": {
            "name": {"type": "string", "description": "The backend entry's name in the route."},
            "backend": {"type": "string", "description": "The routes.d backend it called."},
            "status": {
                "type": ["integer", "null"],
                "description": "Its HTTP status (the gateway's on a failed call; null when not called).",
            },
            "latency_ms": {"type": ["number", "null"]},
            "fallback": {"type": "boolean", "description": "Whether its fallback stands in for its answer."},
            "error": {
                "type": "string",
                "description": "Why it failed, e.g. `UPSTREAM_TIMEOUT` or `DEPENDENCY_FAILED`.",
            },
        },
    },
}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def operation(calls: Sequence["Call"], enveloped: bool) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    required: list[str] = []
    for call in calls:
        how = "required" if call.required else "optional: its `fallback` when it fails"
        for key in sorted(call.shape.writes):
            properties[key] = {"description": f"From backend `{call.name}` ({call.route.backend}, {how})."}
            if call.required and call.shape.group is not None:
                required.append(key)
    data: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        data["required"] = required
    ok: dict[str, Any] = {"description": "Every required backend answered; the parts merged in declaration order."}
    if enveloped:
        schema = {
            "allOf": [
                _ref("SuccessEnvelope"),
                {"properties": {"data": data, "meta": {"properties": {"backends": _BACKENDS}}}},
            ]
        }
        ok["content"] = {"application/json": {"schema": schema}}
    else:
        ok["content"] = {"application/json": {"schema": data}}
    failed = {
        "description": "A required backend failed (`BACKEND_FAILED`; `error.details` names it and its status).",
        "content": {"application/json": {"schema": _ref("ErrorEnvelope")}},
    }
    unset = {
        "description": "A required backend is not configured (`BACKEND_NOT_CONFIGURED`).",
        "content": {"application/json": {"schema": _ref("ErrorEnvelope")}},
    }
    return {"responses": {"200": ok, "502": failed, "503": unset}}
