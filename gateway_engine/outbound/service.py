"""One config's outbound webhooks at run time: the store handle, the dispatcher and the emit path.

Emitting is one row in the outbox, written with the emits of the same moment (``writer.py``, bounded by
a timeout); the message is also handed to the
in-process event seam under its type, so realtime channels see the same event. A message that
arrives from the seam (an inbound webhook's ``emit`` action) is written to the outbox the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Awaitable, Mapping
from typing import TYPE_CHECKING, Any

from gateway_engine.compiled.model import StateKey
from gateway_engine.foundation import events
from gateway_engine.foundation.plugin import GatewayInfo
from gateway_engine.store import LazyStore, store_settings

from . import metrics
from .catalog import Catalog
from .payload import TooLarge, message_row
from .settings import DeliverySettings

if TYPE_CHECKING:  # the store and what runs on it load on first use: SQLAlchemy costs ~28 MB per worker
    from gateway_engine.store import Store

    from .dispatcher import Dispatcher
    from .writer import GroupCommit

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
        self._store = LazyStore(lambda: store_settings(gateway.settings, gateway.config_dir))
        self.dispatcher: Dispatcher | None = None  # while the ``outbound`` worker runs in this process
        self._standby: Dispatcher | None = None  # sends test deliveries where no dispatcher runs
        self._unsubscribe: list[Any] = []
        self._pending: set[asyncio.Task] = set()
        self._writer: GroupCommit[dict[str, Any]] | None = None  # batches the emits of this config (``writer.py``)

    async def store(self) -> Store:
        """The store, acquired (and migrated) on first use; raises while it cannot be reached."""
        return await self._store.get()

    async def start(self) -> None:
        """Subscribe to the seam and open the store; a store that is down is opened on first use instead."""
        _active.append(self)
        for name in self.catalog.types:
            self._unsubscribe.append(events.subscribe(name, self._from_seam))
            self._unsubscribe.append(events.subscribe_durable(name, self._durably))
        try:
            await asyncio.wait_for(self.store(), EMIT_TIMEOUT)
        except Exception as exc:  # the gateway serves its routes all the same; emits are counted as failed
            log.error("outbound webhooks: the store cannot be opened (%s); retrying", type(exc).__name__)

    async def run_dispatcher(self, _config: Any, _options: Mapping[str, Any], stop: asyncio.Event) -> None:
        """The ``outbound`` worker: this config's dispatcher until ``stop``; a store that is down is waited for."""
        from .dispatcher import Dispatcher

        delay = 1.0
        while True:
            try:
                store = await asyncio.wait_for(self.store(), EMIT_TIMEOUT)
                break
            except Exception:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                if stop.is_set():
                    return
                delay = min(30.0, delay * 2)
        dispatcher = self.dispatcher = Dispatcher(store.engine, self.settings, self.emit, store.transact)
        dispatcher.start()
        try:
            await stop.wait()
        finally:
            self.dispatcher = None
            await dispatcher.stop()

    async def stop(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()
        if self in _active:
            _active.remove(self)
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
        if self._writer is not None:
            await self._writer.close()
        if self._standby is not None:
            await self._standby.stop()
            self._standby = None
        await self._store.close()

    def standby(self, engine: Any) -> Dispatcher:
        """A dispatcher that is not running, for sending one attempt now."""
        from .dispatcher import Dispatcher

        if self._standby is None:
            self._standby = Dispatcher(engine, self.settings, self.emit)
        return self._standby

    async def emit(
        self, tenant: str, event_type: str, data: Any, *, publish: bool = True, checked: bool = False
    ) -> str | None:
        """Write the event to the outbox (one insert); the message id, or None when it was not written.

        ``checked``: the data was validated against the event's schema already (a constant, at load)."""
        try:
            return await self.write(tenant, event_type, data, publish=publish, checked=checked)
        except NotWritten:
            return None

    async def write(
        self,
        tenant: str,
        event_type: str,
        data: Any,
        *,
        publish: bool = True,
        key: str | None = None,
        checked: bool = False,
    ) -> str:
        """Write the event to the outbox and return its message id; NotWritten (logged, counted) when it is not.

        A ``key`` (an inbound webhook's source and event id) makes the write idempotent: the same key
        for the same tenant and type is the same message, written once however often it is retried.
        """
        problem = None if checked else self.catalog.problem(event_type, data)
        if problem is not None:
            metrics.EMITTED.labels("invalid").inc()
            log.error("event not emitted: %s", problem)
            raise NotWritten(problem)
        try:
            store = self._store.ready
            if store is None:
                store = await asyncio.wait_for(self.store(), EMIT_TIMEOUT)
            if key:  # rare (inbound webhooks): its own transaction, which tolerates the row being there
                from .outbox import insert_message

                message_id = keyed_id(tenant, event_type, key)
                written = asyncio.ensure_future(
                    insert_message(
                        store.engine, tenant, event_type, data, limit=self.settings.max_payload, message_id=message_id
                    )
                )
                written.add_done_callback(_settled)
                # shielded: a write cut off mid-transaction would leave SQLite locked; one that lands after
                # the timeout is found again by its key when the sender retries
                await asyncio.wait_for(asyncio.shield(written), EMIT_TIMEOUT)
                self._committed(1)
            else:  # a route's emit: in the next batch (group commit)
                row = message_row(tenant, event_type, data, limit=self.settings.max_payload)
                message_id = row["id"]
                await self._writer_for(store).submit(row)  # bounded by EMIT_TIMEOUT per batch
        except TooLarge as exc:
            metrics.EMITTED.labels("too_large").inc()
            log.error("event %s for tenant %s not emitted: %s", event_type, tenant, exc)
            raise NotWritten(str(exc)) from None
        except Exception as exc:  # the store is down or slow: the client's answer is unaffected
            metrics.EMITTED.labels("failed").inc()
            log.error("event %s for tenant %s not written to the outbox: %s", event_type, tenant, type(exc).__name__)
            raise NotWritten("the outbox cannot be written") from None
        metrics.WRITTEN.inc()
        if publish:
            headers = {TENANT_HEADER: tenant, WRITTEN_HEADER: message_id}
            events.publish(events.Message(event_type, data, key=message_id, headers=headers))
        return message_id

    def _writer_for(self, store: Store) -> GroupCommit[dict[str, Any]]:
        if self._writer is None or self._writer.transact != store.transact:
            from .writer import outbox_writer

            self._writer = outbox_writer(store.transact, self._committed, EMIT_TIMEOUT)
        return self._writer

    def _committed(self, _count: int) -> None:
        """Events are in the outbox: one wake-up of this process's dispatcher per committed batch."""
        if self.dispatcher is not None:
            self.dispatcher.wake()

    async def _durably(self, message: events.Message) -> None:
        """A message ``deliver``-ed under an event type (a workflow step's ``emit:``): written, or raises.

        Its key (the step's run and position) makes a retried activity write nothing new."""
        if not _active or _active[-1] is not self:
            return  # the newest config's service writes it
        tenant = message.headers.get(TENANT_HEADER)
        if not tenant:
            raise ValueError(f"event {message.topic} has no {TENANT_HEADER!r} header")
        try:
            await self.write(tenant, message.topic, message.value, publish=False, key=message.key)
        except NotWritten as exc:
            raise RuntimeError(f"event {message.topic} was not written to the outbox (see the log)") from exc

    def _from_seam(self, message: events.Message) -> Awaitable[Any] | None:
        """A message another part of the gateway published under an event type: into the outbox.

        Returns the write, which ``events.publish_and_wait`` awaits: an inbound webhook is answered
        2xx only once its event is in the outbox, and its message key makes a retry write nothing new."""
        if WRITTEN_HEADER in message.headers or not _active or _active[-1] is not self:
            return None  # written already, or the newest config's service writes it
        tenant = message.headers.get(TENANT_HEADER)
        if not tenant:
            log.error("event %s from the event seam has no %r header: not emitted", message.topic, TENANT_HEADER)
            raise NotWritten(f"event {message.topic} has no {TENANT_HEADER!r} header")
        write = self.write(tenant, message.topic, message.value, publish=False, key=message.key)
        task = asyncio.get_running_loop().create_task(write)
        self._pending.add(task)
        task.add_done_callback(_settled)
        task.add_done_callback(self._pending.discard)
        return task


def _settled(task: "asyncio.Task[Any]") -> None:
    """A seam write nobody awaited (a plain ``publish``): its failure was logged and counted already."""
    if not task.cancelled():
        task.exception()


def keyed_id(tenant: str, event_type: str, key: str) -> str:
    """The message id of a keyed event: the same tenant, type and key give the same id."""
    digest = hashlib.sha256(f"{tenant}\0{event_type}\0{key}".encode()).hexdigest()
    return f"msg_{digest[:24]}"


class NotWritten(Exception):
    """An event that did not reach the outbox (invalid, too large, or the store failed)."""


#: the config's outbound service: ``config.state(OUTBOUND)``
OUTBOUND: StateKey[Outbound] = StateKey("outbound")
