"""Where channel messages come from: a Kafka topic, a Redis pub/sub channel, or the in-process publish seam.

Every source yields the same ``Message`` (topic, key, headers, value); the source's mapping (templates
compiled at load) picks the channel parameters, the event name and the data from it. A Kafka source reads
every partition by direct assignment from the end (no consumer-group join, so no rebalance wait), and every
instance reads it itself; so do Redis sources. The publish seam is seen by one instance only, so its
messages go through the backplane.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from gateway_engine.config.templates import Render
from gateway_engine.foundation import events
from gateway_engine.foundation.events import Message

from .channels import Channel
from .hub import Hub
from .metrics import SOURCE_ERRORS

log = logging.getLogger("gateway_engine.realtime")
TEMPLATE_NAMES = ("topic", "key", "headers", "value")
_PAUSE = 1.0
#: how long the broker may hold a fetch with nothing new: a push waits at most this long behind an idle fetch
_FETCH_WAIT_MS = 20


@dataclass(frozen=True)
class Mapping:
    """How one source's messages become pushes on one channel pattern."""

    channel: Channel
    params: dict[str, Render]
    event: Render
    data: Render
    when: Render | None

    def route(self, hub: Hub, message: Message, *, id: str | None = None, shared: bool) -> None:
        try:
            mapped = self.map(message)
        except Exception as exc:  # a message the templates cannot read is skipped, never fatal
            SOURCE_ERRORS.labels("mapping").inc()
            log.warning("realtime %s: a message did not map (%s)", self.channel.pattern, type(exc).__name__)
            return
        if mapped is not None:
            hub.publish(*mapped, id=id, shared=shared)

    async def route_durably(self, hub: Hub, message: Message) -> None:
        """``route``, awaiting the backplane; a message that does not map raises (its publisher retries)."""
        mapped = self.map(message)
        if mapped is not None:
            await hub.publish_durably(*mapped)

    def map(self, message: Message) -> tuple[str, str, Any] | None:
        """(channel, event, data) of a message; None when ``when`` is false; raises when it cannot map."""
        variables = {
            "topic": message.topic,
            "key": message.key,
            "headers": dict(message.headers),
            "value": message.value,
        }
        if self.when is not None and not self.when(dict(variables)):
            return None
        name = self.channel.name({p: render(dict(variables)) for p, render in self.params.items()})
        if name is None:
            raise ValueError(f"the parameters do not name a {self.channel.pattern} channel")
        return name, str(self.event(dict(variables)) or "message"), self.data(dict(variables))


def parse_value(raw: bytes | str | None) -> Any:
    if raw is None:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw


class PublishSource:
    """Messages published in-process (a webhook ``publish`` action) or delivered durably (a workflow step's
    ``publish:`` in ``gateway-engine worker``, which holds no sockets: it needs the Redis backplane)."""

    def __init__(self, topic: str, mapping: Mapping) -> None:
        self.topic, self.mapping = topic, mapping
        self._unsubscribe: list[Callable[[], None]] = []

    async def start(self, hub: Hub) -> None:
        self._unsubscribe = [
            events.subscribe(self.topic, lambda m: self.mapping.route(hub, m, shared=False)),
            events.subscribe_durable(self.topic, lambda m: self.mapping.route_durably(hub, m)),
        ]

    async def aclose(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe = []


class _Background:
    """A source read by one task that reconnects after a pause when its connection fails."""

    name = ""

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None

    async def start(self, hub: Hub) -> None:
        self._task = asyncio.create_task(self._forever(hub))

    async def _forever(self, hub: Hub) -> None:
        pause = _PAUSE
        while True:
            started = asyncio.get_running_loop().time()
            try:
                await self.run(hub)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                SOURCE_ERRORS.labels(self.name).inc()
                log.warning("realtime source %s failed (%s); retrying in %gs", self.name, type(exc).__name__, pause)
            # a source that ran a while starts over quickly; one that keeps failing backs off, up to 30 s
            ran = asyncio.get_running_loop().time() - started
            pause = _PAUSE if ran > 60 else min(30.0, pause * 2)
            await asyncio.sleep(pause)

    async def run(self, hub: Hub) -> None:
        raise NotImplementedError

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None


class KafkaSource(_Background):
    name = "kafka"

    def __init__(self, brokers: str, topic: str, mapping: Mapping, *, start: str, options: dict[str, Any]) -> None:
        super().__init__()
        self.brokers, self.topic, self.mapping, self.options = brokers, topic, mapping, options
        self.start_at = start  # "latest": only what arrives from now on; "earliest": the whole topic

    async def run(self, hub: Hub) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition  # loads only for configs with a Kafka source

        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.brokers,
            group_id=None,
            enable_auto_commit=False,
            fetch_max_wait_ms=_FETCH_WAIT_MS,
            **self.options,
        )
        await consumer.start()
        try:
            partitions = consumer.partitions_for_topic(self.topic)
            while not partitions:  # the topic does not exist yet: look again
                await asyncio.sleep(_PAUSE)
                await consumer.topics()
                partitions = consumer.partitions_for_topic(self.topic)
            assigned = [TopicPartition(self.topic, p) for p in sorted(partitions)]
            consumer.assign(assigned)
            if self.start_at == "earliest":
                await consumer.seek_to_beginning(*assigned)
            else:
                await consumer.seek_to_end(*assigned)
            for tp in assigned:
                await consumer.position(tp)  # resolve the end now, so nothing produced after start is skipped
            while True:
                batches = await consumer.getmany(timeout_ms=1000, max_records=500)
                for tp, records in batches.items():
                    for record in records:
                        message = Message(
                            topic=record.topic,
                            value=parse_value(record.value),
                            key=record.key.decode("utf-8", "replace") if record.key is not None else None,
                            headers={k: v.decode("utf-8", "replace") for k, v in record.headers or ()},
                        )
                        # the offset names the message the same way on every instance: a resume works anywhere
                        self.mapping.route(hub, message, id=f"{tp.topic}-{tp.partition}-{record.offset}", shared=True)
        finally:
            await consumer.stop()


class RedisSource(_Background):
    name = "redis"

    def __init__(self, url: str, channel: str, mapping: Mapping) -> None:
        super().__init__()
        self.url, self.channel, self.mapping = url, channel, mapping

    async def run(self, hub: Hub) -> None:
        import redis.asyncio as aioredis

        client = aioredis.from_url(self.url)
        try:
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            await pubsub.subscribe(self.channel)
            async for item in pubsub.listen():
                message = Message(topic=self.channel, value=parse_value(item.get("data")))
                self.mapping.route(hub, message, shared=True)
        finally:
            await client.aclose()
