"""The admin API's platforms and clients. A tenant caller sees only its own platform and its clients;
anything else answers 404, as if it did not exist."""

from __future__ import annotations

from typing import Any

from gateway_engine.foundation.errors import GatewayError

from . import keyring, tenants
from .admin_keys import issue_key
from .requests import (
    CLIENT_CREATE,
    CLIENT_UPDATE,
    NESTED_KEY,
    PLATFORM_CREATE,
    PLATFORM_UPDATE,
    AdminRequest,
    checked,
    not_found,
    page,
)
from .runtime import KeysRuntime

_OPERATORS_ONLY = GatewayError(403, "FORBIDDEN", "Only an operator key may create or remove platforms.")


async def platforms(rt: KeysRuntime, req: AdminRequest) -> tuple[int, Any]:
    tenant = req.caller.tenant
    if len(req.path) == 1 and req.method == "GET":
        limit, offset = page(req.query)
        async with rt.reading() as conn:
            rows, total = await tenants.list_platforms(conn, tenant, limit, offset)
        return 200, {
            "items": [tenants.public_platform(r) for r in rows],
            "total": total,
            "limit": limit,
            "offset": offset,
        }
    if len(req.path) == 1 and req.method == "POST":
        if tenant is not None:
            raise _OPERATORS_ONLY
        body = checked(PLATFORM_CREATE, req.body)
        key_spec = checked(NESTED_KEY, body.get("key", {"name": f"{body['code']} platform key"}))
        async with rt.writing() as conn:
            if await tenants.get_platform(conn, body["code"]) is not None:
                raise GatewayError(409, "CONFLICT", f"A platform with code {body['code']!r} exists already.")
            row = await tenants.create_platform(conn, body["code"], body["name"], body.get("metadata", {}))
            key = await issue_key(rt, req.caller, conn, key_spec, owner_kind="platform", platform_id=row["id"])
        return 201, {"platform": tenants.public_platform(row), "key": key}
    row = await _platform(rt, req)
    if len(req.path) != 2:
        raise not_found("operation")
    if req.method == "GET":
        return 200, tenants.public_platform(row)
    if req.method == "PUT":
        body = checked(PLATFORM_UPDATE, req.body)
        if tenant is not None and "active" in body:
            raise _OPERATORS_ONLY
        return 200, await _update_platform(rt, row, body)
    if req.method == "DELETE":
        if tenant is not None:
            raise _OPERATORS_ONLY
        return 200, await _update_platform(rt, row, {"active": False})
    raise not_found("operation")


async def _platform(rt: KeysRuntime, req: AdminRequest) -> dict[str, Any]:
    async with rt.reading() as conn:
        row = await tenants.get_platform(conn, req.path[1])
    if row is None or (req.caller.tenant is not None and row["id"] != req.caller.tenant):
        raise not_found("platform")
    return row


async def _update_platform(rt: KeysRuntime, row: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    async with rt.writing() as conn:
        revoked = await tenants.update_platform(conn, row, body)
    await rt.changed(revoked)
    return tenants.public_platform(row)


async def clients(rt: KeysRuntime, req: AdminRequest) -> tuple[int, Any]:
    tenant = req.caller.tenant
    if len(req.path) == 1 and req.method == "GET":
        limit, offset = page(req.query)
        platform = tenant or req.query.get("platformId")
        async with rt.reading() as conn:
            rows, total = await tenants.list_clients(conn, platform, limit, offset, req.query.get("externalId"))
        return 200, {
            "items": [tenants.public_client(r) for r in rows],
            "total": total,
            "limit": limit,
            "offset": offset,
        }
    if len(req.path) == 1 and req.method == "POST":
        return 201, await _register(rt, req, checked(CLIENT_CREATE, req.body))
    if len(req.path) != 2:
        raise not_found("operation")
    async with rt.reading() as conn:
        row = await tenants.get_client(conn, req.path[1], tenant)
    if row is None:
        raise not_found("client")
    if req.method == "GET":
        return 200, tenants.public_client(row)
    if req.method in ("PUT", "DELETE"):
        body = checked(CLIENT_UPDATE, req.body) if req.method == "PUT" else {"active": False}
        changes = {("external_id" if k == "externalId" else k): v for k, v in body.items()}
        async with rt.writing() as conn:
            revoked = await tenants.update_client(conn, row, changes)
        await rt.changed(revoked)
        return 200, tenants.public_client(row)
    raise not_found("operation")


async def _register(rt: KeysRuntime, req: AdminRequest, body: dict[str, Any]) -> dict[str, Any]:
    """A new client of a platform and its key, shown this once."""
    tenant = req.caller.tenant
    platform_ref = tenant or body.get("platformId")
    if platform_ref is None:
        raise GatewayError(400, "INVALID_BODY", "platformId is required (the platform the client belongs to).")
    if tenant is not None and body.get("platformId") not in (None, tenant):
        raise not_found("platform")
    async with rt.writing() as conn:
        platform = await tenants.get_platform(conn, platform_ref)
        if platform is None or not platform["active"]:
            raise not_found("platform")
        existing, _ = await tenants.list_clients(conn, platform["id"], 1, 0, body.get("externalId"))
        if body.get("externalId") and existing:
            raise GatewayError(409, "CONFLICT", "A client with this externalId exists already on the platform.")
        try:
            row = await tenants.create_client(
                conn, platform["id"], body["code"], body["name"], body.get("externalId"), body.get("metadata", {})
            )
            spec: dict[str, Any] = {
                "name": f"{body['code']} client key",
                **{k: body[k] for k in ("scopes", "roles", "rateLimit", "expiresAt") if k in body},
            }
            key = await issue_key(
                rt, req.caller, conn, spec, owner_kind="client", platform_id=platform["id"], client_id=row["id"]
            )
        except keyring.Conflict:
            raise GatewayError(
                409, "CONFLICT", f"A client with code {body['code']!r} exists already on the platform."
            ) from None
    return {"client": tenants.public_client(row), "key": key}
