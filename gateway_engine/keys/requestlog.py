"""The request log in the store: one row per answered request, queued in memory and written in batches.

Rows hold what an operator needs to answer "what did this tenant do, and what failed":
time, request id, method, path (never the query string), route, status, duration, the
tenant and key ids, consumer and client address. Never a body, a header or a key. The
queue is bounded (``request_log.queue``); rows beyond it are dropped and counted. Rows
older than ``request_log.retention`` are deleted by the flusher.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from gateway_engine.store import Store

from .keyring import iso
from .metrics import FLUSH_FAILURES, LOG_DROPPED
from .tables import request_log

MAX_PAGE = 500
_PRUNE_EVERY = 60.0


class RequestLogWriter:
    def __init__(self, capacity: int, retention: float) -> None:
        self.capacity = capacity
        self.retention = retention
        self._rows: list[dict[str, Any]] = []
        self._pruned_at = 0.0

    def add(self, row: dict[str, Any]) -> None:
        if len(self._rows) >= self.capacity:
            LOG_DROPPED.inc()
            return
        self._rows.append(row)

    async def flush(self, store: Store) -> None:
        rows, self._rows = self._rows, []
        now = time.time()
        try:
            async with store.engine.begin() as conn:
                if rows:
                    await conn.execute(request_log.insert(), rows)
                if now - self._pruned_at >= _PRUNE_EVERY:
                    await conn.execute(request_log.delete().where(request_log.c.at < now - self.retention))
                    self._pruned_at = now
        except Exception:
            FLUSH_FAILURES.labels("request_log").inc()
            self._rows = (rows + self._rows)[: self.capacity]
            raise


FILTERS = ("clientId", "keyId", "route", "method", "status", "since", "until")


async def query(
    conn: AsyncConnection,
    *,
    platform_id: str | None,
    filters: dict[str, Any],
    errors_only: bool,
    limit: int,
    before: int | None,
) -> dict[str, Any]:
    """A page of rows, newest first; ``next`` is the cursor (``before``) of the following page."""
    where = []
    if platform_id is not None:
        where.append(request_log.c.platform_id == platform_id)
    if errors_only:
        where.append(request_log.c.status >= 400)
    columns = {"clientId": "client_id", "keyId": "key_id", "route": "route", "method": "method", "status": "status"}
    for name, column in columns.items():
        if filters.get(name) is not None:
            where.append(request_log.c[column] == filters[name])
    if filters.get("since") is not None:
        where.append(request_log.c.at >= filters["since"])
    if filters.get("until") is not None:
        where.append(request_log.c.at < filters["until"])
    if before is not None:
        where.append(request_log.c.id < before)
    rows = (
        (await conn.execute(request_log.select().where(*where).order_by(request_log.c.id.desc()).limit(limit + 1)))
        .mappings()
        .all()
    )
    page = [dict(r) for r in rows[:limit]]
    return {
        "items": [_public(r) for r in page],
        "next": page[-1]["id"] if len(rows) > limit and page else None,
    }


def _public(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "at": iso(row["at"]),
        "requestId": row["request_id"],
        "method": row["method"],
        "path": row["path"],
        "route": row["route"],
        "status": row["status"],
        "durationMs": row["duration_ms"],
        "platformId": row["platform_id"],
        "clientId": row["client_id"],
        "keyId": row["key_id"],
        "consumer": row["consumer"],
        "ip": row["ip"],
        "errorCode": row["error_code"],
    }
