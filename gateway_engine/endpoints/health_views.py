"""Health views: the paths gateway.yaml gives the health reports, the shape of each answer, and its OpenAPI entry.

A view is ``{path, report, fields?}``: ``liveness`` (the gateway's own state, no backend call) or ``backends``
(every backend probed), optionally reduced to ``fields`` (``{name in the answer: field of the report}``), so a
frontend's health contract is met without code.
"""

from __future__ import annotations

from typing import Any

from gateway_engine.endpoints.openapi import SCHEMAS

#: the health endpoints when gateway.yaml names none
DEFAULT_VIEWS: tuple[dict[str, Any], ...] = (
    {"path": "/health", "report": "liveness"},
    {"path": "/health/backends", "report": "backends"},
)


def reshape(body: dict[str, Any], fields: dict[str, str]) -> dict[str, Any]:
    """A report with only the chosen fields, renamed: the liveness report's own fields, or each system's of a
    backends report (its overall ``status`` and ``systems`` stay as they are)."""
    if "systems" not in body:
        return {name: body[field] for name, field in fields.items() if field in body}
    systems = {
        backend: {name: result[field] for name, field in fields.items() if field in result}
        for backend, result in body["systems"].items()
    }
    return {"status": body["status"], "systems": systems}


def openapi_paths(base: str, views: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The OpenAPI path item of every view (operation ids ``gateway.health``, ``gateway.health-backends``, ...)."""
    paths = {}
    for view in views:
        liveness = view["report"] == "liveness"
        schema = _schema(liveness, view.get("fields"))
        content = {"application/json": {"schema": schema}}
        responses: dict[str, Any] = {"200": {"description": "The gateway runs.", "content": content}}
        if not liveness:
            responses = {
                "200": {"description": "No critical backend is down.", "content": content},
                "503": {"description": "A critical backend is down.", "content": content},
            }
        paths[base + view["path"]] = {
            "get": {
                "operationId": "gateway." + view["path"].strip("/").replace("/", "-"),
                "tags": ["gateway"],
                "security": [],
                "summary": "The gateway's own liveness (no backend calls)."
                if liveness
                else "Every backend probed (cached for a few seconds).",
                "responses": responses,
            }
        }
    return paths


def _schema(liveness: bool, fields: dict[str, str] | None) -> dict[str, Any]:
    whole = "Health" if liveness else "BackendsHealth"
    if fields is None:
        return {"$ref": f"#/components/schemas/{whole}"}
    source = SCHEMAS["Health" if liveness else "BackendHealth"]
    shaped = {
        "type": "object",
        "required": [name for name, field in fields.items() if field in source["required"]],
        "properties": {name: source["properties"].get(field, {}) for name, field in fields.items()},
    }
    if liveness:
        return shaped
    return {
        "type": "object",
        "required": ["status", "systems"],
        "properties": {
            "status": SCHEMAS["BackendsHealth"]["properties"]["status"],
            "systems": {"type": "object", "additionalProperties": shaped},
        },
    }
