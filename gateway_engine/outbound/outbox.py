"""The outbox's database work: write a message, fan it out, claim due attempts, record their outcome.

Claims are conditional updates (``lease_until`` in the past, re-checked by the UPDATE itself),
with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so instances sharing one database never take
the same attempt; a process that dies holding a lease loses it when the lease runs out.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

import orjson
import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from .payload import compose, message_row, new_id
from .tables import attempts, deliveries, endpoints, messages

if TYPE_CHECKING:
    from .writer import Transact


def matches(patterns: Sequence[str], event_type: str) -> bool:
    """``order.*`` matches ``order.created``; ``*`` matches every event."""
    return any(fnmatchcase(event_type, p) for p in patterns)


async def insert_message(
    engine: AsyncEngine,
    tenant: str,
    event_type: str,
    data: Any,
    *,
    fanned: bool = False,
    limit: int | None = None,
    message_id: str | None = None,
) -> tuple[str, bytes]:
    """One event in its own transaction; returns the message id and body (TooLarge past ``limit`` bytes).

    A given ``message_id`` that is in the outbox already is not written again (an idempotent retry)."""
    row = message_row(tenant, event_type, data, fanned=fanned, limit=limit, message_id=message_id or "")
    message_id, body = row["id"], row["payload"].encode()
    try:
        async with engine.begin() as conn:
            await conn.execute(messages.insert().values(**row))
    except sa.exc.IntegrityError:
        async with engine.connect() as conn:
            found = sa.select(messages).where(messages.c.id == message_id)
            kept = (await conn.execute(found)).first()
        if kept is None:
            raise
        return message_id, body_of_row(kept)
    return message_id, body


def body_of_row(message: Any) -> bytes:
    """The body an ``outbound_messages`` row's attempts send: stored whole, or composed from its data."""
    if message.enveloped:
        return message.payload.encode()
    return compose(message.id, message.event_type, message.payload, message.created_at)


def delivery_row(message_id: str, endpoint_id: str, tenant: str, at: float) -> dict[str, Any]:
    """A new ``outbound_deliveries`` row: pending, first attempt due at ``at``."""
    return {
        "id": new_id("dlv"),
        "message_id": message_id,
        "endpoint_id": endpoint_id,
        "tenant": tenant,
        "status": "pending",
        "attempts": 0,
        "next_at": at,
        "created_at": at,
    }


def subscribed(tenants: Collection[str]) -> sa.Select[tuple[str, str, str]]:
    """The enabled endpoints of ``tenants``: id, tenant and the JSON list of their event patterns."""
    return sa.select(endpoints.c.id, endpoints.c.tenant, endpoints.c.events).where(
        endpoints.c.tenant.in_(sorted(tenants)), endpoints.c.enabled.is_(True)
    )


def deliveries_for(
    written: Iterable[Sequence[Any]], endpoint_rows: Iterable[Sequence[Any]], due: float
) -> list[dict[str, Any]]:
    """A pending delivery (``delivery_row``) for each (message id, tenant, event type) and each endpoint of
    that tenant (``subscribed``' rows) whose patterns match the type; one tenant's never reach another's."""
    patterns: dict[str, list[tuple[str, list[str]]]] = {}
    for endpoint_id, tenant, events in endpoint_rows:
        patterns.setdefault(tenant, []).append((endpoint_id, orjson.loads(events)))
    return [
        delivery_row(message_id, endpoint_id, tenant, due)
        for message_id, tenant, event_type in written
        for endpoint_id, events in patterns.get(tenant, ())
        if matches(events, event_type)
    ]


async def add_delivery(conn: AsyncConnection, message_id: str, endpoint_id: str, tenant: str, at: float) -> str:
    row = delivery_row(message_id, endpoint_id, tenant, at)
    await conn.execute(deliveries.insert(), [row])
    return str(row["id"])


async def fan_out(transact: Transact, first_delay: float, batch: int) -> int:
    """Turn up to ``batch`` messages not fanned out yet (keyed writes: a route's emits are fanned out as they
    are written) into deliveries to the endpoints subscribed then; how many.

    ``transact`` is ``Store.transact`` (one transaction, on SQLite one thread hop for all of it)."""
    return int(await transact(functools.partial(_fan_out, time.time() + first_delay, batch)))


UNFANNED = messages.c.fanned == sa.false()  # the partial index's own condition (``tables``), so it is used


def unfanned(batch: int) -> sa.Select[tuple[str]]:
    """The ids of the oldest ``batch`` messages not fanned out yet, read from the partial index."""
    return sa.select(messages.c.id).where(UNFANNED).order_by(messages.c.created_at).limit(batch)


def _fan_out(due: float, batch: int, conn: Connection) -> int:
    pending = unfanned(batch)
    if conn.dialect.name == "postgresql":
        pending = pending.with_for_update(skip_locked=True)
    claimed = (
        conn.execute(
            sa.update(messages)
            .where(messages.c.id.in_(pending.scalar_subquery()), UNFANNED)
            .values(fanned=True)
            .returning(messages.c.id, messages.c.tenant, messages.c.event_type)
        )
    ).all()
    if not claimed:
        return 0
    made = deliveries_for(claimed, conn.execute(subscribed({row.tenant for row in claimed})).all(), due)
    if made:  # one statement for every delivery of the batch
        conn.execute(deliveries.insert(), made)
    return len(claimed)


