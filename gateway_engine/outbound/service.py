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
import operator
import time
from collections.abc import Awaitable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from gateway_engine.compiled.model import StateKey
from gateway_engine.foundation import events
from gateway_engine.foundation.plugin import GatewayInfo
from gateway_engine.store import LazyStore, store_settings

from . import metrics
from .catalog import Catalog
from .payload import Outgoing, TooLarge, outgoing
from .settings import DeliverySettings

if TYPE_CHECKING:  # the store and what runs on it load on first use: SQLAlchemy costs ~28 MB per worker
    from gateway_engine.store import Store

    from .dispatcher import Dispatcher
    from .writer import GroupCommit

log = logging.getLogger("gateway_engine.outbound")
EMIT_TIMEOUT = 5.0
TENANT_HEADER = events.TENANT_HEADER  # the seam message header naming the tenant an event belongs to
WRITTEN_HEADER = "outbox-message-id"  # set on what this feature publishes: already in the outbox
_EVENT_TYPE = operator.attrgetter("event_type")
_DELIVERIES = operator.attrgetter("deliveries")
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
        self._writer: GroupCommit[Outgoing] | None = None  # batches the emits of this config (``writer.py``)
        self._writer_store: Store | None = None  # the store ``_writer`` writes to
        self._backlog_logged = 0.0  # when a full writer queue was last logged (at most once a second)

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

    def emit_soon(self, tenant: str, event_type: str, data: Any, data_json: str | None = None) -> None:
        """A route's emit: queued for the next outbox batch, returning at once (the client has its answer).

        ``data_json``: a constant's, serialised and checked against the schema and ``max_payload`` at
        load (``data`` is then ``payload.UNPARSED``). The batch's outcome is counted and logged by ``_written`` and
        ``_not_written``; a store not opened yet is waited for by a task of its own."""
        try:
            if data_json is not None:
                item = Outgoing(tenant, event_type, data, data_json, time.time(), True)
            else:
                item = self._outgoing(tenant, event_type, data, False, True)
        except NotWritten:  # invalid or too large: counted and logged
            return
        store = self._store.ready
        if store is None:
            task = asyncio.get_running_loop().create_task(self._write_item(item))
            self._pending.add(task)
            task.add_done_callback(_settled)
            task.add_done_callback(self._pending.discard)
            return
        writer = self._writer  # the store's writer, made once (``_writer_for``), looked up here without a call
        if writer is None or self._writer_store is not store:
            writer = self._writer_for(store)
        if not writer.enqueue(item):
            metrics.EMITTED.labels("backlog").inc()
            self._backlog_logged = _log_backlog(self._backlog_logged, writer.max_queued, event_type, tenant)

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
        if not key:  # in the next batch (group commit)
            return await self._write_item(self._outgoing(tenant, event_type, data, checked, publish))
        if not checked:
            self._check(event_type, data)
        message_id = keyed_id(tenant, event_type, key)
        try:  # rare (inbound webhooks): its own transaction, which tolerates the row being there
            from .outbox import insert_message

            store = await self._ready_store()
            written = asyncio.ensure_future(
                insert_message(
                    store.engine, tenant, event_type, data, limit=self.settings.max_payload, message_id=message_id
                )
            )
            written.add_done_callback(_settled)
            # shielded: a write cut off mid-transaction would leave SQLite locked; one that lands after
            # the timeout is found again by its key when the sender retries
            await asyncio.wait_for(asyncio.shield(written), EMIT_TIMEOUT)
        except TooLarge as exc:
            raise self._too_large(event_type, tenant, exc) from None
        except Exception as exc:  # the store is down or slow: the client's answer is unaffected
            self._not_written([Outgoing(tenant, event_type, data, "", 0.0, publish)], exc)
            raise NotWritten("the outbox cannot be written") from None
        item = Outgoing(tenant, event_type, data, "", 0.0, publish)
        item.id = message_id
        self._written([item])
        if self.dispatcher is not None:  # a keyed message is fanned out by the dispatcher
            self.dispatcher.wake()
        return message_id

    async def _ready_store(self) -> Store:
        store = self._store.ready
        return store if store is not None else await asyncio.wait_for(self.store(), EMIT_TIMEOUT)

    def _check(self, event_type: str, data: Any) -> None:
        problem = self.catalog.problem(event_type, data)
        if problem is not None:
            metrics.EMITTED.labels("invalid").inc()
            log.error("event not emitted: %s", problem)
            raise NotWritten(problem)

    def _outgoing(self, tenant: str, event_type: str, data: Any, checked: bool, publish: bool) -> Outgoing:
        """A valid event for the next batch (NotWritten, counted and logged, when it is invalid or too large)."""
        if not checked:
            self._check(event_type, data)
        try:
            return outgoing(tenant, event_type, data, limit=self.settings.max_payload, publish=publish)
        except TooLarge as exc:
            raise self._too_large(event_type, tenant, exc) from None

    def _too_large(self, event_type: str, tenant: str, exc: TooLarge) -> NotWritten:
        metrics.EMITTED.labels("too_large").inc()
        log.error("event %s for tenant %s not emitted: %s", event_type, tenant, exc)
        return NotWritten(str(exc))

    async def _write_item(self, item: Outgoing) -> str:
        """``item`` in the next batch; returns its message id once it committed (NotWritten when it did not)."""
        try:
            store = await self._ready_store()
            await self._writer_for(store).submit(item)  # bounded by EMIT_TIMEOUT per batch
        except Exception as exc:  # the store is down or slow: the client's answer is unaffected
            self._not_written([item], exc)
            raise NotWritten("the outbox cannot be written") from None
        return item.id

    def _writer_for(self, store: Store) -> GroupCommit[Outgoing]:
        if self._writer is None or self._writer_store is not store:
            from .writer import outbox_writer

            first, linger = self.settings.schedule[0], self.settings.write_linger
            self._writer = outbox_writer(store, self._written, self._not_written, EMIT_TIMEOUT, first, linger)
            self._writer_store = store
        return self._writer

    def _written(self, batch: Sequence[Outgoing]) -> None:
        """Events are in the outbox: counted, published on the seam where anything else listens (realtime
        channels), and one wake-up of this process's dispatcher per committed batch that made deliveries
        (one that made none gave it nothing to do: waking it cost two transactions a batch for nothing)."""
        metrics.WRITTEN.inc(len(batch))
        topics = set(map(_EVENT_TYPE, batch))  # the passes over a batch run in C: a batch is hundreds of emits
        listened = {topic for topic in topics if events.listened(topic, besides=self._from_seam)}
        for item in batch if listened else ():
            if item.publish and item.event_type in listened:
                headers = {TENANT_HEADER: item.tenant, WRITTEN_HEADER: item.id}
                events.publish(events.Message(item.event_type, item.value(), key=item.id, headers=headers))
        if self.dispatcher is not None and any(map(_DELIVERIES, batch)):
            self.dispatcher.wake()

    def _not_written(self, batch: Sequence[Outgoing], exc: Exception) -> None:
        """Events the store did not take (down, slow, locked): counted and logged, the answers are out already."""
        metrics.EMITTED.labels("failed").inc(len(batch))
        first = batch[0]
        log.error(
            "%d event(s) (%s for tenant %s, ...) not written to the outbox: %s",
            len(batch),
            first.event_type,
            first.tenant,
            type(exc).__name__,
        )

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


def _log_backlog(last: float, queued: int, event_type: str, tenant: str) -> float:
    """Log a refused emit unless one was logged in the last second; returns when one was last logged."""
    now = time.monotonic()
    if now - last < 1.0:
        return last
    log.error(
        "event %s for tenant %s not emitted: %d events are waiting for the outbox already (the store is slower "
        "than the emits; further refusals are counted, logged at most once a second)",
        event_type,
        tenant,
        queued,
    )
    return now


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
