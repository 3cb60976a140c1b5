"""The Redis pub/sub backplane: a message one instance publishes reaches the sockets of every instance.

Each instance subscribes to one Redis channel and delivers what arrives (its own messages included, so
every instance sees the same order). Sending never blocks a publisher: messages wait in a bounded outbox
that one task drains; a full outbox drops its oldest message and counts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import Any

import orjson
import redis.asyncio as aioredis

from .connection import Push
from .hub import Hub
from .metrics import SOURCE_ERRORS

log = logging.getLogger("gateway_engine.realtime")
_OUTBOX = 10000
_PAUSE = 1.0  # seconds before a failed subscription or publish is tried again
_SEND_TIMEOUT = 5.0  # longest a durable publish waits for Redis


class RedisBackplane:
    def __init__(self, url: str, channel: str) -> None:
        self.url, self.channel = url, channel
        self._outbox: deque[bytes] = deque(maxlen=_OUTBOX)
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._client: Any = None
        self._listening = asyncio.Event()

    def send(self, push: Push) -> None:
        if len(self._outbox) == _OUTBOX:
            SOURCE_ERRORS.labels("backplane").inc()
        self._outbox.append(orjson.dumps(push.as_dict(), default=str))
        self._wake.set()

    async def send_now(self, push: Push) -> None:
        async with asyncio.timeout(_SEND_TIMEOUT):
            await self._client.publish(self.channel, orjson.dumps(push.as_dict(), default=str))

    async def start(self, hub: Hub) -> None:
        self._client = aioredis.from_url(self.url)
        self._tasks = [asyncio.create_task(self._listen(hub)), asyncio.create_task(self._drain())]
        with contextlib.suppress(TimeoutError):  # a slow Redis delays the first delivery, never the start
            async with asyncio.timeout(5):
                await self._listening.wait()

    async def _listen(self, hub: Hub) -> None:
        while True:
            try:
                pubsub = self._client.pubsub(ignore_subscribe_messages=True)
                await pubsub.subscribe(self.channel)
                self._listening.set()
                async for message in pubsub.listen():
                    _deliver(hub, message.get("data"))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                SOURCE_ERRORS.labels("backplane").inc()
                log.warning("realtime backplane subscription failed (%s); retrying", type(exc).__name__)
                await asyncio.sleep(_PAUSE)

    async def _drain(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._outbox:
                data = self._outbox[0]
                try:
                    await self._client.publish(self.channel, data)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    SOURCE_ERRORS.labels("backplane").inc()
                    log.warning("realtime backplane publish failed (%s); retrying", type(exc).__name__)
                    await asyncio.sleep(_PAUSE)
                    continue
                self._outbox.popleft()

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def _deliver(hub: Hub, data: Any) -> None:
    try:
        raw = orjson.loads(data)
        push = Push(str(raw["id"]), str(raw["channel"]), str(raw["event"]), raw.get("data"))
    except (orjson.JSONDecodeError, KeyError, TypeError):
        SOURCE_ERRORS.labels("backplane").inc()
        return
    hub.deliver(push)
