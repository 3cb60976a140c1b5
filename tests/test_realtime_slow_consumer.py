"""A slow consumer never holds up the others: its bounded queue drops the oldest, or it is disconnected."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import pytest

from gateway_engine import create_app
from gateway_engine.foundation.metrics import REGISTRY
from gateway_engine.realtime.channels import Catalog, compile_channel
from gateway_engine.realtime.connection import Closed
from gateway_engine.realtime.hub import Hub, Limits, LocalBackplane
from tests.realtime_support import ENV, HOOK_SECRET, bearer, next_frame, subscribe, write_realtime_config, ws_url
from tests.servers import serve


async def _hub(policy: str, queue: int = 3) -> Hub:
    catalog = Catalog([compile_channel("payments:{user}", {"user": "user_id"}, [], 10)])
    hub = Hub(catalog, Limits(queue=queue, slow_consumer=policy), LocalBackplane())
    await hub.backplane.start(hub)
    return hub


def _count(action: str) -> float:
    return (
        REGISTRY.get_sample_value("gateway_realtime_slow_consumer_total", {"transport": "test", "action": action}) or 0
    )


async def test_realtime_slow_consumer_drop_oldest_keeps_the_newest():
    hub = await _hub("drop_oldest")
    slow = hub.open({"user_id": "u1", "consumer": "u1"}, "test")
    fast = hub.open({"user_id": "u1", "consumer": "u1"}, "test")
    hub.subscribe(slow, "payments:u1")
    hub.subscribe(fast, "payments:u1")
    before = _count("dropped")
    for i in range(5):
        hub.publish("payments:u1", "update", {"i": i})
        if i < 3:
            assert (await fast.next(wait=1)).data == {"i": i}  # the fast one keeps up
    assert [(await slow.next(wait=1)).data["i"] for _ in range(3)] == [2, 3, 4]
    assert _count("dropped") - before == 2
    assert [(await fast.next(wait=1)).data["i"] for _ in range(2)] == [3, 4]


async def test_realtime_slow_consumer_disconnect_policy_closes_and_unsubscribes():
    hub = await _hub("disconnect", queue=2)
    slow = hub.open({"user_id": "u2", "consumer": "u2"}, "test")
    hub.subscribe(slow, "payments:u2")
    before = _count("disconnected")
    for i in range(3):
        hub.publish("payments:u2", "update", {"i": i})
    with pytest.raises(Closed) as closed:
        await slow.next(wait=1)
    assert closed.value.code == 4429 and closed.value.reason == "SLOW_CONSUMER"
    assert _count("disconnected") - before == 1
    assert "payments:u2" not in hub.subscribers and slow not in hub.connections and not hub.per_owner


async def test_realtime_slow_websocket_client_is_disconnected_with_4429(tmp_path: Path):
    root = write_realtime_config(tmp_path / "c", queue=2, policy="disconnect")
    with serve(create_app(str(root), ENV)) as base:
        async with aiohttp.ClientSession() as session:
            async with (
                session.ws_connect(ws_url(base), headers=bearer("slow"), max_msg_size=0) as slow,
                session.ws_connect(ws_url(base), headers=bearer("quick")) as quick,
            ):
                assert (await subscribe(slow, "payments:slow"))["type"] == "subscribed"
                assert (await subscribe(quick, "payments:quick"))["type"] == "subscribed"
                # the slow client reads nothing: once the socket buffers fill, its queue overflows
                padding = "x" * 200_000
                for n in range(200):
                    await _publish_big(session, base, "slow", padding, n)
                    if n % 20 == 19:
                        await _publish_big(session, base, "quick", "", n)
                        assert (await next_frame(quick, "message"))["data"]["n"] == n  # the other client is served
                    if slow.closed or slow._reader.exception() is not None:
                        break
                async with asyncio.timeout(20):
                    while (message := await slow.receive()).type == aiohttp.WSMsgType.TEXT:
                        pass
                assert message.type == aiohttp.WSMsgType.CLOSE and message.data == 4429
                assert message.extra == "SLOW_CONSUMER"


async def _publish_big(session: aiohttp.ClientSession, base: str, user: str, padding: str, n: int) -> None:
    import hashlib
    import hmac

    body = json.dumps({"userId": user, "status": "bulk", "n": n, "pad": padding, "who": user}).encode()
    signature = hmac.new(HOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    headers = {"Signature": signature, "content-type": "application/json"}
    async with session.post(f"{base}/api/webhooks/push", data=body, headers=headers) as r:
        assert r.status == 200, await r.text()
