"""Key usage: counted in memory per request, written in batches (one upsert per key and day per flush).

Counts are exact once flushed: a flush swaps the pending counters out and adds them to
the stored ones; a failed write puts them back for the next flush. ``current_minute``
answers the monitoring endpoint from memory (this process's view of each key's window).
"""

from __future__ import annotations

import functools
import time
from collections import defaultdict
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway_engine.store import Store

from .metrics import FLUSH_FAILURES
from .tables import api_keys, key_usage


def day_of(moment: float) -> str:
    """The UTC date of ``moment`` (``YYYY-MM-DD``), formatted once per day: it is asked on every request."""
    return _date(int(moment // 86_400))


@functools.lru_cache(maxsize=8)
def _date(day: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(day * 86_400))


class UsageRecorder:
    def __init__(self) -> None:
        self._counts: defaultdict[tuple[str, str], int] = defaultdict(int)
        self._last_used: dict[str, float] = {}
        self._minute: dict[str, list[float]] = {}  # key id -> [window start, count] of the current minute

    def count(self, key_id: str, now: float) -> None:
        self._counts[(key_id, day_of(now))] += 1
        self._last_used[key_id] = now
        window = self._minute.get(key_id)
        start = now - now % 60
        if window is None or window[0] != start:
            if len(self._minute) > 100_000:
                self._minute.clear()
            window = self._minute[key_id] = [start, 0]
        window[1] += 1

    def current_minute(self, key_id: str, now: float) -> tuple[int, float]:
        """Requests this process counted for the key in the current minute, and when that window ends."""
        start = now - now % 60
        window = self._minute.get(key_id)
        return (int(window[1]) if window is not None and window[0] == start else 0), start + 60

    async def flush(self, store: Store) -> None:
        if not self._counts and not self._last_used:
            return
        counts, self._counts = self._counts, defaultdict(int)
        last_used, self._last_used = self._last_used, {}
        try:
            async with store.engine.begin() as conn:
                await _add_counts(conn, store.dialect, counts)
                for key_id, moment in last_used.items():
                    await conn.execute(
                        api_keys.update()
                        .where(
                            api_keys.c.id == key_id,
                            sa.or_(api_keys.c.last_used_at.is_(None), api_keys.c.last_used_at < moment),
                        )
                        .values(last_used_at=moment)
                    )
        except Exception:
            FLUSH_FAILURES.labels("usage").inc()
            for key, n in counts.items():
                self._counts[key] += n
            for key_id, moment in last_used.items():
                self._last_used[key_id] = max(moment, self._last_used.get(key_id, 0.0))
            raise


async def _add_counts(conn: AsyncConnection, dialect: str, counts: dict[tuple[str, str], int]) -> None:
    rows = [{"key_id": k, "day": d, "count": n} for (k, d), n in counts.items()]
    if not rows:
        return
    insert: Any = postgresql.insert(key_usage) if dialect == "postgresql" else sqlite.insert(key_usage)
    statement = insert.on_conflict_do_update(
        index_elements=[key_usage.c.key_id, key_usage.c.day], set_={"count": key_usage.c.count + insert.excluded.count}
    )
    await conn.execute(statement, rows)


async def usage_of(conn: AsyncConnection, key_id: str, days: int) -> dict[str, Any]:
    """Totals, per-day counts of the last ``days`` days (UTC) and when the key was last used (one read)."""
    since = day_of(time.time() - (days - 1) * 86_400)
    rows = (
        await conn.execute(
            sa.select(key_usage.c.day, key_usage.c.count).where(key_usage.c.key_id == key_id).order_by(key_usage.c.day)
        )
    ).all()
    return {
        "total": sum(int(n) for _, n in rows),
        "perDay": [{"day": d, "count": int(n)} for d, n in rows if d >= since],
    }
