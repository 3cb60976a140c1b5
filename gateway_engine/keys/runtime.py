"""The key store at run time: the store handle, the verifier and its cache, and the batch flusher.

One ``KeysRuntime`` per compiled config. It opens the store when the server starts
(migrating it under the lock when allowed), subscribes the verifier to the ``keys``
channel, and flushes usage and the request log every ``flush_interval``. Every admin
change goes through ``change``, which commits and then tells every process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from gateway_engine.store import Store, StoreSettings, acquire_store, ensure_migrated, release_store

from . import keyring
from .names import KEYS, RUNTIME  # noqa: F401  (re-exported: what the runtime is looked up by)
from .requestlog import RequestLogWriter
from .settings import KeysSettings
from .usage import UsageRecorder
from .verifier import CHANNEL, StoredKeyVerifier, change_message

log = logging.getLogger("gateway_engine.keys")
_DIGESTS_PER_MESSAGE = 50  # PostgreSQL NOTIFY payloads stay far below their 8000-byte limit


class KeysRuntime:
    def __init__(self, settings: KeysSettings, store_settings: StoreSettings) -> None:
        self.settings = settings
        self.store_settings = store_settings
        self.store: Store | None = None
        self.usage = UsageRecorder()
        self.requests = RequestLogWriter(settings.log_queue, settings.log_retention) if settings.log_enabled else None
        self.verifier = StoredKeyVerifier(settings, self._lookup, self.usage.count)
        self._flusher: asyncio.Task[None] | None = None

    async def start(self) -> None:
        store = acquire_store(self.store_settings)
        try:
            await ensure_migrated(store)
            await store.subscribe(CHANNEL, self.verifier.on_notification)
        except BaseException:
            await release_store(store)
            raise
        self.store = store
        self._flusher = asyncio.create_task(self._flush_forever())

    async def stop(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None
        if self.store is not None:
            store, self.store = self.store, None
            store.unsubscribe(CHANNEL, self.verifier.on_notification)
            with contextlib.suppress(Exception):
                await self._flush(store)
            await release_store(store)

    def require_store(self) -> Store:
        if self.store is None:
            raise RuntimeError("the key store is not open (the gateway has not started)")
        return self.store

    async def _lookup(self, digest: str) -> dict[str, Any] | None:
        async with self.require_store().engine.connect() as conn:
            return await keyring.lookup(conn, digest)

    @contextlib.asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncConnection]:
        async with self.require_store().engine.connect() as conn:
            yield conn

    @contextlib.asynccontextmanager
    async def writing(self) -> AsyncIterator[AsyncConnection]:
        async with self.require_store().engine.begin() as conn:
            yield conn

    async def changed(self, digests: Iterable[str]) -> None:
        """After a committed change: drop the digests here at once, and tell every other process."""
        digests = list(digests)
        self.verifier.forget(digests)
        store = self.require_store()
        for i in range(0, len(digests), _DIGESTS_PER_MESSAGE):
            await store.notify(CHANNEL, change_message(digests[i : i + _DIGESTS_PER_MESSAGE]))

    async def flush(self) -> None:
        """Write pending usage and request-log rows now (tests, shutdown)."""
        await self._flush(self.require_store())

    async def _flush(self, store: Store) -> None:
        await self.usage.flush(store)
        if self.requests is not None:
            await self.requests.flush(store)

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.flush_interval)
            if self.store is None:
                return
            try:
                await self._flush(self.store)
            except Exception as exc:  # kept for the next flush; counted in gateway_keys_flush_failures
                log.warning("key store flush failed (%s)", type(exc).__name__)
