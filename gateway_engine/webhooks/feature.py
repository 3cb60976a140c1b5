"""The webhooks feature: ``webhooks.d`` sources served as endpoints, described in OpenAPI and the route table."""

from __future__ import annotations

from typing import Any

from gateway_engine.compiled.features import Feature, FeatureInput
from gateway_engine.compiled.model import Contribution, StateKey

from .definitions import Source, WebhookSet, compile_webhooks

#: the config's WebhookSet: ``config.state(WEBHOOKS)``
WEBHOOKS: StateKey[WebhookSet] = StateKey("webhooks")


class WebhooksFeature(Feature):
    name = "webhooks"
    order = 100
    folder = "webhooks.d"
    schema = "webhooks"

    def compile(self, given: FeatureInput) -> Contribution:
        core = given.core
        workflows = given.earlier.get("workflows")  # duck-typed: a catalog with names(), when that feature runs
        hooks = compile_webhooks(
            given.documents,
            core.routes,
            given.errors,
            router=core.router,
            gateway=core.gateway,
            environ=core.env,
            note_unset=given.note_unset,
            workflows=workflows.state if workflows is not None else None,
        )
        contribution = Contribution(endpoints=dict(hooks.endpoints), shutdown=[hooks.aclose], state=hooks)
        for source in hooks.sources:
            for i, path in enumerate(source.paths):
                contribution.openapi_paths.setdefault(path, {})["post"] = _operation(source, i)
                contribution.listing.append(
                    {
                        "methods": ["POST"],
                        "path": path,
                        "backend": "webhooks",
                        "name": source.name,
                        "upstream": source.file,
                        "configured": source.verifier is not None,
                        "plugins": [],
                    }
                )
        return contribution


def _json(ref: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}


def _operation(source: Source, index: int) -> dict[str, Any]:
    """A webhooks.d endpoint: called by the sender, authenticated by its signature over the raw body."""
    failed = {"description": "An error, as the error envelope.", "content": _json("ErrorEnvelope")}
    return {
        "operationId": f"webhooks.{source.name}" + (f".{index}" if index else ""),
        "tags": ["webhooks"],
        "summary": f"Events from {source.name}, verified by their signature (webhooks.d).",
        "security": [],
        "requestBody": {
            "required": True,
            "description": f"The sender's event, at most {source.max_body} bytes, signed over its exact bytes.",
            "content": {"application/json": {"schema": {}}},
        },
        "responses": {
            "200": {
                "description": "Every action accepted, or the event was handled before.",
                "content": _json("SuccessEnvelope"),
            },
            "401": {
                "description": "The signature did not verify (`INVALID_WEBHOOK_SIGNATURE`).",
                "content": _json("ErrorEnvelope"),
            },
            "409": {
                "description": "Another delivery of this event is being handled (`WEBHOOK_IN_PROGRESS`).",
                "content": _json("ErrorEnvelope"),
            },
            "413": {"description": "The body is larger than the source allows.", "content": _json("ErrorEnvelope")},
            "default": failed,
        },
    }
