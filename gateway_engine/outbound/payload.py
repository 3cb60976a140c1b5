"""What an emit writes: the message's id, its JSON body (Standard Webhooks shape) and its outbox row.

Kept free of SQLAlchemy, so the emit path does not load the store's modules, and serialised once:
every attempt of a message sends the same bytes.

A route's emit is an ``Outgoing``: what the request knows (tenant, type, the data and its JSON, the
time). Its id and row are made with the rest of its batch (``values``): one ``os.urandom`` for the ids
of the whole batch. Its row keeps only the data's JSON (``enveloped`` false); the body, which would
repeat the row's id, type and time, is composed from the row when it is sent (``compose``), the same
bytes at every attempt. The body's size is known before it exists (``_envelope``), so a too-large
event is still refused in the request that emitted it.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Sequence
from typing import Any

import orjson

from gateway_engine.foundation.ids import sortable_id

new_id = sortable_id  # row ids sort by creation time: their primary-key insert is an append (``foundation.ids``)
ID_LENGTH = len(new_id("msg"))  # ``msg_`` + 14 hex digits of microseconds + 16 random


UNPARSED: Any = object()  # ``Outgoing.data`` of a constant: only its JSON is kept (``Outgoing.value``)
#: the columns of a route's emit that differ from row to row, in ``tables.messages``' order; ``fanned`` (true)
#: and ``enveloped`` (false), the last two, are the same for all of them
VARYING = ("id", "tenant", "event_type", "payload", "created_at")


class TooLarge(ValueError):
    """An event whose JSON is larger than ``max_payload``."""


class Outgoing:
    """An event on its way into the outbox; ``id`` is set when its batch is made into rows."""

    __slots__ = ("tenant", "event_type", "data", "data_json", "at", "publish", "id", "deliveries")

    def __init__(self, tenant: str, event_type: str, data: Any, data_json: str, at: float, publish: bool) -> None:
        self.tenant = tenant
        self.event_type = event_type
        self.data = data
        self.data_json = data_json  # ``orjson.dumps(data)`` as text (the row keeps it): a constant's is made at load
        self.at = at
        self.publish = publish  # handed to the event seam once written (where anything else listens)
        self.id = ""
        self.deliveries = 0  # made for it in its own transaction (endpoints subscribed then)

    def value(self) -> Any:
        """The data as an object (parsed from its JSON where only that was kept: a constant's)."""
        return orjson.loads(self.data_json) if self.data is UNPARSED else self.data


def event_size(event_type: str, data_json: bytes) -> int:
    """The bytes of the body of an event of this type and data (what ``max_payload`` limits)."""
    return len(data_json) + _envelope(event_type)


def outgoing(tenant: str, event_type: str, data: Any, *, limit: int | None, publish: bool = True) -> Outgoing:
    """An event for the next batch (TooLarge when its body would be larger than ``limit`` bytes)."""
    data_json = orjson.dumps(data)
    if limit is not None and (size := event_size(event_type, data_json)) > limit:
        raise TooLarge(f"the event is {size} bytes, more than {limit}")
    return Outgoing(tenant, event_type, data, data_json.decode(), time.time(), publish)


def values(items: Sequence[Outgoing]) -> list[Any]:
    """Give each item its id; the ``VARYING`` columns of their ``outbound_messages`` rows, one row after
    the other in one flat list: the parameters of a multi-row INSERT whose ``fanned`` and ``enveloped``
    are literals (fanned out as written; the payload is the data's JSON only).

    This runs once per emitted event, on the writer's thread, and was about a third of its time: the id's
    microseconds are hexed by ``int.to_bytes`` (half the cost of a ``:014x`` format), and no row tuple
    is made only to be copied into the parameters."""
    entropy = os.urandom(8 * len(items)).hex()  # one call for the batch (``random_hex`` is the loop's, not a thread's)
    made: list[Any] = []
    extend = made.extend
    at = 0
    for item in items:
        at += 16
        item.id = message_id = f"msg_{round(item.at * 1_000_000).to_bytes(7, 'big').hex()}{entropy[at - 16 : at]}"
        extend((message_id, item.tenant, item.event_type, item.data_json, item.at))
    return made


def rows(items: Sequence[Outgoing]) -> list[tuple[Any, ...]]:
    """``values`` as whole rows, in ``tables.messages``' column order (for a driver that takes one tuple a row)."""
    flat, width = values(items), len(VARYING)
    return [(*flat[at : at + width], True, False) for at in range(0, len(flat), width)]


def compose(message_id: str, event_type: str, data_json: str, at: float) -> bytes:
    """The JSON every attempt of a message sends (Standard Webhooks payload shape), from its data's JSON:
    a row that keeps only that (``rows``) is sent as this."""
    return _body(message_id, event_type, data_json, round(at * 1_000_000)).encode()


def body_of(message_id: str, event_type: str, data: Any, at: float) -> bytes:
    """``compose`` of the data itself."""
    return compose(message_id, event_type, orjson.dumps(data).decode(), at)


_BODY = '{"id":"%s","type":%s,"timestamp":"%s.%03dZ","data":%s}'  # as ``orjson.dumps`` writes the object


def _body(message_id: str, event_type: str, data_json: str, micros: int) -> str:
    """``{"id":…,"type":…,"timestamp":…,"data":…}`` from the data's JSON (whole microseconds: …509.123 stays .123)."""
    second, millis = divmod(micros // 1000, 1000)
    return _BODY % (message_id, _json(event_type), _second(second), millis, data_json)


@functools.lru_cache(maxsize=256)
def _json(text: str) -> str:
    return orjson.dumps(text).decode()


@functools.lru_cache(maxsize=256)
def _envelope(event_type: str) -> int:
    """The bytes of a body besides its data: an id and a timestamp are of fixed length."""
    return len(_body("m" * ID_LENGTH, event_type, "", 0).encode())


@functools.lru_cache(maxsize=4)
def _second(epoch: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS`` (UTC) of one second, formatted once for all the events of that second."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch))


def message_row(
    tenant: str, event_type: str, data: Any, *, fanned: bool = False, limit: int | None = None, message_id: str = ""
) -> dict[str, Any]:
    """The ``outbound_messages`` row of one event written on its own (TooLarge past ``limit`` bytes)."""
    now = time.time()
    message_id = message_id or new_id("msg")
    body = body_of(message_id, event_type, data, now)
    if limit is not None and len(body) > limit:
        raise TooLarge(f"the event is {len(body)} bytes, more than {limit}")
    return {
        "id": message_id,
        "tenant": tenant,
        "event_type": event_type,
        "payload": body.decode(),
        "created_at": now,
        "fanned": fanned,
        "enveloped": True,
    }
