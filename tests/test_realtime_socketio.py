"""Socket.IO on the finance-payments namespace: the user's own room, from the authenticated connection only."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import socketio

from gateway_engine import create_app
from tests.realtime_support import ENV, bearer, publish, write_realtime_config
from tests.servers import serve

NS = "/finance-payments"


@pytest.fixture
def base(tmp_path: Path):
    # a short heartbeat: a polling client waits up to one ping interval for its last long poll when it leaves
    with serve(create_app(str(write_realtime_config(tmp_path / "c", heartbeat="2s")), ENV)) as url:
        yield url


async def _client(
    base: str, headers: dict[str, str], query: str = "", **kw
) -> tuple[socketio.AsyncClient, asyncio.Queue]:
    client = socketio.AsyncClient(reconnection=False)
    got: asyncio.Queue = asyncio.Queue()
    client.on("payment-status-update", lambda data: got.put_nowait(data), namespace=NS)
    await client.connect(
        base + query, namespaces=[NS], headers=headers, socketio_path="/api/socket.io", wait_timeout=10, **kw
    )
    return client, got


@pytest.mark.parametrize("transports", [["websocket"], ["polling"]])
async def test_realtime_socketio_user_gets_own_payment_status_updates(base, transports):
    # the original read the user from ?userId=: here it is ignored, the token decides
    alice, alice_got = await _client(base, bearer("alice"), "?userId=bob", transports=transports)
    bob, bob_got = await _client(base, bearer("bob"), transports=transports)
    try:
        await publish(base, "bob", "for-bob")
        await publish(base, "alice", "captured")
        update = await asyncio.wait_for(alice_got.get(), 10)
        assert update["userId"] == "alice" and update["status"] == "captured"
        assert (await asyncio.wait_for(bob_got.get(), 10))["status"] == "for-bob"
        assert alice_got.empty()
        assert await alice.call("register-user", {"userId": "alice"}, namespace=NS, timeout=10) == {
            "success": True,
            "data": {"userId": "alice"},
        }
    finally:
        await alice.disconnect()
        await bob.disconnect()


async def test_realtime_socketio_register_user_for_someone_else_is_refused(base):
    mallory, got = await _client(base, bearer("mallory"))
    errors: asyncio.Queue = asyncio.Queue()
    mallory.on("error", lambda data: errors.put_nowait(data), namespace=NS)
    try:
        answer = await mallory.call("register-user", {"userId": "alice"}, namespace=NS, timeout=10)
        assert answer["success"] is False and answer["error"]["code"] == "FORBIDDEN"
        assert (await asyncio.wait_for(errors.get(), 10))["code"] == "FORBIDDEN"
        assert (await mallory.call("register-user", "alice", namespace=NS, timeout=10))["success"] is False
        await publish(base, "alice", "not-for-mallory")
        await publish(base, "mallory", "mine")
        assert (await asyncio.wait_for(got.get(), 10))["status"] == "mine"  # alice's update never came first
    finally:
        await mallory.disconnect()


async def test_realtime_socketio_unauthenticated_connect_is_refused(base):
    client = socketio.AsyncClient(reconnection=False)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(base + "?userId=alice", namespaces=[NS], socketio_path="/api/socket.io", wait_timeout=10)
    await client.disconnect()


async def test_realtime_socketio_connects_with_a_ticket(base):
    import aiohttp

    async with aiohttp.ClientSession() as session:
        async with session.post(f"{base}/api/realtime/tickets", headers=bearer("nina")) as issued:
            ticket = (await issued.json())["data"]["ticket"]
    client, got = await _client(base, {}, auth={"ticket": ticket})
    try:
        await publish(base, "nina", "via-ticket")
        assert (await asyncio.wait_for(got.get(), 10))["status"] == "via-ticket"
    finally:
        await client.disconnect()


async def test_realtime_socketio_token_expiry_disconnects_with_a_clear_code(base):
    client, _ = await _client(base, bearer("otto", ttl=2))
    errors: asyncio.Queue = asyncio.Queue()
    left: asyncio.Event = asyncio.Event()
    client.on("error", lambda data: errors.put_nowait(data), namespace=NS)
    client.on("disconnect", lambda *a: left.set(), namespace=NS)
    try:
        assert (await asyncio.wait_for(errors.get(), 15)) == {"code": "TOKEN_EXPIRED"}
        await asyncio.wait_for(left.wait(), 15)
    finally:
        await client.disconnect()
