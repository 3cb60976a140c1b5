"""Realtime push over WebSocket and SSE: own updates only, forged channels refused, tickets, expiry, limits."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import pytest

from gateway_engine import create_app
from tests.realtime_support import (
    ENV,
    SVC_KEY,
    bearer,
    next_frame,
    publish,
    sse_events,
    subscribe,
    write_realtime_config,
    ws_url,
)
from tests.servers import serve


@pytest.fixture
def realtime(tmp_path: Path):
    """``realtime(**config)`` → base URL of a gateway serving the realtime config."""
    import contextlib

    stack = contextlib.ExitStack()

    def start(**options) -> str:
        root = write_realtime_config(tmp_path / f"c{len(stack._exit_callbacks)}", **options)
        return stack.enter_context(serve(create_app(str(root), ENV)))

    with stack:
        yield start


async def test_realtime_websocket_receives_only_its_own_users_updates(realtime):
    base = realtime()
    async with aiohttp.ClientSession() as session:
        async with (
            session.ws_connect(ws_url(base), headers=bearer("alice")) as alice,
            session.ws_connect(ws_url(base), headers=bearer("bob")) as bob,
        ):
            assert (await subscribe(alice, "payments:alice"))["type"] == "subscribed"
            assert (await subscribe(bob, "payments:bob"))["type"] == "subscribed"
            await publish(base, "bob", "bob-only")
            await publish(base, "alice", "settled")
            got = await next_frame(alice, "message")
            assert got["channel"] == "payments:alice" and got["event"] == "payment-status-update"
            assert got["data"]["status"] == "settled" and got["data"]["userId"] == "alice"
            assert (await next_frame(bob, "message"))["data"]["status"] == "bob-only"
            await alice.send_json({"type": "ping"})
            assert (await next_frame(alice, "pong"))["type"] == "pong"  # nothing of bob's came before it


async def test_realtime_websocket_forged_channel_is_refused(realtime):
    base = realtime()
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(ws_url(base), headers=bearer("alice")) as alice:
            refused = await subscribe(alice, "payments:bob")
            assert refused == {
                "type": "error",
                "code": "FORBIDDEN",
                "channel": "payments:bob",
                "message": refused["message"],
            }
            assert (await subscribe(alice, "nope:x"))["code"] == "UNKNOWN_CHANNEL"
            assert (await subscribe(alice, "payments:a b"))["code"] == "UNKNOWN_CHANNEL"  # not a safe name part
            await alice.send_str("not json")
            assert (await next_frame(alice, "error"))["code"] == "BAD_MESSAGE"
            await publish(base, "bob", "secret")
            await alice.send_json({"type": "ping"})
            assert (await next_frame(alice, "pong"))["type"] == "pong"  # bob's update never reached alice


async def test_realtime_scope_holder_may_join_any_users_channel(realtime):
    base = realtime()
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(ws_url(base), headers={"x-api-key": SVC_KEY}) as ops:
            assert (await subscribe(ops, "payments:carol"))["type"] == "subscribed"
            await publish(base, "carol", "seen-by-ops")
            assert (await next_frame(ops, "message"))["data"]["status"] == "seen-by-ops"


async def test_realtime_handshake_without_or_with_bad_credentials_is_refused(realtime):
    base = realtime()
    async with aiohttp.ClientSession() as session:
        for headers, code in (({}, 401), ({"Authorization": "Bearer nope"}, 401), ({"x-api-key": "wrong"}, 401)):
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await session.ws_connect(ws_url(base), headers=headers)
            assert refused.value.status in (code, 403)  # 403 where the server cannot send a status of its own
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await session.ws_connect(ws_url(base, "userId=alice"))  # a query userId is no identity
        async with session.get(f"{base}/api/realtime/events?channel=payments:alice&userId=alice") as r:
            assert r.status == 401 and (await r.json())["error"]["code"] == "UNAUTHENTICATED"


async def test_realtime_sse_streams_own_updates_and_resumes_from_last_event_id(realtime):
    base = realtime()
    url = f"{base}/api/realtime/events?channel=payments:dave"
    async with aiohttp.ClientSession() as session:
        async with session.get(url.replace("dave", "erin"), headers=bearer("dave")) as forged:
            assert forged.status == 403 and (await forged.json())["error"]["code"] == "FORBIDDEN"
        async with session.get(url, headers=bearer("dave")) as stream:
            assert stream.status == 200 and stream.headers["content-type"].startswith("text/event-stream")
            await asyncio.sleep(0.2)  # subscribed once the headers came; the sleep only orders the log
            await publish(base, "erin", "erin-only")
            for status in ("one", "two", "three"):
                await publish(base, "dave", status)
            got = await sse_events(stream, 3)
        assert [json.loads(e["data"])["data"]["status"] for e in got] == ["one", "two", "three"]
        assert {e["event"] for e in got} == {"payment-status-update"}
        headers = {**bearer("dave"), "Last-Event-ID": got[0]["id"]}
        async with session.get(url, headers=headers) as resumed:
            again = await sse_events(resumed, 2)
        assert [e["id"] for e in again] == [got[1]["id"], got[2]["id"]]


async def test_realtime_ticket_is_one_use_and_needs_credentials(realtime):
    base = realtime()
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{base}/api/realtime/tickets") as anonymous:
            assert anonymous.status == 401
        async with session.get(f"{base}/api/realtime/tickets", headers=bearer("fay")) as wrong_method:
            assert wrong_method.status == 405
        async with session.post(f"{base}/api/realtime/tickets", headers=bearer("fay")) as issued:
            assert issued.status == 201 and issued.headers["cache-control"] == "no-store"
            ticket = (await issued.json())["data"]["ticket"]
        async with session.ws_connect(ws_url(base, f"ticket={ticket}")) as fay:
            assert (await subscribe(fay, "payments:fay"))["type"] == "subscribed"
            assert (await subscribe(fay, "payments:gus"))["code"] == "FORBIDDEN"
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await session.ws_connect(ws_url(base, f"ticket={ticket}"))  # used once already
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await session.ws_connect(ws_url(base, "ticket=" + "x" * 43))


async def test_realtime_expired_ticket_is_refused(realtime):
    base = realtime(ttl="300ms")
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{base}/api/realtime/tickets", headers=bearer("hal")) as issued:
            ticket = (await issued.json())["data"]["ticket"]
        await asyncio.sleep(0.6)
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await session.ws_connect(ws_url(base, f"ticket={ticket}"))


async def test_realtime_token_expiry_closes_the_socket_with_4401(realtime):
    base = realtime()
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(ws_url(base), headers=bearer("ivy", ttl=2)) as ivy:
            async with asyncio.timeout(15):
                while (message := await ivy.receive()).type == aiohttp.WSMsgType.TEXT:
                    pass
            assert message.type == aiohttp.WSMsgType.CLOSE and message.data == 4401
            assert message.extra == "TOKEN_EXPIRED"


async def test_realtime_connection_limits_per_identity_and_worker(realtime):
    base = realtime(per_identity=2, connections=3)
    async with aiohttp.ClientSession() as session:
        first = await session.ws_connect(ws_url(base), headers=bearer("jan"))
        second = await session.ws_connect(ws_url(base), headers=bearer("jan"))
        with pytest.raises(aiohttp.WSServerHandshakeError) as third:
            await session.ws_connect(ws_url(base), headers=bearer("jan"))
        assert third.value.status in (429, 403)
        other = await session.ws_connect(ws_url(base), headers=bearer("kim"))
        with pytest.raises(aiohttp.WSServerHandshakeError) as full:
            await session.ws_connect(ws_url(base), headers=bearer("lea"))
        assert full.value.status in (503, 403)
        await first.close()
        await asyncio.sleep(0.2)  # the close reaches the gateway
        again = await session.ws_connect(ws_url(base), headers=bearer("jan"))
        for ws in (second, other, again):
            await ws.close()


async def test_realtime_subscription_limit(realtime):
    base = realtime()
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(ws_url(base), headers={"x-api-key": SVC_KEY}) as ops:
            for user in ("a1", "a2", "a3"):
                assert (await subscribe(ops, f"payments:{user}"))["type"] == "subscribed"
            assert (await subscribe(ops, "payments:a4"))["code"] == "TOO_MANY_SUBSCRIPTIONS"
            await ops.send_json({"type": "unsubscribe", "channel": "payments:a1"})
            assert (await next_frame(ops, "unsubscribed"))["channel"] == "payments:a1"
            assert (await subscribe(ops, "payments:a4"))["type"] == "subscribed"


async def test_realtime_http_endpoints_run_the_whole_chain_with_cors(realtime):
    origin = "https://pay.example"
    base = realtime(plugins="{cors: {allow_origins: ['https://pay.example']}, auth: {accept: [jwt]}}")
    async with aiohttp.ClientSession() as session:
        preflight = {
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization",
        }
        async with session.options(f"{base}/api/realtime/tickets", headers=preflight) as answered:
            assert answered.status == 204 and answered.headers["access-control-allow-origin"] == origin
        async with session.post(f"{base}/api/realtime/tickets", headers={**bearer("zoe"), "Origin": origin}) as issued:
            assert issued.status == 201 and issued.headers["access-control-allow-origin"] == origin
            assert issued.headers["x-request-id"]  # request_id ran, from the default chain
            ticket = (await issued.json())["data"]["ticket"]
        url = f"{base}/api/realtime/events?channel=payments:zoe&ticket={ticket}"  # what an EventSource can do
        async with session.get(url, headers={"Origin": origin}) as stream:
            assert stream.status == 200 and stream.headers["access-control-allow-origin"] == origin
            await publish(base, "zoe", "cross-origin")
            (event,) = await sse_events(stream, 1)
            assert json.loads(event["data"])["data"]["status"] == "cross-origin"
        async with session.get(url, headers={"Origin": origin}) as reused:
            assert reused.status == 401 and reused.headers["access-control-allow-origin"] == origin


async def test_realtime_sse_stream_ends_when_the_token_expires(realtime):
    base = realtime()
    async with aiohttp.ClientSession() as session:
        url = f"{base}/api/realtime/events?channel=payments:ann"
        async with session.get(url, headers=bearer("ann", ttl=2)) as stream:
            assert stream.status == 200
            (ended,) = await sse_events(stream, 1, timeout=15)
            assert ended["event"] == "error" and json.loads(ended["data"])["code"] == "TOKEN_EXPIRED"
            assert await stream.content.read() == b""  # and the stream is over
        async with session.get(url, headers=bearer("ann", ttl=-600)) as expired:
            assert expired.status == 401


async def test_realtime_silent_websocket_is_closed_after_two_heartbeats(realtime):
    base = realtime(heartbeat="2s")  # a margin on a loaded CI machine: the answering client is never late
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(ws_url(base), headers=bearer("bea")) as bea:
            pings = 0
            async with asyncio.timeout(15):
                while (message := await bea.receive()).type == aiohttp.WSMsgType.TEXT:
                    pings += json.loads(message.data)["type"] == "ping"  # heard, never answered
            assert pings >= 1 and message.type == aiohttp.WSMsgType.CLOSE
            assert (message.data, message.extra) == (4408, "HEARTBEAT_TIMEOUT")
        async with session.ws_connect(ws_url(base), headers=bearer("cy")) as cy:
            for _ in range(4):  # a client that answers stays connected past two heartbeats
                frame = json.loads((await cy.receive(timeout=10)).data)
                assert frame["type"] == "ping"
                await cy.send_json({"type": "pong"})
            assert not cy.closed


async def test_realtime_reload_closes_old_sockets_with_1012_and_new_ones_work(tmp_path):
    root = write_realtime_config(tmp_path / "c")
    with serve(create_app(str(root), ENV, watch=True, drain_timeout=1)) as base:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(ws_url(base), headers=bearer("rex")) as old:
                assert (await subscribe(old, "payments:rex"))["type"] == "subscribed"
                channels = root / "channels.d" / "payments.yaml"
                channels.write_text(channels.read_text().replace("history: 20", "history: 10"))
                async with asyncio.timeout(30):
                    while (message := await old.receive()).type == aiohttp.WSMsgType.TEXT:
                        pass
                assert (message.data, message.extra) == (1012, "CONFIG_REPLACED")  # reconnect, says the code
            async with session.ws_connect(ws_url(base), headers=bearer("rex")) as new:
                assert (await subscribe(new, "payments:rex"))["type"] == "subscribed"
                await publish(base, "rex", "after-reload")
                assert (await next_frame(new, "message"))["data"]["status"] == "after-reload"
