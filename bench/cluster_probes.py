"""What the cluster test asks of the running instances: shared rate limits, revocation, webhooks, realtime, logs.

Each probe talks to the instances directly (not through the load balancer) when it must know which
instance answered, and returns plain figures; the checks on them live in ``bench/cluster.py``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import jwt


def client(base: str, key: str) -> httpx.Client:
    return httpx.Client(base_url=base, headers={"x-api-key": key}, timeout=15, trust_env=False)


def create_key(base: str, ops_key: str, name: str, **extra: Any) -> dict[str, Any]:
    with client(base, ops_key) as c:
        answer = c.post("/api/admin/keys", json={"name": name, "scopes": ["*"], **extra})
    if answer.status_code != 201:
        raise RuntimeError(f"creating a key answered {answer.status_code}: {answer.text[:300]}")
    return answer.json()["data"]


def rate_limit(bases: list[str], ops_key: str, limit: int) -> dict[str, int]:
    """A stored key limited to ``limit``/minute, called 3 × limit times round-robin over the instances."""
    key = create_key(bases[0], ops_key, "limited", rateLimit=limit)["key"]
    counts = {"limit": limit, "sent": 0, "admitted": 0, "refused": 0, "other": 0}
    clients = [client(base, key) for base in bases]
    try:
        for i in range(3 * limit):
            status = clients[i % len(clients)].get("/api/bench/items").status_code
            counts["sent"] += 1
            counts["admitted" if status == 200 else "refused" if status == 429 else "other"] += 1
    finally:
        for c in clients:
            c.close()
    return counts


def revocation(bases: list[str], ops_key: str, bound: float) -> dict[str, Any]:
    """Revoke a key every instance has verified (and cached) through the first instance's admin API; time, per
    instance, from just before the DELETE until that instance refuses the key. ``bound`` caps the wait."""
    created = create_key(bases[0], ops_key, "to-revoke")
    for base in bases:
        with client(base, created["key"]) as c:
            for _ in range(2):  # the second one is served from the verification cache
                if (status := c.get("/api/bench/items").status_code) != 200:
                    raise RuntimeError(f"{base} refused a fresh key: {status}")
    lags: list[float | None] = [None] * len(bases)
    start = threading.Event()

    def watch(i: int) -> None:
        with client(bases[i], created["key"]) as c:
            start.wait()
            t0 = time.monotonic()
            while time.monotonic() - t0 < bound:
                if c.get("/api/bench/items").status_code == 401:
                    lags[i] = time.monotonic() - t0
                    return
                time.sleep(0.005)

    threads = [threading.Thread(target=watch, args=(i,), daemon=True) for i in range(len(bases))]
    for t in threads:
        t.start()
    with client(bases[0], ops_key) as c:
        start.set()
        began = time.monotonic()
        answer = c.delete(f"/api/admin/keys/{created['id']}")
        answered_s = time.monotonic() - began
    if answer.status_code != 200:
        raise RuntimeError(f"revoking answered {answer.status_code}: {answer.text[:300]}")
    for t in threads:
        t.join(bound + 20)
    return {"lags_s": lags, "delete_s": round(answered_s, 3)}


def register_endpoint(base: str, ops_key: str, url: str) -> None:
    with client(base, ops_key) as c:
        answer = c.post("/api/webhooks/endpoints", json={"url": url, "events": ["order.*"]})
    if answer.status_code != 201:
        raise RuntimeError(f"registering the webhook endpoint answered {answer.status_code}: {answer.text[:300]}")


def emit(base: str, ops_key: str, order: int) -> int:
    """A route with ``emit:``: each 200 writes one event to the outbox. Returns the status."""
    with client(base, ops_key) as c:
        return c.put(f"/api/orders/{order}/status").status_code


def wait_deliveries(received: Any, expected: int, timeout: float, settle: float) -> list[str]:
    """Wait until ``expected`` distinct ids arrived, then ``settle`` more seconds for any duplicate."""
    deadline = time.monotonic() + timeout
    while len(set(received())) < expected and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(settle)
    return received()


def realtime(bases: list[str], jwt_secret: str, hook_secret: str, timeout: float = 15) -> dict[str, Any]:
    """A socket on the first instance, a signed webhook publish through the last one: the frame's latency.
    The same webhook delivered again to the middle instance must be a duplicate (ids shared in Redis)."""
    return asyncio.run(_realtime(bases, jwt_secret, hook_secret, timeout))


async def _realtime(bases: list[str], jwt_secret: str, hook_secret: str, timeout: float) -> dict[str, Any]:
    user = "u" + uuid.uuid4().hex[:8]
    now = int(time.time())
    token = jwt.encode({"sub": user, "iat": now, "exp": now + 600}, jwt_secret, algorithm="HS256")
    body = json.dumps({"userId": user, "status": "paid", "id": uuid.uuid4().hex}).encode()
    headers = {
        "Signature": hmac.new(hook_secret.encode(), body, hashlib.sha256).hexdigest(),
        "content-type": "application/json",
    }
    ws_url = bases[0].replace("http://", "ws://") + "/api/realtime/ws"
    result: dict[str, Any] = {"delivered": False, "latency_ms": None, "duplicate_refused": False, "extra_frames": 0}
    async with aiohttp.ClientSession(trust_env=False) as session:
        async with session.ws_connect(ws_url, headers={"Authorization": f"Bearer {token}"}) as ws:
            await ws.send_json({"type": "subscribe", "channel": f"payments:{user}"})
            frame = await _next(ws, ("subscribed", "error"), timeout)
            if frame.get("type") != "subscribed":
                raise RuntimeError(f"subscribing answered {frame}")
            sent = time.monotonic()
            async with session.post(f"{bases[-1]}/api/webhooks/push", data=body, headers=headers) as answer:
                if answer.status != 200:
                    raise RuntimeError(f"the webhook publish answered {answer.status}: {await answer.text()}")
            frame = await _next(ws, ("message",), timeout)
            result["latency_ms"] = round((time.monotonic() - sent) * 1000, 1)
            result["delivered"] = frame["data"]["status"] == "paid"
            async with session.post(f"{bases[len(bases) // 2]}/api/webhooks/push", data=body, headers=headers) as again:
                result["duplicate_refused"] = (
                    again.status == 200 and (await again.json())["data"].get("duplicate") is True
                )
            try:
                await _next(ws, ("message",), 1.0)
                result["extra_frames"] += 1
            except TimeoutError:
                pass
    return result


async def _next(ws: aiohttp.ClientWebSocketResponse, kinds: tuple[str, ...], timeout: float) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            message = await ws.receive()
            if message.type != aiohttp.WSMsgType.TEXT:
                raise RuntimeError(f"the socket closed: {message.type} {message.data}")
            frame = json.loads(message.data)
            if frame["type"] in kinds:
                return frame


_ERROR_LINE = re.compile(r"\b(ERROR|CRITICAL|Traceback)\b")


def scan_logs(paths: list[Path]) -> list[str]:
    """Error lines (ERROR, CRITICAL, tracebacks) in the gateways' output, every incarnation of each."""
    found: list[str] = []
    for path in paths:
        if path.exists():
            for line in path.read_text(errors="replace").splitlines():
                if _ERROR_LINE.search(line):
                    found.append(f"{path.name}: {line.strip()[:240]}")
    return found
