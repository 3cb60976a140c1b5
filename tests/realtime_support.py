"""Realtime test support: a gateway config with channels.d, JWTs, signed webhook publishes, socket helpers."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import jwt

SECRET = "rt-secret-5c1d9e7a3b2f4a6c8e0d1f3b5a7c9e1d"
HOOK_SECRET = "rt-hook-secret"
SVC_KEY = "rt-service-key-0123456789abcdef"
ENV = {"JWT_SECRET": SECRET, "HOOK_SECRET": HOOK_SECRET, "SVC_KEY": SVC_KEY}

GATEWAY = """version: 1
base_path: /api
plugins: [request_id, envelope]
auth:
  api_keys:
    - {name: ops, key: "${SVC_KEY}", scopes: ["payments:all"]}
  jwt: {secret: "${JWT_SECRET}", algorithms: [HS256], required_claims: [exp, sub]}
"""

HOOK = """source: push
verify: {scheme: hmac, header: Signature, secrets: ["${HOOK_SECRET}"]}
actions:
  - publish: {topic: payment-status, key: "{{ body.userId }}", value: "{{ body }}"}
"""

SERVER = """server:
  websocket: /realtime/ws
  sse: /realtime/events
  tickets: {{path: /realtime/tickets, ttl: {ttl}}}
  socketio: {{path: /socket.io, namespace: /finance-payments, rooms: ["payments:{{user}}"], register_event: register-user}}
  plugins: {plugins}
  heartbeat: {heartbeat}
{backplane}  limits: {{connections: {connections}, per_identity: {per_identity}, queue: {queue}, slow_consumer: {policy}, subscriptions: 3}}
"""

CHANNELS = """channels:
  - name: payments:{user}
    description: Payment status updates of one user.
    subscribe: {identity: {user: user_id}, scopes: ["payments:all"]}
    history: 20
    sources:
      - publish: {topic: payment-status}
        params: {user: "{{ key }}"}
        event: payment-status-update
        data: "{{ value }}"
"""


def write_realtime_config(
    root: Path,
    *,
    channels: str = CHANNELS,
    backplane: str = "",
    ttl: str = "30s",
    heartbeat: str = "25s",
    connections: int = 100,
    per_identity: int = 5,
    queue: int = 64,
    policy: str = "drop_oldest",
    plugins: str = "{auth: {accept: [jwt, api_key]}}",
) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "gateway.yaml").write_text(GATEWAY)
    (root / "routes.d").mkdir(exist_ok=True)
    (root / "webhooks.d").mkdir(exist_ok=True)
    (root / "webhooks.d" / "push.yaml").write_text(HOOK)
    (root / "channels.d").mkdir(exist_ok=True)
    server = SERVER.format(
        ttl=ttl,
        heartbeat=heartbeat,
        backplane=f"  backplane: {{url: {backplane}}}\n" if backplane else "",
        connections=connections,
        per_identity=per_identity,
        queue=queue,
        policy=policy,
        plugins=plugins,
    )
    (root / "channels.d" / "payments.yaml").write_text(server + channels)
    return root


def token(user: str, *, ttl: float = 600, scopes: list[str] | None = None) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {"sub": user, "iat": now, "exp": now + ttl}
    if scopes:
        claims["scope"] = " ".join(scopes)
    return jwt.encode(claims, SECRET, algorithm="HS256")


def bearer(user: str, **kw: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(user, **kw)}"}


_published = [0]


async def publish(base: str, user: str, status: str) -> None:
    """A signed webhook whose ``publish`` action pushes a payment update for ``user``."""
    _published[0] += 1
    body = json.dumps({"userId": user, "status": status, "n": _published[0], "at": time.time()}).encode()
    signature = hmac.new(HOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{base}/api/webhooks/push", data=body, headers={"Signature": signature, "content-type": "application/json"}
        ) as r:
            assert r.status == 200, await r.text()


def ws_url(base: str, query: str = "") -> str:
    return base.replace("http://", "ws://") + "/api/realtime/ws" + (f"?{query}" if query else "")


async def next_frame(ws: aiohttp.ClientWebSocketResponse, kind: str, timeout: float = 10) -> dict[str, Any]:
    """The next frame of type ``kind`` (server pings in between are skipped)."""
    async with asyncio.timeout(timeout):
        while True:
            message = await ws.receive()
            if message.type != aiohttp.WSMsgType.TEXT:
                raise AssertionError(f"expected a {kind} frame, got {message.type} {message.data} {message.extra}")
            frame = json.loads(message.data)
            if frame["type"] == kind:
                return frame
            if frame["type"] not in ("ping", "pong"):
                raise AssertionError(f"expected a {kind} frame, got {frame}")


async def subscribe(ws: aiohttp.ClientWebSocketResponse, channel: str, **extra: Any) -> dict[str, Any]:
    await ws.send_json({"type": "subscribe", "channel": channel, **extra})
    async with asyncio.timeout(10):
        while True:
            frame = json.loads((await ws.receive()).data)
            if frame["type"] in ("subscribed", "error"):
                return frame


async def sse_events(response: aiohttp.ClientResponse, count: int, timeout: float = 10) -> list[dict[str, str]]:
    """Read ``count`` events (comments and the retry line skipped) from an event stream."""
    events: list[dict[str, str]] = []
    record: dict[str, str] = {}
    async with asyncio.timeout(timeout):
        while len(events) < count:
            line = (await response.content.readline()).decode()
            if line == "":
                raise AssertionError(f"the stream ended after {events}")
            line = line.rstrip("\n")
            if not line:
                if "data" in record:
                    events.append(record)
                record = {}
            elif not line.startswith(":"):
                name, _, value = line.partition(": ")
                record[name] = value
    return events
