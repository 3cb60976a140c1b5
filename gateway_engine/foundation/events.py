"""The in-process event seam: one place where parts of the gateway publish messages and others subscribe.

A webhook ``publish`` action (and later a workflow step or an outbound ``emit:`` event) publishes a
``Message`` under a topic; a feature that pushes to clients subscribes to the topics its config names.
Neither side knows the other: features never import each other, they meet here. Delivery is synchronous
and in-process (one worker); a subscriber that must do I/O queues the message itself, and may return an
awaitable of that I/O: ``publish_and_wait`` awaits it, for a publisher that must not acknowledge a message
before it is durable (an inbound webhook's ``emit`` and the outbox write). Carrying a message
to other workers or instances is the subscriber's business (a backplane), not this seam's.

``deliver`` is the durable form, for a publisher that must know its message is safe before it goes on (a
workflow step in ``gateway-engine worker``, where Temporal retries the step): it awaits every durable
subscriber (an outbox row written, a backplane publish acknowledged) and raises ``NotDelivered`` when
nothing in this process takes the topic or a subscriber failed, so a message is never dropped silently.
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
Durable = Callable[[Message], Awaitable[None]]
_subscribers: dict[str, list[Subscriber]] = {}
_durable: dict[str, list[Durable]] = {}
TENANT_HEADER = "tenant"  # the message header naming the tenant an outbound event belongs to


class NotDelivered(Exception):
    """No durable subscriber took the message, or one failed: the publisher should retry."""


def publish(message: Message) -> int:
    """Hand ``message`` to every subscriber of its topic; returns how many there were."""
    receivers = _subscribers.get(message.topic, ())
    for receive in tuple(receivers):
        try:
            receive(message)
        except Exception:  # one broken subscriber never stops the others, nor the publisher
            log.exception("a subscriber of topic %r failed", message.topic)
    return len(receivers)


def listened(topic: str, besides: Subscriber | None = None) -> bool:
    """Whether anything but ``besides`` subscribes to ``topic``: a publisher that would only reach itself
    skips building the message (the outbox writes thousands a second)."""
    return any(receive != besides for receive in _subscribers.get(topic, ()))


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
    return _add(_subscribers, topic, receive)


def subscribe_durable(topic: str, receive: Durable) -> Callable[[], None]:
    """Receive every message ``deliver``-ed under ``topic``; ``receive`` returns once the message is safe."""
    return _add(_durable, topic, receive)


async def deliver(message: Message) -> int:
    """Hand ``message`` to every durable subscriber of its topic, each awaited; returns how many there were."""
    receivers = tuple(_durable.get(message.topic, ()))
    if not receivers:
        raise NotDelivered(f"nothing in this process takes messages of topic {message.topic!r}")
    for receive in receivers:
        try:
            await receive(message)
        except Exception as exc:
            raise NotDelivered(f"a subscriber of topic {message.topic!r} failed: {exc}") from exc
    return len(receivers)


def _add(table: dict[str, list[Any]], topic: str, receive: Any) -> Callable[[], None]:
    table.setdefault(topic, []).append(receive)

    def unsubscribe() -> None:
        receivers = table.get(topic, [])
        if receive in receivers:
            receivers.remove(receive)
        if not receivers:
            table.pop(topic, None)

    return unsubscribe
