"""The one config directory the cluster's three gateways share, and the secrets it reads from their env.

Every engine address and secret is a ``${CLUSTER_*}`` variable, so the files hold no secret and the
harness passes fresh random values per run. Redis keeps the rate-limit counters, the inbound webhooks'
de-duplication ids (they follow ``rate_limit_storage``) and the realtime backplane; PostgreSQL keeps the
keys and the outbox.
"""

from __future__ import annotations

import secrets
from pathlib import Path

GATEWAY = """\
version: 1
base_path: /api
plugins:
  - request_id
  - envelope
  - auth: {accept: [api_key, jwt], verifier: keys}
  - rate_limit: {limit: 10000000/minute}
auth:
  api_keys:
    - {name: ops, key: "${CLUSTER_OPS_KEY}", scopes: ["*"]}
  jwt: {secret: "${CLUSTER_JWT_SECRET}", algorithms: [HS256], required_claims: [exp, sub]}
keys: {prefix: gk, flush_interval: 1s}
store: {url: "${CLUSTER_STORE_URL}"}
rate_limit_storage: "${CLUSTER_REDIS_URL}"
outbound_webhooks:
  allow_cidrs: [127.0.0.1/32]
  schedule: [0, 1s, 2s, 4s]
  jitter: 0
  poll_interval: 100ms
"""

BENCH_ROUTES = """\
backend: bench
prefix: /bench
upstream: {url: "${CLUSTER_UPSTREAM_URL}"}
routes:
  - {name: items, method: GET, path: /items, upstream_path: /items}
  - {name: submit, method: POST, path: /items, upstream_path: /items}
"""

# wrk's POST load: a static request (no Lua request()/response() hooks, so wrk stays on its fast path).
# nginx never retries a POST once it was sent, so these show a connection the gateway dropped.
POST_LUA = """\
wrk.method = "POST"
wrk.body = '{"sku": "cluster-1", "qty": 1}'
wrk.headers["Content-Type"] = "application/json"
"""

ORDERS_ROUTES = """\
backend: orders
prefix: /orders
upstream: {url: "${CLUSTER_UPSTREAM_URL}"}
routes:
  - name: set-status
    method: PUT
    path: "/{id}/status"
    upstream_path: /items
    emit:
      event: order.status_changed
      data: {id: "{{ request.params.id }}", status: shipped}
"""

KEYS_ADMIN = """\
backend: admin
prefix: /admin
upstream: {url: "keys://admin", transport: keys}
auth:
  scopes: ["keys:admin"]
  forward_identity: {enabled: true, headers: {consumer: X-Consumer-Id, tenant: X-Tenant-Id, key_id: X-Key-Id, scopes: X-Auth-Scopes}}
routes:
  - {name: api, method: [GET, POST, DELETE], path: "/{rest:path}", upstream_path: "/{rest}"}
"""

WEBHOOKS_ADMIN = """\
backend: webhooks
prefix: /webhooks
upstream: {url: "webhooks-admin://local", transport: webhooks_admin}
auth:
  forward_identity: {enabled: true, headers: {platform: X-Platform-Id, user_id: X-User-Id}}
routes:
  - {name: register, method: POST, path: /endpoints, upstream_path: /endpoints}
  - {name: deliveries, method: GET, path: /deliveries, upstream_path: /deliveries}
"""

EVENTS = """\
events:
  - name: order.status_changed
    description: An order moved to another status.
    schema: {type: object, required: [id, status], properties: {id: {type: string}, status: {type: string}}}
"""

PUSH_HOOK = """\
source: push
verify: {scheme: hmac, header: Signature, secrets: ["${CLUSTER_HOOK_SECRET}"]}
dedupe: {window: 10m}
actions:
  - publish: {topic: payment-status, key: "{{ body.userId }}", value: "{{ body }}"}
"""

CHANNELS = """\
server:
  websocket: /realtime/ws
  plugins: {auth: {accept: [jwt]}}
  backplane: {url: "${CLUSTER_REDIS_URL}", channel: cluster-realtime}
channels:
  - name: payments:{user}
    description: Payment status updates of one user.
    subscribe: {identity: {user: user_id}}
    sources:
      - publish: {topic: payment-status}
        params: {user: "{{ key }}"}
        event: payment-status-update
        data: "{{ value }}"
"""

FILES = {
    "gateway.yaml": GATEWAY,
    "routes.d/bench.yaml": BENCH_ROUTES,
    "routes.d/orders.yaml": ORDERS_ROUTES,
    "routes.d/admin.yaml": KEYS_ADMIN,
    "routes.d/webhooks.yaml": WEBHOOKS_ADMIN,
    "events.d/orders.yaml": EVENTS,
    "webhooks.d/push.yaml": PUSH_HOOK,
    "channels.d/payments.yaml": CHANNELS,
}


def write_config(root: Path) -> Path:
    for name, text in FILES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def secrets_env() -> dict[str, str]:
    """Fresh secrets for one run; never written to a file or printed."""
    return {
        "CLUSTER_OPS_KEY": "ops-" + secrets.token_hex(16),
        "CLUSTER_JWT_SECRET": secrets.token_hex(32),
        "CLUSTER_HOOK_SECRET": secrets.token_hex(16),
    }