_NOW = sa.bindparam("now", type_=sa.Float)  # the time of the claim or the look, given when it runs
FREE = sa.or_(deliveries.c.lease_until.is_(None), deliveries.c.lease_until < _NOW)  # no lease, or one run out
DUE = sa.and_(deliveries.c.status == "pending", deliveries.c.next_at <= _NOW, FREE)  # what ``claim`` takes
# is anything there for a round: a message not fanned out (the partial index) or a due attempt whose lease
# is free (the due index); built once, as the idle dispatcher asks it every poll
_WAITING = sa.select(
    sa.or_(sa.exists(sa.select(messages.c.id).where(UNFANNED)), sa.exists(sa.select(deliveries.c.id).where(DUE)))
)


async def waiting(transact: Transact) -> bool:
    """Whether a dispatcher round would find anything: one read, where a round is two writing statements.

    An idle dispatcher polls (another process's emits and due retries wake nobody here); on SQLite an
    UPDATE that matches nothing still takes the write lock the outbox writer needs, and building the
    round's statements cost more than running them (an idle round: 3.3 ms of CPU on a slow machine)."""
    return bool(await transact(functools.partial(_waiting, time.time())))


def _waiting(now: float, conn: Connection) -> bool:
    return bool(conn.execute(_WAITING, {"now": now}).scalar())


@dataclass(frozen=True)
class Claimed:
    """A due attempt this process holds the lease of, with what sending it needs."""

    delivery_id: str
    message_id: str
    endpoint_id: str
    tenant: str
    made: int  # attempts made before this one
    event_type: str
    body: bytes
    endpoint: Any  # the endpoints row


async def claim(transact: Transact, owner: str, lease: float, limit: int, busy: Sequence[str] = ()) -> list[Claimed]:
    """Take up to ``limit`` due attempts, none to an endpoint in ``busy`` (at its concurrency bound)."""
    if limit <= 0:
        return []
    return list(await transact(functools.partial(_claim, owner, lease, limit, tuple(busy))))


def _claim(owner: str, lease: float, limit: int, busy: Sequence[str], conn: Connection) -> list[Claimed]:
    now = time.time()
    due = sa.select(deliveries.c.id).where(DUE)
    if busy:
        due = due.where(deliveries.c.endpoint_id.not_in(list(busy)))
    due = due.order_by(deliveries.c.next_at).limit(limit)
    if conn.dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True)
    rows = (
        conn.execute(
            sa.update(deliveries)
            .where(deliveries.c.id.in_(due.scalar_subquery()), deliveries.c.status == "pending", FREE)
            .values(lease_owner=owner, lease_until=now + lease)
            .returning(
                deliveries.c.id,
                deliveries.c.message_id,
                deliveries.c.endpoint_id,
                deliveries.c.tenant,
                deliveries.c.attempts,
            ),
            {"now": now},
        )
    ).all()
    if not rows:
        return []
    found = conn.execute(sa.select(messages).where(messages.c.id.in_({r.message_id for r in rows})))
    by_message = {m.id: m for m in found}
    found = conn.execute(sa.select(endpoints).where(endpoints.c.id.in_({r.endpoint_id for r in rows})))
    by_endpoint = {e.id: e for e in found}
    out = []
    for r in rows:
        message, endpoint = by_message.get(r.message_id), by_endpoint.get(r.endpoint_id)
        if message is None:
            continue
        out.append(
            Claimed(
                r.id,
                r.message_id,
                r.endpoint_id,
                r.tenant,
                r.attempts,
                message.event_type,
                body_of_row(message),
                endpoint,
            )
        )
    return out


async def release(engine: AsyncEngine, owner: str, delivery_ids: Sequence[str]) -> None:
    """Give back leases taken but not used (an endpoint's quota was full)."""
    if not delivery_ids:
        return
    async with engine.begin() as conn:
        await conn.execute(
            sa.update(deliveries)
            .where(deliveries.c.id.in_(list(delivery_ids)), deliveries.c.lease_owner == owner)
            .values(lease_owner=None, lease_until=None)
        )


@dataclass(frozen=True)
class Recorded:
    """One attempt's outcome for the log, and its delivery's new state."""

    item: Claimed
    outcome: Any
    next_at: float | None
    status: str


async def record(
    conn: AsyncConnection, item: Claimed, owner: str, outcome: Any, next_at: float | None, status: str
) -> None:
    """The attempt's log row and its delivery's new state, in the caller's transaction."""
    await conn.run_sync(record_many, owner, [Recorded(item, outcome, next_at, status)])


def record_many(conn: Connection, owner: str, done: Sequence[Recorded]) -> None:
    """Attempts' log rows and their deliveries' new states: two statements for the lot, in the caller's transaction.

    A delivery whose lease this owner lost (it ran out) keeps the state its new holder gives it."""
    now = time.time()
    conn.execute(
        attempts.insert(),
        [
            {
                "delivery_id": r.item.delivery_id,
                "message_id": r.item.message_id,
                "endpoint_id": r.item.endpoint_id,
                "tenant": r.item.tenant,
                "event_type": r.item.event_type,
                "attempt": r.item.made + 1,
                "at": now - r.outcome.latency,
                "outcome": r.outcome.kind,
                "status": r.outcome.status,
                "latency_ms": round(r.outcome.latency * 1000, 3),
                "response": r.outcome.response,
                "error": r.outcome.error,
                "next_retry": r.next_at,
            }
            for r in done
        ],
    )
    conn.execute(
        sa.update(deliveries)
        .where(deliveries.c.id == sa.bindparam("b_id"), deliveries.c.lease_owner == owner)
        .values(
            attempts=sa.bindparam("b_attempts"),
            status=sa.bindparam("b_status"),
            next_at=sa.func.coalesce(sa.bindparam("b_next", type_=sa.Float), deliveries.c.next_at),
            lease_owner=None,
            lease_until=None,
        ),
        [
            {"b_id": r.item.delivery_id, "b_attempts": r.item.made + 1, "b_status": r.status, "b_next": r.next_at}
            for r in done
        ],
    )
