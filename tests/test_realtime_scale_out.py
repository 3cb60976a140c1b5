"""Scale-out: a message published on instance A reaches a socket on instance B through the Redis backplane;
a ticket issued by A is redeemed on B, once. Two real gateway processes share one real Redis."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import aiohttp

from tests.gateway_process import GatewayProcess
from tests.realtime_support import (
    ENV,
    bearer,
    next_frame,
    publish,
    sse_events,
    subscribe,
    write_realtime_config,
    ws_url,
)
from tests.redis_server import redis_url  # noqa: F401  (the fixture)


@contextlib.contextmanager
def gateway_process(config: Path, log: Path) -> Iterator[str]:
    with GatewayProcess(config, log, env=ENV, args=["--log-level", "warning"]) as gateway:
        yield gateway.base


async def test_realtime_message_on_instance_a_reaches_sockets_on_instance_b(tmp_path: Path, redis_url: str):
    config = write_realtime_config(tmp_path / "c", backplane=redis_url)
    with gateway_process(config, tmp_path / "a.log") as a, gateway_process(config, tmp_path / "b.log") as b:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(ws_url(b), headers=bearer("olga")) as olga_on_b:
                assert (await subscribe(olga_on_b, "payments:olga"))["type"] == "subscribed"
                async with session.get(f"{b}/api/realtime/events?channel=payments:olga", headers=bearer("olga")) as sse:
                    assert sse.status == 200
                    await publish(a, "pete", "not-olgas")
                    await publish(a, "olga", "from-a")  # a webhook arriving at A
                    frame = await next_frame(olga_on_b, "message")
                    assert frame["data"]["status"] == "from-a" and frame["channel"] == "payments:olga"
                    (event,) = await sse_events(sse, 1)
                    assert event["id"] == frame["id"]  # the same id on every instance
            async with session.post(f"{a}/api/realtime/tickets", headers=bearer("olga")) as issued:
                ticket = (await issued.json())["data"]["ticket"]
            async with session.ws_connect(ws_url(b, f"ticket={ticket}")) as by_ticket:
                assert (await subscribe(by_ticket, "payments:olga"))["type"] == "subscribed"
            for base in (a, b):  # redeemed once, on any instance
                async with session.get(f"{base}/api/realtime/events?channel=payments:olga&ticket={ticket}") as reused:
                    assert reused.status == 401 and (await reused.json())["error"]["code"] == "INVALID_TICKET"
