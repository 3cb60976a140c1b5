"""The per-worker hub: who is connected, who listens to which channel, and each channel's bounded history.

Sources hand messages to ``publish``. A message only this worker saw (the in-process publish seam) goes
through the backplane, so every instance delivers it; a message every instance reads itself (a broker
topic, a pub/sub channel) is delivered here directly. Delivery never waits on a client: each connection
has its own bounded queue.
"""

from __future__ import annotations

import itertools
import os
from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from gateway_engine.foundation.errors import GatewayError

from .channels import Catalog, Channel
from .connection import Closed, Connection, Push
from .metrics import CONNECTIONS, REFUSED


@dataclass(frozen=True)
class Limits:
    connections: int = 10000  # per worker
    per_identity: int = 10
    subscriptions: int = 50  # per connection
    queue: int = 256  # messages waiting per connection
    slow_consumer: str = "drop_oldest"  # or "disconnect"
    message_bytes: int = 16384  # largest client frame
    heartbeat: float = 25.0  # seconds between server pings; silence for two of them closes the socket
    history_channels: int = 10000  # concrete channels whose history is kept (least recently used go first)


class Backplane(Protocol):
    def send(self, push: Push) -> None: ...

    async def send_now(self, push: Push) -> None:
        """Send and return once every instance will see it; raises when that cannot be promised."""

    async def start(self, hub: "Hub") -> None: ...

    async def aclose(self) -> None: ...


class LocalBackplane:
    """One instance: what is sent is delivered here."""

    def __init__(self) -> None:
        self.hub: Hub | None = None

    def send(self, push: Push) -> None:
        if self.hub is not None:
            self.hub.deliver(push)

    async def send_now(self, push: Push) -> None:
        # without a backplane only this process's sockets would see it: none, in `gateway-engine worker`
        raise RuntimeError("realtime has no backplane (channels.d server.backplane): no other process would see it")

    async def start(self, hub: "Hub") -> None:
        self.hub = hub

    async def aclose(self) -> None:
        self.hub = None


def owner_of(identity: Mapping[str, Any]) -> str:
    """Who a connection counts against: the consumer (key or user), else the subject."""
    return str(identity.get("consumer") or identity.get("user_id") or identity.get("sub") or "anonymous")


class Hub:
    def __init__(self, catalog: Catalog, limits: Limits, backplane: Backplane) -> None:
        self.catalog, self.limits, self.backplane = catalog, limits, backplane
        self.connections: set[Connection] = set()
        self.per_owner: dict[str, int] = {}
        self.subscribers: dict[str, set[Connection]] = {}
        self.history: OrderedDict[str, deque[Push]] = OrderedDict()
        self._ids = itertools.count(1)
        self._instance = os.urandom(4).hex()  # ids assigned here never collide with another instance's

    # -- connections ----------------------------------------------------------
    def open(self, identity: Mapping[str, Any], transport: str) -> Connection | GatewayError:
        owner = owner_of(identity)
        if len(self.connections) >= self.limits.connections:
            REFUSED.labels(transport, "TOO_MANY_CONNECTIONS").inc()
            return GatewayError(503, "TOO_MANY_CONNECTIONS", "This worker holds as many connections as it may.")
        if self.per_owner.get(owner, 0) >= self.limits.per_identity:
            REFUSED.labels(transport, "TOO_MANY_CONNECTIONS").inc()
            return GatewayError(
                429, "TOO_MANY_CONNECTIONS", f"At most {self.limits.per_identity} connections per identity."
            )
        # kept for the connection's life: the fields subscriptions are checked against, not the token's claims
        kept = {k: v for k, v in identity.items() if k != "claims" and v not in (None, "", [])}
        conn = Connection(kept, owner, transport, self.limits.queue, self.limits.slow_consumer)
        self.connections.add(conn)
        self.per_owner[owner] = self.per_owner.get(owner, 0) + 1
        CONNECTIONS.labels(transport).inc()
        return conn

    def close(self, conn: Connection, why: Closed | None = None) -> None:
        if conn not in self.connections:
            return
        conn.close(why or Closed(1000, "CLOSED"))
        self.connections.discard(conn)
        left = self.per_owner.get(conn.owner, 1) - 1
        if left > 0:
            self.per_owner[conn.owner] = left
        else:
            self.per_owner.pop(conn.owner, None)
        for name in conn.channels:
            listeners = self.subscribers.get(name)
            if listeners is not None:
                listeners.discard(conn)
                if not listeners:
                    del self.subscribers[name]
        conn.channels.clear()
        CONNECTIONS.labels(conn.transport).dec()

    def close_all(self, why: Closed) -> None:
        for conn in list(self.connections):
            self.close(conn, why)

    # -- subscriptions --------------------------------------------------------
    def subscribe(self, conn: Connection, name: Any) -> Channel | GatewayError:
        found = self.catalog.authorize(conn.identity, name)
        if isinstance(found, GatewayError):
            REFUSED.labels(conn.transport, found.code).inc()
            return found
        if name not in conn.channels and len(conn.channels) >= self.limits.subscriptions:
            REFUSED.labels(conn.transport, "TOO_MANY_SUBSCRIPTIONS").inc()
            return GatewayError(
                429, "TOO_MANY_SUBSCRIPTIONS", f"At most {self.limits.subscriptions} channels per connection."
            )
        conn.channels.add(name)
        self.subscribers.setdefault(name, set()).add(conn)
        return found

    def unsubscribe(self, conn: Connection, name: Any) -> bool:
        if name not in conn.channels:
            return False
        conn.channels.discard(name)
        listeners = self.subscribers.get(name)
        if listeners is not None:
            listeners.discard(conn)
            if not listeners:
                del self.subscribers[name]
        return True

    # -- messages -------------------------------------------------------------
    def publish(self, channel: str, event: str, data: Any, *, id: str | None = None, shared: bool = False) -> None:
        """``shared``: every instance reads this message itself, so it is not carried to the others."""
        push = Push(id or f"{self._instance}-{next(self._ids)}", channel, event, data)
        if shared:
            self.deliver(push)
        else:
            self.backplane.send(push)

    async def publish_durably(self, channel: str, event: str, data: Any) -> None:
        """``publish`` through the backplane, awaited: raises when it did not reach it."""
        await self.backplane.send_now(Push(f"{self._instance}-{next(self._ids)}", channel, event, data))

    def deliver(self, push: Push) -> None:
        found = self.catalog.resolve(push.channel)
        if found is None:
            return
        channel, _ = found
        if channel.history:
            kept = self.history.get(push.channel)
            if kept is None:
                kept = self.history[push.channel] = deque(maxlen=channel.history)
                if len(self.history) > self.limits.history_channels:
                    self.history.popitem(last=False)
            else:
                self.history.move_to_end(push.channel)
            kept.append(push)
        for conn in tuple(self.subscribers.get(push.channel, ())):
            conn.offer(push)
            if conn.closed is not None:  # overflowed under the disconnect policy: it leaves every channel now
                self.close(conn, conn.closed)

    def since(self, channel: str, last_id: str | None) -> list[Push]:
        """What the channel's history holds after ``last_id`` (all of it when that id is unknown or too old)."""
        kept = list(self.history.get(channel, ()))
        if last_id:
            for i, push in enumerate(kept):
                if push.id == last_id:
                    return kept[i + 1 :]
        return kept
