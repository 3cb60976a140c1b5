"""What an emit writes: the message's id, its JSON body (Standard Webhooks shape) and its outbox row.

Kept free of SQLAlchemy, so the emit path does not load the store's modules, and serialised once:
every attempt of a message sends the same bytes.
"""

from __future__ import annotations

import functools
import time
from typing import Any

import orjson

from gateway_engine.foundation.ids import sortable_id

new_id = sortable_id  # row ids sort by creation time: their primary-key insert is an append (``foundation.ids``)


def body_of(message_id: str, event_type: str, data: Any, at: float) -> bytes:
    """The JSON every attempt of a message sends (Standard Webhooks payload shape)."""
    micros = round(at * 1_000_000)  # whole microseconds first: ``at % 1 * 1000`` of …509.123 is 122.99…
    stamp = f"{_second(micros // 1_000_000)}.{micros // 1000 % 1000:03d}Z"
    return orjson.dumps({"id": message_id, "type": event_type, "timestamp": stamp, "data": data})


@functools.lru_cache(maxsize=4)
def _second(epoch: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS`` (UTC) of one second, formatted once for all the events of that second."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch))


class TooLarge(ValueError):
    """An event whose JSON is larger than ``max_payload``."""


def message_row(
    tenant: str, event_type: str, data: Any, *, fanned: bool = False, limit: int | None = None, message_id: str = ""
) -> dict[str, Any]:
    """The ``outbound_messages`` row of an event, serialised once (TooLarge past ``limit`` bytes)."""
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
    }
