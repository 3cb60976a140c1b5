"""A gateway with stored keys for the key-store tests: its config, and a small admin API client."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

OPS_KEY = "ops-7d1e4c9a2b5f8e3d6c0a9b8e7f6d5c4b"  # the operator's YAML key (scope *)
ADMIN_IDENTITY = "{consumer: X-Consumer-Id, tenant: X-Tenant-Id, key_id: X-Key-Id, scopes: X-Auth-Scopes}"
SERVICE_IDENTITY = (
    "{platform: X-Platform-Id, client_id: X-Client-Id, external_id: X-Client-External-Id, "
    "scopes: X-Auth-Scopes, tenant: X-Tenant-Id, key_name: X-Key-Name}"
)


def gateway_yaml(store_url: str | None, log_file: Path, extra: str = "") -> str:
    store = f"store: {{url: '{store_url}', poll_interval: 0.1}}\n" if store_url else "store: {poll_interval: 0.1}\n"
    return (
        "version: 1\nbase_path: /api\n"
        "plugins:\n  - request_id\n  - request_log\n"
        f"  - logging: {{file: '{log_file}'}}\n"
        "  - envelope\n  - auth: {accept: [api_key], verifier: keys}\n  - rate_limit: {limit: 1000/minute}\n"
        f'auth:\n  api_keys:\n    - {{name: ops, key: "{OPS_KEY}", scopes: ["*"]}}\n'
        f"keys: {{prefix: gk, flush_interval: 100ms{extra}}}\n" + store
    )


def admin_routes() -> str:
    return f"""backend: admin
prefix: /admin
upstream: {{url: "keys://admin", transport: keys}}
auth: {{scopes: ["keys:admin"], forward_identity: {{enabled: true, headers: {ADMIN_IDENTITY}}}}}
routes:
  - {{name: api, method: [GET, POST, PUT, DELETE], path: "/{{rest:path}}", upstream_path: "/{{rest}}"}}
"""


def service_routes(url: str) -> str:
    return f"""backend: svc
prefix: /svc
upstream: {{url: "{url}"}}
auth: {{forward_identity: {{enabled: true, headers: {SERVICE_IDENTITY}}}}}
routes:
  - {{name: items, method: GET, path: /items, upstream_path: /items}}
  - {{name: read, method: GET, path: /orders, upstream_path: /orders, auth: {{scopes: ["orders:read"]}}}}
  - {{name: write, method: POST, path: /orders, upstream_path: /orders, auth: {{scopes: ["orders:write"]}}}}
  - {{name: tenant, method: GET, path: /tenant, upstream_path: /tenant, auth: {{require_client_key: true}}}}
"""


class Admin:
    """Calls the admin API under /api/admin with one key."""

    def __init__(self, base: str, key: str = OPS_KEY) -> None:
        self.base = base
        self.key = key

    def call(self, method: str, path: str, body: Any = None, **params: Any) -> httpx.Response:
        return httpx.request(
            method,
            f"{self.base}/api/admin{path}",
            json=body,
            params=params or None,
            headers={"x-api-key": self.key},
            timeout=30,
        )

    def ok(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        answer = self.call(method, path, body, **params)
        assert answer.status_code in (200, 201), answer.text
        return answer.json()["data"]

    def platform(self, code: str, scopes: list[str], **key: Any) -> tuple[dict, str]:
        data = self.ok(
            "POST", "/platforms", {"code": code, "name": code.title(), "key": {"name": code, "scopes": scopes, **key}}
        )
        return data["platform"], data["key"]["key"]


def call(
    base: str, path: str, key: str | None = None, client_key: str | None = None, method: str = "GET"
) -> httpx.Response:
    headers = {}
    if key is not None:
        headers["x-api-key"] = key
    if client_key is not None:
        headers["client-x-api-key"] = client_key
    return httpx.request(method, f"{base}/api/svc{path}", headers=headers, timeout=30)


def eventually(check: Any, timeout: float = 15.0) -> Any:
    """Poll ``check()`` until it returns something truthy (batched writes land within their flush interval)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)
