"""One config's outbound webhooks at run time: the store handle, the dispatcher and the emit path.

Emitting is one insert into the outbox (bounded by a timeout); the message is also handed to the
in-process event seam under its type, so realtime channels see the same event. A message that
arrives from the seam (an inbound webhook's ``emit`` action) is written to the outbox the same way.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from gateway_engine.compiled.model import StateKey
from gateway_engine.foundation import events
from gateway_engine.foundation.plugin import GatewayInfo

from . import metrics
from .catalog import Catalog
from .settings import DeliverySettings

if TYPE_CHECKING:  # the store and what runs on it load on first use: SQLAlchemy costs ~28 MB per worker
    from gateway_engine.store import Store

    from .dispatcher import Dispatcher

log = logging.getLogger("gateway_engine.outbound")
EMIT_TIMEOUT = 5.0
TENANT_HEADER = events.TENANT_HEADER  # the seam message header naming the tenant an event belongs to
WRITTEN_HEADER = "outbox-message-id"  # set on what this feature publishes: already in the outbox
_active: list["Outbound"] = []  # the services started in this process, newest last (a reload overlaps two)


class Outbound:
    def __init__(self, catalog: Catalog, settings: DeliverySettings, gateway: GatewayInfo) -> None:
        self.catalog = catalog
        self.settings = settings
        self.gateway = gateway
        self._store: Store | None = None  # once acquired and migrated
        self._handle: Store | None = None  # acquired (released on stop)
        self._opener: asyncio.Task | None = None  # retries opening a store that was down at start
        self._opening = asyncio.Lock()
        self.dispatcher: Dispatcher | None = None
        self._standby: Dispatcher | None = None  # sends test deliveries where no dispatcher runs
        self._unsubscribe: list[Any] = []
        self._pending: set[asyncio.Task] = set()

    async def store(self) -> Store:
        """The store, acquired (and migrated) on first use; raises while it cannot be reached."""
        if self._store is None:
            from gateway_engine.store import acquire_store, ensure_migrated, store_settings

            async with self._opening:
                if self._store is None:
                    if self._handle is None:
                        self._handle = acquire_store(store_settings(self.gateway.settings, self.gateway.config_dir))
                    await ensure_migrated(self._handle)
                    self._store = self._handle
        return self._store

    async def start(self) -> None:
        """Subscribe to the seam and start the dispatcher; a store that is down delays only the dispatcher."""
        _active.append(self)
        for name in self.catalog.types:
            self._unsubscribe.append(events.subscribe(name, self._from_seam))
            self._unsubscribe.append(events.subscribe_durable(name, self._durably))
        try:
            store = await asyncio.wait_for(self.store(), EMIT_TIMEOUT)
        except Exception as exc:  # the gateway serves its routes all the same; emits are counted as failed
            log.error("outbound webhooks: the store cannot be opened (%s); retrying", type(exc).__name__)
            self._opener = asyncio.get_running_loop().create_task(self._open_later())
            return
        self._dispatch(store)

    def _dispatch(self, store: Store) -> None:
        from .dispatcher import Dispatcher

        if self.settings.dispatch:
            self.dispatcher = Dispatcher(store.engine, self.settings, self.emit)
            self.dispatcher.start()

    async def _open_later(self) -> None:
        delay = 1.0
        while True:
            await asyncio.sleep(delay)
            try:
                store = await asyncio.wait_for(self.store(), EMIT_TIMEOUT)
            except Exception:
                delay = min(30.0, delay * 2)
                continue
            log.warning("outbound webhooks: the store is open; delivering")
            self._dispatch(store)
            return

    async def stop(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()
        if self in _active:
            _active.remove(self)
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
        if self.dispatcher is not None:
            await self.dispatcher.stop()
            self.dispatcher = None
        if self._standby is not None:
            await self._standby.stop()
            self._standby = None
        if self._opener is not None:
            self._opener.cancel()
            await asyncio.gather(self._opener, return_exceptions=True)
            self._opener = None
        if self._handle is not None:
            from gateway_engine.store import release_store

            store, self._handle, self._store = self._handle, None, None
            await release_store(store)

    def standby(self, engine: Any) -> Dispatcher:
        """A dispatcher that is not running, for sending one attempt now."""
        from .dispatcher import Dispatcher

        if self._standby is None:
            self._standby = Dispatcher(engine, self.settings, self.emit)
        return self._standby

    async def emit(self, tenant: str, event_type: str, data: Any, *, publish: bool = True) -> str | None:
        """Write the event to the outbox (one insert); the message id, or None when it was not written."""
        from .outbox import TooLarge, insert_message

        problem = self.catalog.problem(event_type, data)
        if problem is not None:
            metrics.EMITTED.labels("invalid").inc()
            log.error("event not emitted: %s", problem)
            return None
        try:
            store = await asyncio.wait_for(self.store(), EMIT_TIMEOUT)
            written = insert_message(store.engine, tenant, event_type, data, limit=self.settings.max_payload)
            message_id, _ = await asyncio.wait_for(written, EMIT_TIMEOUT)
        except TooLarge as exc:
            metrics.EMITTED.labels("too_large").inc()
            log.error("event %s for tenant %s not emitted: %s", event_type, tenant, exc)
            return None
        except Exception as exc:  # the store is down or slow: the client's answer is unaffected
            metrics.EMITTED.labels("failed").inc()
            log.error("event %s for tenant %s not written to the outbox: %s", event_type, tenant, type(exc).__name__)
            return None
        metrics.EMITTED.labels("written").inc()
        if self.dispatcher is not None:
            self.dispatcher.wake()
        if publish:
            headers = {TENANT_HEADER: tenant, WRITTEN_HEADER: message_id}
            events.publish(events.Message(event_type, data, key=message_id, headers=headers))
        return message_id

    async def _durably(self, message: events.Message) -> None:
        """A message ``deliver``-ed under an event type (a workflow step's ``emit:``): written, or raises."""
        if not _active or _active[-1] is not self:
            return  # the newest config's service writes it
        tenant = message.headers.get(TENANT_HEADER)
        if not tenant:
            raise ValueError(f"event {message.topic} has no {TENANT_HEADER!r} header")
        if await self.emit(tenant, message.topic, message.value, publish=False) is None:
            raise RuntimeError(f"event {message.topic} was not written to the outbox (see the log)")

    def _from_seam(self, message: events.Message) -> None:
        """A message another part of the gateway published under an event type: into the outbox."""
        if WRITTEN_HEADER in message.headers or not _active or _active[-1] is not self:
            return  # written already, or the newest config's service writes it
        tenant = message.headers.get(TENANT_HEADER)
        if not tenant:
            log.error("event %s from the event seam has no %r header: not emitted", message.topic, TENANT_HEADER)
            return
        task = asyncio.get_running_loop().create_task(self.emit(tenant, message.topic, message.value, publish=False))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)


#: the config's outbound service: ``config.state(OUTBOUND)``
OUTBOUND: StateKey[Outbound] = StateKey("outbound")
