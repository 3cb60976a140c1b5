"""The in-process event seam: publishers and subscribers meet by topic, and a broken subscriber harms nobody."""

from __future__ import annotations

import logging

from gateway_engine.foundation import events
from gateway_engine.foundation.events import Message


def test_events_deliver_by_topic_until_unsubscribed(caplog):
    got: list[Message] = []
    others: list[Message] = []

    def broken(message: Message) -> None:
        raise RuntimeError("a subscriber bug")

    stop = events.subscribe("t-events-a", got.append)
    stop_broken = events.subscribe("t-events-a", broken)
    stop_other = events.subscribe("t-events-b", others.append)
    with caplog.at_level(logging.ERROR, logger="gateway_engine.events"):
        assert events.publish(Message("t-events-a", {"n": 1}, key="k", headers={"h": "v"})) == 2
    assert got == [Message("t-events-a", {"n": 1}, key="k", headers={"h": "v"})] and others == []
    assert "a subscriber of topic 't-events-a' failed" in caplog.text  # logged; the good subscriber still got it
    stop()
    stop_broken()
    stop_broken()  # twice is harmless
    assert events.publish(Message("t-events-a", 2)) == 0 and len(got) == 1
    stop_other()
    assert events.publish(Message("t-events-b", 3)) == 0 and others == []


def test_listened_tells_whether_anything_but_the_publisher_subscribes():
    class Publisher:
        def own(self, message: Message) -> None:
            raise AssertionError("never called by listened")

    publisher, got = Publisher(), []
    stop_own = events.subscribe("t-events-listened", publisher.own)
    assert events.listened("t-events-listened") is True
    assert events.listened("t-events-listened", besides=publisher.own) is False  # a fresh bound method, equal
    stop_other = events.subscribe("t-events-listened", got.append)
    assert events.listened("t-events-listened", besides=publisher.own) is True
    stop_other()
    stop_own()
    assert events.listened("t-events-listened") is False
