"""The reply registry's bounds: pending requests, retained results, retention time, owners."""

from __future__ import annotations

import time

import pytest

from gateway_engine.foundation.errors import GatewayError
from gateway_engine.kafka.replies import Replies, StoredReply

ANSWER = StoredReply(200, (("content-type", "application/json"),), b"{}")


async def test_kafka_replies_pending_is_bounded_503():
    replies = Replies(max_pending=2, max_retained=10, retention=60)
    replies.register("a", "u", keep=False, wait=5)
    replies.register("b", "u", keep=False, wait=5)
    with pytest.raises(GatewayError) as info:
        replies.register("c", "u", keep=False, wait=5)
    assert info.value.status == 503 and info.value.code == "UPSTREAM_BUSY"
    assert replies.resolve("a", ANSWER) and not replies.resolve("a", ANSWER)  # a reply is taken once
    replies.register("c", "u", keep=False, wait=5)  # room again


async def test_kafka_replies_retained_results_are_bounded_oldest_first():
    replies = Replies(max_pending=10, max_retained=2, retention=60)
    for cid in ("a", "b", "c"):
        replies.register(cid, "u", keep=True, wait=5)
        replies.resolve(cid, ANSWER)
    assert replies.lookup("a") is None and replies.lookup("b").future.result() == ANSWER
    assert list(replies.retained) == ["b", "c"]


async def test_kafka_replies_a_synchronous_answer_is_not_retained_and_a_late_one_is_dropped():
    replies = Replies(max_pending=10, max_retained=10, retention=60)
    entry = replies.register("s", "u", keep=False, wait=5)
    replies.forget("s", entry)  # the waiter gave up
    assert replies.lookup("s") is None and not replies.resolve("s", ANSWER)


async def test_kafka_replies_expire_after_the_retention():
    replies = Replies(max_pending=10, max_retained=10, retention=0.05)
    replies.register("x", "u", keep=True, wait=5)
    replies.resolve("x", ANSWER)
    assert replies.lookup("x") is not None
    time.sleep(0.1)
    assert replies.lookup("x") is None
