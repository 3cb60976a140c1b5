"""Asynchronous results in the store, so a result accepted on one worker or instance is fetched on any other.

A ``Prefer: respond-async`` request writes a ``pending`` row before its message is produced; the worker
that reads the reply completes the row. Every read checks the caller (a hash of the owner, compared in
constant time) and the retention (``expires_at``, wall-clock seconds, so every process agrees); expired
rows are deleted by whichever worker sweeps next. A result is at most the reply's ``max_bytes``: a larger
reply is kept as its 502 error, never as its body.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from typing import Any

import orjson
import sqlalchemy as sa

from gateway_engine.foundation.errors import GatewayError
from gateway_engine.store import LazyStore, StoreSettings

from .replies import Outcome, StoredReply

log = logging.getLogger("gateway_engine.kafka")

metadata = sa.MetaData()
results = sa.Table(
    "kafka_results",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),  # the correlation id, as in the Location
    sa.Column("owner", sa.String(64), nullable=False),  # sha256 of who may read it
    sa.Column("state", sa.String(10), nullable=False),  # pending, reply, error
    sa.Column("status", sa.Integer, nullable=False),
    sa.Column("headers", sa.Text, nullable=False),  # JSON: reply headers, or the error's code and message
    sa.Column("body", sa.LargeBinary, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False, index=True),
)

PENDING = "pending"
MAX_ID = 64  # a longer id in a result URL is no id of ours: 404 without a query
_SWEEP_EVERY = 30.0  # seconds between deletions of expired rows, per worker
_STORE_TIMEOUT = 5.0
_POLL_FIRST, _POLL_MAX = 0.05, 0.5  # seconds between looks while a caller waits (``Prefer: wait=N``)


def unavailable() -> GatewayError:
    return GatewayError(503, "RESULTS_UNAVAILABLE", "The result store cannot be reached; retry later.")


def _owner_hash(owner: str) -> str:
    return hashlib.sha256(owner.encode()).hexdigest()


class SharedResults:
    """The ``kafka_results`` table of one store; opened (and migrated) on first use."""

    def __init__(self, settings: StoreSettings, retention: float) -> None:
        self.retention = retention
        self._store = LazyStore(lambda: settings)
        self._swept = 0.0
        self._writes: set[asyncio.Task[None]] = set()

    async def _engine(self) -> Any:
        return (await self._store.get()).engine

    async def accept(self, cid: str, owner: str) -> None:
        """A pending row for ``cid`` (replacing an older one); 503 when the store cannot be reached."""
        now = time.time()
        row = {"id": cid, "owner": _owner_hash(owner), "state": PENDING, "status": 202, "headers": "[]"}
        try:
            async with asyncio.timeout(_STORE_TIMEOUT):
                engine = await self._engine()
                async with engine.begin() as conn:
                    await conn.execute(results.delete().where(results.c.id == cid))
                    await conn.execute(results.insert().values(**row, body=b"", expires_at=now + self.retention))
                    if now - self._swept >= _SWEEP_EVERY:
                        self._swept = now
                        await conn.execute(results.delete().where(results.c.expires_at < now))
        except GatewayError:
            raise
        except Exception as exc:
            log.error("kafka: an asynchronous request could not be recorded (%s)", type(exc).__name__)
            raise unavailable() from None

    def complete(self, cid: str, outcome: Outcome) -> None:
        """Record the reply of ``cid`` (in the background: the reply reader never waits on the store)."""
        task = asyncio.get_running_loop().create_task(self._complete(cid, outcome))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _complete(self, cid: str, outcome: Outcome) -> None:
        if isinstance(outcome, GatewayError):
            values: dict[str, Any] = {"state": "error", "status": outcome.status, "body": b""}
            values["headers"] = orjson.dumps({"code": outcome.code, "message": outcome.message}).decode()
        else:
            values = {"state": "reply", "status": outcome.status, "body": outcome.body}
            values["headers"] = orjson.dumps([list(h) for h in outcome.headers]).decode()
        values["expires_at"] = time.time() + self.retention
        for attempt in range(3):
            try:
                async with asyncio.timeout(_STORE_TIMEOUT):
                    engine = await self._engine()
                    async with engine.begin() as conn:
                        await conn.execute(results.update().where(results.c.id == cid).values(**values))
                return
            except Exception as exc:
                log.warning("kafka: result %s not recorded yet (%s)", cid[:8], type(exc).__name__)
                await asyncio.sleep(1.0 * (attempt + 1))
        log.error("kafka: result %s could not be recorded; it is answered only by the worker that read it", cid[:8])

    async def fetch(self, cid: str, owner: str) -> Outcome | str | None:
        """The outcome, ``PENDING``, or None (unknown, expired, or someone else's: the caller cannot tell)."""
        if not cid or len(cid) > MAX_ID:
            return None
        try:
            async with asyncio.timeout(_STORE_TIMEOUT):
                engine = await self._engine()
                async with engine.connect() as conn:
                    found = (await conn.execute(sa.select(results).where(results.c.id == cid))).first()
        except Exception as exc:
            log.error("kafka: a result could not be read (%s)", type(exc).__name__)
            raise unavailable() from None
        if found is None or found.expires_at < time.time():
            return None
        if not hmac.compare_digest(found.owner, _owner_hash(owner)):
            return None
        if found.state == PENDING:
            return PENDING
        if found.state == "error":
            error = orjson.loads(found.headers)
            return GatewayError(found.status, str(error.get("code")), str(error.get("message")))
        headers = tuple((str(k), str(v)) for k, v in orjson.loads(found.headers))
        return StoredReply(found.status, headers, bytes(found.body))

    async def wait(self, cid: str, owner: str, seconds: float) -> Outcome | str | None:
        """``fetch`` again until the result is there or ``seconds`` have passed (``Prefer: wait=N``)."""
        loop = asyncio.get_running_loop()
        deadline, pause = loop.time() + seconds, _POLL_FIRST
        found = await self.fetch(cid, owner)
        while found == PENDING and loop.time() + pause <= deadline:
            await asyncio.sleep(pause)
            pause = min(_POLL_MAX, pause * 2)
            found = await self.fetch(cid, owner)
        return found

    async def aclose(self) -> None:
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)
        await self._store.close()
