"""The in-process event seam: one place where parts of the gateway publish messages and others subscribe.

A webhook ``publish`` action (and later a workflow step or an outbound ``emit:`` event) publishes a
``Message`` under a topic; a feature that pushes to clients subscribes to the topics its config names.
Neither side knows the other: features never import each other, they meet here. Delivery is synchronous
and in-process (one worker); a subscriber that must do I/O queues the message itself, and may return an
awaitable of that I/O: ``publish_and_wait`` awaits it, for a publisher that must not acknowledge a message
before it is durable (an inbound webhook's ``emit`` and the outbox write). Carrying a message
to other workers or instances is the subscriber's business (a backplane), not this seam's.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("gateway_engine.events")


@dataclass(frozen=True)
class Message:
    """What every source yields, whatever carried it (this seam, a broker topic, a pub/sub channel)."""

    topic: str
    value: Any  # parsed JSON, or text
    key: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


Subscriber = Callable[[Message], Awaitable[None] | None]
_subscribers: dict[str, list[Subscriber]] = {}


def publish(message: Message) -> int:
    """Hand ``message`` to every subscriber of its topic; returns how many there were."""
    receivers = _subscribers.get(message.topic, ())
    for receive in tuple(receivers):
        try:
            receive(message)
        except Exception:  # one broken subscriber never stops the others, nor the publisher
            log.exception("a subscriber of topic %r failed", message.topic)
    return len(receivers)


async def publish_and_wait(message: Message) -> int:
    """``publish``, then await every awaitable a subscriber returned; the first failure raises (after all ran)."""
    receivers = _subscribers.get(message.topic, ())
    pending: list[Awaitable[None]] = []
    failed: list[BaseException] = []
    for receive in tuple(receivers):
        try:
            result = receive(message)
        except Exception as exc:
            log.exception("a subscriber of topic %r failed", message.topic)
            failed.append(exc)
            continue
        if inspect.isawaitable(result):
            pending.append(result)
    outcomes = await asyncio.gather(*pending, return_exceptions=True)
    failed += [o for o in outcomes if isinstance(o, BaseException)]
    if failed:
        raise failed[0]
    return len(receivers)


def subscribe(topic: str, receive: Subscriber) -> Callable[[], None]:
    """Receive every message published under ``topic`` until the returned function is called."""
    _subscribers.setdefault(topic, []).append(receive)

    def unsubscribe() -> None:
        receivers = _subscribers.get(topic, [])
        if receive in receivers:
            receivers.remove(receive)
        if not receivers:
            _subscribers.pop(topic, None)

    return unsubscribe
