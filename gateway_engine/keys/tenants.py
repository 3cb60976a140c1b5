"""Platforms and their clients in the store: the tenants keys belong to.

Deactivating a platform or a client revokes its keys (their digests come back, for
cache invalidation); nothing is deleted, so usage and logs keep their owner.
"""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from . import keyring
from .keyring import iso, new_id
from .tables import api_keys, clients, platforms


async def create_platform(conn: AsyncConnection, code: str, name: str, metadata: dict[str, Any]) -> dict[str, Any]:
    now = time.time()
    row = {
        "id": new_id("plt"),
        "code": code,
        "name": name,
        "active": True,
        "metadata": metadata,
        "created_at": now,
        "updated_at": now,
    }
    await conn.execute(platforms.insert().values(**row))
    return row


async def get_platform(conn: AsyncConnection, ident: str) -> dict[str, Any] | None:
    """By id or code."""
    query = platforms.select().where(sa.or_(platforms.c.id == ident, platforms.c.code == ident))
    row = (await conn.execute(query)).mappings().first()
    return dict(row) if row else None


async def list_platforms(
    conn: AsyncConnection, only: str | None, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    where = [platforms.c.id == only] if only is not None else []
    rows = (
        await conn.execute(platforms.select().where(*where).order_by(platforms.c.code).limit(limit).offset(offset))
    ).mappings()
    total = (await conn.execute(sa.select(sa.func.count()).select_from(platforms).where(*where))).scalar_one()
    return [dict(r) for r in rows], int(total)


async def update_platform(conn: AsyncConnection, row: dict[str, Any], changes: dict[str, Any]) -> list[str]:
    """Apply changes; deactivation revokes every key of the platform and its clients (their digests)."""
    changes = {**changes, "updated_at": time.time()}
    await conn.execute(platforms.update().where(platforms.c.id == row["id"]).values(**changes))
    row.update(changes)
    if changes.get("active") is False:
        await conn.execute(
            clients.update().where(clients.c.platform_id == row["id"]).values(active=False, updated_at=time.time())
        )
        return await keyring.revoke(conn, api_keys.c.platform_id == row["id"])
    return []


async def create_client(
    conn: AsyncConnection, platform_id: str, code: str, name: str, external_id: str | None, metadata: dict[str, Any]
) -> dict[str, Any]:
    now = time.time()
    row = {
        "id": new_id("cli"),
        "platform_id": platform_id,
        "code": code,
        "name": name,
        "external_id": external_id,
        "active": True,
        "metadata": metadata,
        "created_at": now,
        "updated_at": now,
    }
    await conn.execute(clients.insert().values(**row))
    return row


async def get_client(conn: AsyncConnection, client_id: str, platform_id: str | None = None) -> dict[str, Any] | None:
    query = clients.select().where(clients.c.id == client_id)
    if platform_id is not None:
        query = query.where(clients.c.platform_id == platform_id)
    row = (await conn.execute(query)).mappings().first()
    return dict(row) if row else None


async def list_clients(
    conn: AsyncConnection, platform_id: str | None, limit: int, offset: int, external_id: str | None = None
) -> tuple[list[dict[str, Any]], int]:
    where = []
    if platform_id is not None:
        where.append(clients.c.platform_id == platform_id)
    if external_id is not None:
        where.append(clients.c.external_id == external_id)
    query = clients.select().where(*where).order_by(clients.c.created_at.desc(), clients.c.id)
    rows = (await conn.execute(query.limit(limit).offset(offset))).mappings()
    total = (await conn.execute(sa.select(sa.func.count()).select_from(clients).where(*where))).scalar_one()
    return [dict(r) for r in rows], int(total)


async def update_client(conn: AsyncConnection, row: dict[str, Any], changes: dict[str, Any]) -> list[str]:
    """Apply changes; deactivation revokes the client's keys (their digests)."""
    changes = {**changes, "updated_at": time.time()}
    await conn.execute(clients.update().where(clients.c.id == row["id"]).values(**changes))
    row.update(changes)
    if changes.get("active") is False:
        return await keyring.revoke(conn, api_keys.c.client_id == row["id"])
    return []


def public_platform(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "code": row["code"],
        "name": row["name"],
        "active": bool(row["active"]),
        "metadata": row["metadata"],
        "createdAt": iso(row["created_at"]),
        "updatedAt": iso(row["updated_at"]),
    }


def public_client(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "platformId": row["platform_id"],
        "code": row["code"],
        "name": row["name"],
        "externalId": row["external_id"],
        "active": bool(row["active"]),
        "metadata": row["metadata"],
        "createdAt": iso(row["created_at"]),
        "updatedAt": iso(row["updated_at"]),
    }
