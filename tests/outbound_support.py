"""Outbound webhook tests' parts: a scripted receiver over 127.0.0.1, a config, an API client, the signature check.

The signature check is the Standard Webhooks algorithm written out here on its own (not the
gateway's code): HMAC-SHA256 over ``id.timestamp.body`` keyed by the base64 part of the secret.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx

ADMIN_ROUTES = """\
backend: webhooks
description: Webhook subscriptions of the caller's tenant
prefix: /webhooks
upstream: {url: "webhooks-admin://local", transport: webhooks_admin, health: {path: /}}
plugins:
  auth:
    forward_identity:
      enabled: true
      headers: {platform: X-Platform-Id, user_id: X-User-Id}
routes:
  - {name: register, method: POST, path: /endpoints, upstream_path: /endpoints}
  - {name: list, method: GET, path: /endpoints, upstream_path: /endpoints}
  - {name: get, method: GET, path: "/endpoints/{id}", upstream_path: "/endpoints/{id}"}
  - {name: update, method: PATCH, path: "/endpoints/{id}", upstream_path: "/endpoints/{id}"}
  - {name: delete, method: DELETE, path: "/endpoints/{id}", upstream_path: "/endpoints/{id}"}
  - {name: test, method: POST, path: "/endpoints/{id}/test", upstream_path: "/endpoints/{id}/test"}
  - {name: rotate, method: POST, path: "/endpoints/{id}/rotate-secret", upstream_path: "/endpoints/{id}/rotate-secret"}
  - {name: deliveries, method: GET, path: /deliveries, upstream_path: /deliveries}
  - {name: replay, method: POST, path: "/messages/{id}/replay", upstream_path: "/messages/{id}/replay"}
"""

EVENTS = """\
events:
  - name: order.status_changed
    description: An order moved to another status.
    schema:
      type: object
      required: [id, status]
      properties: {id: {type: string}, status: {type: string}}
  - name: order.created
    description: An order was placed.
    schema: {type: object}
"""

KEYS = {"ACME_KEY": "acme-key-0123456789", "GLOBEX_KEY": "globex-key-0123456789"}


def endpoint_row(
    endpoint_id: str,
    tenant: str,
    *,
    url: str = "https://example.com/hook",
    patterns: tuple[str, ...] = ("*",),
    enabled: bool = True,
    secret: str = "whsec_" + "A" * 32,
) -> dict[str, Any]:
    """An ``outbound_endpoints`` row written straight into the store, where a test needs no admin API."""
    now = time.time()
    return {
        "id": endpoint_id,
        "tenant": tenant,
        "url": url,
        "description": "",
        "events": json.dumps(list(patterns)),
        "headers": "{}",
        "enabled": enabled,
        "secret": secret,
        "created_at": now,
        "updated_at": now,
    }


def orders_routes(upstream: str) -> str:
    return f"""\
backend: orders
prefix: /orders
upstream: {{url: "{upstream}"}}
plugins:
  auth: {{}}
routes:
  - name: set-status
    method: PUT
    path: "/{{id}}/status"
    upstream_path: /anything
    emit:
      event: order.status_changed
      when: "{{{{ response.status == 200 }}}}"
      data: {{id: "{{{{ request.params.id }}}}", status: "{{{{ response.body.method }}}}"}}
  - {{name: plain, method: PUT, path: "/{{id}}/plain", upstream_path: /anything}}
"""


def gateway_yaml(store_url: str | None, schedule: str = "[0, 0.2s, 0.4s, 0.6s]", extra: str = "") -> str:
    store = f"store: {{url: '{store_url}'}}\n" if store_url else ""
    return f"""\
version: 1
{store}plugins: []
auth:
  api_keys:
    - {{name: acme, key: "${{ACME_KEY}}", scopes: ["*"]}}
    - {{name: globex, key: "${{GLOBEX_KEY}}", scopes: ["*"]}}
outbound_webhooks:
  schedule: {schedule}
  jitter: 0
  throttle_min: 0.3s
  poll_interval: 50ms
  allow_cidrs: [127.0.0.1/32]
{extra}"""


def write_outbound_config(root: Path, gateway: str, upstream: str) -> Path:
    (root / "routes.d").mkdir(parents=True, exist_ok=True)
    (root / "events.d").mkdir(exist_ok=True)
    (root / "gateway.yaml").write_text(gateway)
    (root / "routes.d" / "webhooks.yaml").write_text(ADMIN_ROUTES)
    (root / "routes.d" / "orders.yaml").write_text(orders_routes(upstream))
    (root / "events.d" / "orders.yaml").write_text(EVENTS)
    return root


class Receiver:
    """An ASGI receiver: answers each request with the next scripted (status, headers), then 200."""

    def __init__(self, script: list[tuple[int, dict[str, str]]] | None = None, delay: float = 0.0) -> None:
        self.script = list(script or [])
        self.delay = delay  # seconds to wait before answering (a slow endpoint)
        self.received: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        with self.lock:
            self.received.append(
                {
                    "at": time.monotonic(),
                    "path": scope["path"],
                    "headers": {k.decode(): v.decode() for k, v in scope["headers"]},
                    "body": body,
                }
            )
            status, headers = self.script.pop(0) if self.script else (200, {})
        if self.delay:
            await asyncio.sleep(self.delay)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
            }
        )
        await send({"type": "http.response.body", "body": b"ok" if status < 300 else b"no"})


def verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """Standard Webhooks verification, independently of the gateway: any v1 signature matching."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(
        version == "v1" and hmac.compare_digest(value, expected)
        for version, _, value in (s.partition(",") for s in headers["webhook-signature"].split(" "))
    )


def wait_for(check: Any, timeout: float = 20.0) -> Any:
    """Poll ``check`` until it returns something truthy (the machine is loaded: generous timeouts)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


def api(base: str, key: str) -> httpx.Client:
    return httpx.Client(base_url=base, headers={"x-api-key": key}, timeout=30)
