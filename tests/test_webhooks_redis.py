"""Exactly once across instances: event ids in a real Redis, and the store's states in memory and Redis."""

from __future__ import annotations

import asyncio
import time

import pytest

from gateway_engine import create_app
from gateway_engine.webhooks.dedupe import MemoryStore, RedisStore, StoreError, StoreFull
from tests.servers import free_port, serve
from tests.test_webhooks import (
    ENV,
    GATEWAY,
    STRIPE_SECRET,
    post,
    stripe_event,
    stripe_signature,
    stripe_source,
    write_webhooks,
)


def test_webhooks_redis_instances_share_event_ids(tmp_path, upstream, recorder, redis_url):
    # one instance names the store, the other inherits it from rate_limit_storage
    a = write_webhooks(
        tmp_path / "a", {"stripe": stripe_source(upstream)}, GATEWAY + f"webhooks: {{store: '{redis_url}'}}\n"
    )
    b = write_webhooks(
        tmp_path / "b", {"stripe": stripe_source(upstream)}, GATEWAY + f"rate_limit_storage: '{redis_url}'\n"
    )
    body = stripe_event("evt_shared")
    with serve(create_app(str(a), ENV)) as first, serve(create_app(str(b), ENV)) as second:
        one = post(f"{first}/api/webhooks/stripe", body, {"stripe-signature": stripe_signature(STRIPE_SECRET, body)})
        two = post(f"{second}/api/webhooks/stripe", body, {"stripe-signature": stripe_signature(STRIPE_SECRET, body)})
    assert one.json()["data"]["duplicate"] is False and two.json()["data"]["duplicate"] is True
    assert len(recorder.requests) == 1


def test_webhooks_redis_down_is_503_and_runs_nothing(tmp_path, upstream, recorder, caplog):
    dead = f"redis://:s3cret-pass@127.0.0.1:{free_port()}"  # nothing listens there
    root = write_webhooks(tmp_path, {"stripe": stripe_source(upstream)}, GATEWAY + f"webhooks: {{store: '{dead}'}}\n")
    body = stripe_event()
    with serve(create_app(str(root), ENV)) as base:
        res = post(f"{base}/api/webhooks/stripe", body, {"stripe-signature": stripe_signature(STRIPE_SECRET, body)})
    assert res.status_code == 503 and res.json()["error"]["code"] == "WEBHOOK_STORE_UNAVAILABLE"
    assert recorder.requests == []
    assert "s3cret-pass" not in res.text and "s3cret-pass" not in caplog.text


@pytest.fixture(params=["memory", "redis"])
def store_factory(request):
    if request.param == "memory":
        return MemoryStore
    url = request.getfixturevalue("redis_url")
    return lambda: RedisStore(url, prefix=f"test:{request.node.name}:")


async def test_webhooks_store_claim_finish_release(store_factory):
    store = store_factory()
    try:
        assert await store.claim("s:evt", "t1", 30) == "claimed"
        assert await store.claim("s:evt", "t2", 30) == "busy"  # a concurrent delivery waits
        await store.release("s:evt", "t2")  # not its claim: nothing happens
        assert await store.claim("s:evt", "t3", 30) == "busy"
        await store.release("s:evt", "t1")  # the failed delivery frees it
        assert await store.claim("s:evt", "t4", 30) == "claimed"
        assert not await store.action_done("s:evt", 0)
        await store.mark_action("s:evt", 0, 60)
        assert await store.action_done("s:evt", 0) and not await store.action_done("s:evt", 1)
        await store.finish("s:evt", 60)
        assert await store.claim("s:evt", "t5", 30) == "done"
        await store.release("s:evt", "t4")  # a finished event is never freed
        assert await store.claim("s:evt", "t6", 30) == "done"
    finally:
        await store.aclose()


async def test_webhooks_store_lease_expires(store_factory):
    """A claim whose instance died is free again once its lease has passed."""
    store = store_factory()
    try:
        assert await store.claim("s:crashed", "t1", 0.05) == "claimed"
        deadline = time.monotonic() + 5
        while (state := await store.claim("s:crashed", "t2", 30)) == "busy" and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert state == "claimed"
    finally:
        await store.aclose()


def test_webhooks_memory_store_refuses_new_ids_when_full_and_forgets_none():
    store = MemoryStore(max_entries=3)

    async def fill() -> list[str]:
        for i in range(4):
            await store.finish(f"k{i}", 60)
        return [await store.claim(f"k{i}", "t", 30) for i in (3, 2, 1, 0)]  # newest first: a claim writes too

    assert asyncio.run(fill()) == ["done", "done", "done", "done"]  # every id inside its window is still known
    with pytest.raises(StoreFull) as refused:
        asyncio.run(store.claim("k4", "t", 30))
    assert 1 <= refused.value.retry_after <= 60


async def test_webhooks_redis_store_errors_are_store_errors():
    store = RedisStore(f"redis://127.0.0.1:{free_port()}")
    try:
        with pytest.raises(StoreError, match="unreachable"):
            await store.claim("k", "t", 1)
    finally:
        await store.aclose()
