"""The admin API's keys (CRUD, rotate, usage), the rate-limit monitor and the request-log query.

A tenant caller's keys are its platform's (and its clients'); it may grant a new key
only scopes it holds itself. A key's secret appears once, in the answer that creates it.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from gateway_engine.foundation.errors import GatewayError

from . import keyring, requestlog, tenants, usage
from .caller import Caller
from .requests import KEY_CREATE, KEY_UPDATE, AdminRequest, checked, expires_at, moment, not_found, page, rate_limit
from .runtime import KeysRuntime


async def issue_key(
    rt: KeysRuntime,
    caller: Caller,
    conn: AsyncConnection,
    spec: dict[str, Any],
    *,
    owner_kind: str,
    platform_id: str | None = None,
    client_id: str | None = None,
) -> dict[str, Any]:
    scopes = list(spec.get("scopes", []))
    beyond = caller.may_grant(scopes)
    if beyond:
        raise GatewayError(
            403,
            "FORBIDDEN",
            f"A key cannot grant scopes its maker lacks: {', '.join(beyond)}.",
            details={"scopes": beyond},
        )
    new = keyring.NewKey(
        owner_kind=owner_kind,
        name=spec["name"],
        prefix=rt.settings.prefix,
        platform_id=platform_id,
        client_id=client_id,
        scopes=tuple(scopes),
        roles=tuple(spec.get("roles", [])),
        rate_limit=rate_limit(spec.get("rateLimit"), rt.settings.rate_limit_bounds),
        expires_at=expires_at(spec.get("expiresAt"), time.time()),
        created_by=caller.key_id or caller.consumer,
    )
    row, secret = await keyring.issue(conn, new)
    return {**keyring.public(row), "key": secret}


async def keys(rt: KeysRuntime, req: AdminRequest) -> tuple[int, Any]:
    tenant = req.caller.tenant
    if len(req.path) == 1 and req.method == "GET":
        limit, offset = page(req.query)
        async with rt.reading() as conn:
            rows, total = await keyring.listing(
                conn,
                platform_id=tenant or req.query.get("platformId"),
                client_id=req.query.get("clientId"),
                status=req.query.get("status"),
                limit=limit,
                offset=offset,
            )
        return 200, {"items": [keyring.public(r) for r in rows], "total": total, "limit": limit, "offset": offset}
    if len(req.path) == 1 and req.method == "POST":
        return 201, await _create(rt, req, checked(KEY_CREATE, req.body))
    async with rt.reading() as conn:
        row = await keyring.get(conn, req.path[1], tenant)
    if row is None:
        raise not_found("key")
    action = (req.method, tuple(req.path[2:]))
    if action == ("GET", ()):
        return 200, keyring.public(row)
    if action == ("PUT", ()):
        return 200, await _update(rt, req, row, checked(KEY_UPDATE, req.body))
    if action == ("DELETE", ()):
        async with rt.writing() as conn:
            revoked = await keyring.revoke(conn, keyring.api_keys.c.id == row["id"])
            row = await keyring.get(conn, row["id"]) or row
        await rt.changed(revoked)
        return 200, keyring.public(row)
    if action == ("POST", ("rotate",)):
        if row["status"] != keyring.ACTIVE:
            raise GatewayError(409, "KEY_REVOKED", "A revoked key cannot be rotated.")
        grace = _grace(req.query, rt.settings.rotation_grace)
        async with rt.writing() as conn:
            new, secret = await keyring.rotate(conn, row, grace, req.caller.key_id or req.caller.consumer)
        await rt.changed([row["sha256"]])
        return 201, {
            **keyring.public(new),
            "key": secret,
            "previous": {"id": row["id"], "validUntil": keyring.iso(time.time() + grace)},
        }
    if action == ("GET", ("usage",)):
        days = _days(req.query)
        async with rt.reading() as conn:
            counted = await usage.usage_of(conn, row["id"], days)
        return 200, {"keyId": row["id"], **counted, "lastUsedAt": keyring.iso(row["last_used_at"])}
    raise not_found("operation")


async def _create(rt: KeysRuntime, req: AdminRequest, body: dict[str, Any]) -> dict[str, Any]:
    tenant = req.caller.tenant
    if tenant is not None and body.get("platformId") not in (None, tenant):
        raise not_found("platform")
    platform_id, client_id = tenant or body.get("platformId"), body.get("clientId")
    async with rt.writing() as conn:
        if client_id is not None:
            client = await tenants.get_client(conn, client_id, tenant)
            if client is None or not client["active"]:
                raise not_found("client")
            platform_id = client["platform_id"]
            kind = "client"
        elif platform_id is not None:
            platform = await tenants.get_platform(conn, platform_id)
            if platform is None or not platform["active"] or (tenant is not None and platform["id"] != tenant):
                raise not_found("platform")
            platform_id, kind = platform["id"], "platform"
        else:
            kind = "gateway"
        return await issue_key(
            rt, req.caller, conn, body, owner_kind=kind, platform_id=platform_id, client_id=client_id
        )


async def _update(rt: KeysRuntime, req: AdminRequest, row: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    if row["status"] != keyring.ACTIVE:
        raise GatewayError(409, "KEY_REVOKED", "A revoked key cannot be changed.")
    beyond = req.caller.may_grant(body.get("scopes", []))
    if beyond:
        raise GatewayError(403, "FORBIDDEN", f"A key cannot grant scopes its maker lacks: {', '.join(beyond)}.")
    changes: dict[str, Any] = {}
    for field, column in (("name", "name"), ("scopes", "scopes"), ("roles", "roles")):
        if field in body:
            changes[column] = body[field]
    if "rateLimit" in body:
        changes["rate_limit"] = rate_limit(body["rateLimit"], rt.settings.rate_limit_bounds)
    if "expiresAt" in body:
        changes["expires_at"] = expires_at(body["expiresAt"], time.time())
    async with rt.writing() as conn:
        row = await keyring.update(conn, row, changes)
    await rt.changed([row["sha256"]])
    return keyring.public(row)


def _grace(query: dict[str, str], default: float) -> float:
    raw = query.get("graceSeconds")
    if raw is None:
        return default
    if not raw.isdigit() or int(raw) > 30 * 86_400:
        raise GatewayError(400, "INVALID_PARAMETER", "graceSeconds must be an integer from 0 to 2592000.")
    return float(raw)


def _days(query: dict[str, str]) -> int:
    raw = query.get("days", "30")
    if not raw.isdigit() or not 1 <= int(raw) <= 366:
        raise GatewayError(400, "INVALID_PARAMETER", "days must be an integer from 1 to 366.")
    return int(raw)


async def rate_limits(rt: KeysRuntime, req: AdminRequest) -> tuple[int, Any]:
    """The current one-minute window of every limited key the caller may see (this instance's count)."""
    limit, offset = page(req.query)
    async with rt.reading() as conn:
        rows, total = await keyring.listing(
            conn, platform_id=req.caller.tenant, status=keyring.ACTIVE, limit=limit, offset=offset
        )
    now = time.time()
    items = []
    for row in rows:
        used, resets = rt.usage.current_minute(row["id"], now)
        items.append(
            {
                "keyId": row["id"],
                "name": row["name"],
                "limit": row["rate_limit"],
                "used": used,
                "remaining": None if row["rate_limit"] is None else max(0, row["rate_limit"] - used),
                "windowEndsAt": keyring.iso(resets),
            }
        )
    return 200, {"windowSeconds": 60, "items": items, "total": total, "limit": limit, "offset": offset}


async def logs(rt: KeysRuntime, req: AdminRequest, errors_only: bool) -> tuple[int, Any]:
    limit, _ = page(req.query)
    before = req.query.get("before")
    if before is not None and not before.isdigit():
        raise GatewayError(400, "INVALID_PARAMETER", "before must be the `next` cursor of a previous page.")
    status = req.query.get("status")
    if status is not None and not (status.isdigit() and 100 <= int(status) <= 599):
        raise GatewayError(400, "INVALID_PARAMETER", "status must be an HTTP status code.")
    filters: dict[str, Any] = {k: req.query.get(k) for k in ("clientId", "keyId", "route", "method")}
    filters.update(
        status=int(status) if status else None, since=moment(req.query, "since"), until=moment(req.query, "until")
    )
    platform_id = req.caller.tenant or req.query.get("platformId")
    async with rt.reading() as conn:
        found = await requestlog.query(
            conn,
            platform_id=platform_id,
            filters=filters,
            errors_only=errors_only,
            limit=limit,
            before=int(before) if before else None,
        )
    return 200, found
