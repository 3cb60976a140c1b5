"""The subscriptions API: a tenant's endpoints, their test, attempt log, replays and secret rotation.

Every operation takes the tenant of the authenticated caller; rows of another tenant are not
found (404), never told apart from rows that do not exist.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
import sqlalchemy as sa

from gateway_engine.foundation.errors import GatewayError

from . import validation as v
from .outbox import Claimed, add_delivery, insert_message, matches
from .payload import new_id
from .service import Outbound
from .signing import new_secret
from .tables import attempts, deliveries, endpoints, messages

MAX_ENDPOINTS = 100  # per tenant
_UPDATABLE = {"url", "description", "events", "headers", "enabled", "maxRetries"}


def _iso(at: float | None) -> str | None:
    if at is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + f".{int(at % 1 * 1000):03d}Z"


def endpoint_json(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "url": row.url,
        "description": row.description,
        "events": orjson.loads(row.events),
        "headers": orjson.loads(row.headers),
        "enabled": row.enabled,
        "disabledReason": row.disabled_reason,
        "maxRetries": row.max_retries,
        "createdAt": _iso(row.created_at),
        "updatedAt": _iso(row.updated_at),
    }


def attempt_json(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "messageId": row.message_id,
        "endpointId": row.endpoint_id,
        "eventType": row.event_type,
        "attempt": row.attempt,
        "at": _iso(row.at),
        "outcome": row.outcome,
        "status": row.status,
        "latencyMs": row.latency_ms,
        "response": row.response,
        "error": row.error,
        "nextRetry": _iso(row.next_retry),
    }


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise GatewayError(400, "INVALID_BODY", "The request body must be a JSON object.")
    return body


class Admin:
    def __init__(self, service: Outbound) -> None:
        self.service = service

    async def _engine(self) -> Any:
        return (await self.service.store()).engine

    async def _row(self, conn: Any, tenant: str, endpoint_id: str) -> Any:
        row = (
            await conn.execute(sa.select(endpoints).where(endpoints.c.id == endpoint_id, endpoints.c.tenant == tenant))
        ).first()
        if row is None:
            raise GatewayError(404, "ENDPOINT_NOT_FOUND", "No such webhook endpoint.")
        return row

    async def health(self) -> dict[str, Any]:
        async with (await self._engine()).connect() as conn:
            await conn.execute(sa.select(1))
        return {"status": "SERVING"}

    async def register(self, tenant: str, body: Any) -> dict[str, Any]:
        body = _object(body)
        unknown = set(body) - _UPDATABLE - {"secret"}
        if unknown:
            raise v.invalid(f"unknown field {sorted(unknown)[0]!r}", sorted(unknown)[0])
        settings, catalog = self.service.settings, self.service.catalog
        url = await v.checked_url(body.get("url"), settings)
        events = v.checked_events(body.get("events"), catalog)
        secret = v.checked_secret(body["secret"]) if "secret" in body else new_secret()
        now = time.time()
        values: dict[str, Any] = {
            "id": new_id("ep"),
            "tenant": tenant,
            "url": url,
            "description": v.checked_text(body.get("description", ""), "description"),
            "events": orjson.dumps(events).decode(),
            "headers": orjson.dumps(v.checked_headers(body.get("headers", {}))).decode(),
            "enabled": v.checked_bool(body.get("enabled", True), "enabled"),
            "max_retries": v.checked_retries(body.get("maxRetries")),
            "secret": secret,
            "created_at": now,
            "updated_at": now,
        }
        async with (await self._engine()).begin() as conn:
            count = (await conn.execute(sa.select(sa.func.count()).where(endpoints.c.tenant == tenant))).scalar_one()
            if count >= MAX_ENDPOINTS:
                raise GatewayError(409, "TOO_MANY_ENDPOINTS", f"A tenant may register at most {MAX_ENDPOINTS}.")
            await conn.execute(endpoints.insert().values(**values))
            row = await self._row(conn, tenant, values["id"])
        return {**endpoint_json(row), "secret": secret}  # shown this once

    async def list(self, tenant: str, query: dict[str, str]) -> dict[str, Any]:
        limit = v.checked_limit(query)
        stmt = sa.select(endpoints).where(endpoints.c.tenant == tenant)
        if query.get("cursor"):
            stmt = stmt.where(endpoints.c.id > query["cursor"])
        async with (await self._engine()).connect() as conn:
            rows = (await conn.execute(stmt.order_by(endpoints.c.id).limit(limit + 1))).all()
        more = len(rows) > limit
        rows = rows[:limit]
        return {"items": [endpoint_json(r) for r in rows], "nextCursor": rows[-1].id if more else None}

    async def get(self, tenant: str, endpoint_id: str) -> dict[str, Any]:
        async with (await self._engine()).connect() as conn:
            return endpoint_json(await self._row(conn, tenant, endpoint_id))

    async def update(self, tenant: str, endpoint_id: str, body: Any) -> dict[str, Any]:
        body = _object(body)
        unknown = set(body) - _UPDATABLE
        if unknown:
            raise v.invalid(f"field {sorted(unknown)[0]!r} cannot be updated", sorted(unknown)[0])
        values: dict[str, Any] = {"updated_at": time.time()}
        if "url" in body:
            values["url"] = await v.checked_url(body["url"], self.service.settings)
        if "events" in body:
            values["events"] = orjson.dumps(v.checked_events(body["events"], self.service.catalog)).decode()
        if "headers" in body:
            values["headers"] = orjson.dumps(v.checked_headers(body["headers"])).decode()
        if "description" in body:
            values["description"] = v.checked_text(body["description"], "description")
        if "maxRetries" in body:
            values["max_retries"] = v.checked_retries(body["maxRetries"])
        if "enabled" in body:
            values["enabled"] = v.checked_bool(body["enabled"], "enabled")
            if values["enabled"]:  # re-enabled: the failure clock starts again
                values.update(disabled_reason=None, failing_since=None)
        async with (await self._engine()).begin() as conn:
            await self._row(conn, tenant, endpoint_id)
            await conn.execute(
                sa.update(endpoints).where(endpoints.c.id == endpoint_id, endpoints.c.tenant == tenant).values(**values)
            )
            return endpoint_json(await self._row(conn, tenant, endpoint_id))

    async def delete(self, tenant: str, endpoint_id: str) -> dict[str, Any]:
        async with (await self._engine()).begin() as conn:
            await self._row(conn, tenant, endpoint_id)
            await conn.execute(sa.delete(endpoints).where(endpoints.c.id == endpoint_id, endpoints.c.tenant == tenant))
            await conn.execute(
                sa.update(deliveries)
                .where(deliveries.c.endpoint_id == endpoint_id, deliveries.c.status == "pending")
                .values(status="skipped")
            )
        return {"id": endpoint_id, "deleted": True}

    async def rotate(self, tenant: str, endpoint_id: str, body: Any) -> dict[str, Any]:
        body = _object(body or {})
        secret = v.checked_secret(body["secret"]) if "secret" in body else new_secret()
        now = time.time()
        until = now + self.service.settings.secret_overlap
        async with (await self._engine()).begin() as conn:
            row = await self._row(conn, tenant, endpoint_id)
            await conn.execute(
                sa.update(endpoints)
                .where(endpoints.c.id == endpoint_id)
                .values(secret=secret, previous_secret=row.secret, previous_until=until, updated_at=now)
            )
        return {"id": endpoint_id, "secret": secret, "previousValidUntil": _iso(until)}

    async def test(self, tenant: str, endpoint_id: str) -> dict[str, Any]:
        """Deliver ``webhook.test`` now, once, and answer with the attempt."""
        engine = await self._engine()
        async with engine.connect() as conn:
            row = await self._row(conn, tenant, endpoint_id)
        if not row.enabled:
            raise GatewayError(409, "ENDPOINT_DISABLED", "The endpoint is disabled; enable it first.")
        data = {"endpointId": endpoint_id, "message": "A test delivery from the gateway."}
        message_id, body = await insert_message(engine, tenant, "webhook.test", data, fanned=True)
        dispatcher = self.service.dispatcher or self.service.standby(engine)
        async with engine.begin() as conn:
            delivery_id = await add_delivery(conn, message_id, endpoint_id, tenant, time.time())
            await conn.execute(
                sa.update(deliveries)
                .where(deliveries.c.id == delivery_id)
                .values(lease_owner=dispatcher.owner, lease_until=time.time() + self.service.settings.lease)
            )
        item = Claimed(delivery_id, message_id, endpoint_id, tenant, 0, "webhook.test", body, row)
        await dispatcher.deliver(item, retry=False)
        async with engine.connect() as conn:
            attempt = (await conn.execute(sa.select(attempts).where(attempts.c.delivery_id == delivery_id))).first()
        return attempt_json(attempt)

    async def delivery_log(self, tenant: str, query: dict[str, str], endpoint_id: str | None = None) -> dict[str, Any]:
        limit = v.checked_limit(query)
        stmt = sa.select(attempts).where(attempts.c.tenant == tenant)
        endpoint_id = endpoint_id or query.get("endpoint")
        if endpoint_id:
            async with (await self._engine()).connect() as conn:
                await self._row(conn, tenant, endpoint_id)
            stmt = stmt.where(attempts.c.endpoint_id == endpoint_id)
        for key, column in (("message", attempts.c.message_id), ("event", attempts.c.event_type)):
            if query.get(key):
                stmt = stmt.where(column == query[key])
        if query.get("outcome"):
            stmt = stmt.where(attempts.c.outcome == query["outcome"])
        if query.get("cursor"):
            if not query["cursor"].isdigit():
                raise v.invalid("cursor must be the nextCursor of a previous page", "cursor")
            stmt = stmt.where(attempts.c.id < int(query["cursor"]))
        async with (await self._engine()).connect() as conn:
            rows = (await conn.execute(stmt.order_by(attempts.c.id.desc()).limit(limit + 1))).all()
        more = len(rows) > limit
        rows = rows[:limit]
        return {"items": [attempt_json(r) for r in rows], "nextCursor": str(rows[-1].id) if more else None}

    async def replay(self, tenant: str, message_id: str, body: Any) -> dict[str, Any]:
        """Send a message again: to one endpoint, or to every enabled endpoint of the tenant subscribed to it."""
        body = _object(body or {})
        only = body.get("endpointId")
        engine = await self._engine()
        now = time.time()
        async with engine.begin() as conn:
            message = (
                await conn.execute(sa.select(messages).where(messages.c.id == message_id, messages.c.tenant == tenant))
            ).first()
            if message is None:
                raise GatewayError(404, "MESSAGE_NOT_FOUND", "No such message.")
            if only is not None:
                targets = [(await self._row(conn, tenant, str(only))).id]
            else:
                rows = (
                    await conn.execute(
                        sa.select(endpoints.c.id, endpoints.c.events).where(
                            endpoints.c.tenant == tenant, endpoints.c.enabled.is_(True)
                        )
                    )
                ).all()
                targets = [r.id for r in rows if matches(orjson.loads(r.events), message.event_type)]
            for endpoint_id in targets:
                await add_delivery(conn, message_id, endpoint_id, tenant, now)
        if self.service.dispatcher is not None:
            self.service.dispatcher.wake()
        return {"messageId": message_id, "deliveries": len(targets)}
