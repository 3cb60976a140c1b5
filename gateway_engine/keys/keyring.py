"""API keys in the store: issue, list, update, revoke, rotate, and the one lookup verification makes.

Every change returns the SHA-256 digests it affects, so the caller can tell every
gateway process to drop them from its verification cache (``runtime.py``).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from . import keyformat
from .tables import api_keys, clients, platforms

ACTIVE, REVOKED = "active", "revoked"
Conflict = IntegrityError  # a unique constraint said no (a code or external id taken)


@dataclass(frozen=True)
class NewKey:
    """Everything a new key needs but its secret."""

    owner_kind: str  # gateway | platform | client
    name: str
    prefix: str
    platform_id: str | None = None
    client_id: str | None = None
    scopes: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()
    rate_limit: int | None = None
    expires_at: float | None = None
    created_by: str | None = None


def new_id(kind: str) -> str:
    return f"{kind}_{secrets.token_hex(8)}"


async def issue(conn: AsyncConnection, spec: NewKey) -> tuple[dict[str, Any], str]:
    """Store a new key; its row and the key itself (shown once, never stored)."""
    secret = keyformat.generate(spec.prefix)
    now = time.time()
    row = {
        "id": new_id("key"),
        "owner_kind": spec.owner_kind,
        "platform_id": spec.platform_id,
        "client_id": spec.client_id,
        "name": spec.name,
        "prefix": spec.prefix,
        "start": keyformat.start_of(secret),
        "sha256": keyformat.digest(secret),
        "scopes": list(spec.scopes),
        "roles": list(spec.roles),
        "rate_limit": spec.rate_limit,
        "expires_at": spec.expires_at,
        "status": ACTIVE,
        "replaced_by": None,
        "created_by": spec.created_by,
        "created_at": now,
        "updated_at": now,
        "last_used_at": None,
        "revoked_at": None,
    }
    await conn.execute(api_keys.insert().values(**row))
    return row, secret


async def get(conn: AsyncConnection, key_id: str, platform_id: str | None = None) -> dict[str, Any] | None:
    """One key by id; with ``platform_id``, only if it belongs to that platform (tenant isolation)."""
    query = api_keys.select().where(api_keys.c.id == key_id)
    if platform_id is not None:
        query = query.where(api_keys.c.platform_id == platform_id)
    row = (await conn.execute(query)).mappings().first()
    return dict(row) if row else None


async def listing(
    conn: AsyncConnection,
    *,
    platform_id: str | None = None,
    client_id: str | None = None,
    status: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[dict[str, Any]], int]:
    """Keys, newest first, and how many match in all."""
    where = []
    if platform_id is not None:
        where.append(api_keys.c.platform_id == platform_id)
    if client_id is not None:
        where.append(api_keys.c.client_id == client_id)
    if status is not None:
        where.append(api_keys.c.status == status)
    query = api_keys.select().where(*where).order_by(api_keys.c.created_at.desc(), api_keys.c.id)
    rows = (await conn.execute(query.limit(limit).offset(offset))).mappings().all()
    total = (await conn.execute(sa.select(sa.func.count()).select_from(api_keys).where(*where))).scalar_one()
    return [dict(r) for r in rows], int(total)


async def update(conn: AsyncConnection, row: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """Change name, scopes, roles, rate_limit or expires_at; the updated row."""
    changes = {**changes, "updated_at": time.time()}
    await conn.execute(api_keys.update().where(api_keys.c.id == row["id"]).values(**changes))
    return {**row, **changes}


async def revoke(conn: AsyncConnection, where: Any) -> list[str]:
    """Revoke every active key matching ``where``; their digests."""
    digests = [
        r[0] for r in (await conn.execute(sa.select(api_keys.c.sha256).where(where, api_keys.c.status == ACTIVE))).all()
    ]
    now = time.time()
    await conn.execute(
        api_keys.update()
        .where(where, api_keys.c.status == ACTIVE)
        .values(status=REVOKED, revoked_at=now, updated_at=now)
    )
    return digests


async def rotate(
    conn: AsyncConnection, row: dict[str, Any], grace: float, by: str | None
) -> tuple[dict[str, Any], str]:
    """A new key with the old one's owner and rights; the old one stays valid for ``grace`` seconds more."""
    spec = NewKey(
        owner_kind=row["owner_kind"],
        name=row["name"],
        prefix=row["prefix"],
        platform_id=row["platform_id"],
        client_id=row["client_id"],
        scopes=tuple(row["scopes"]),
        roles=tuple(row["roles"]),
        rate_limit=row["rate_limit"],
        expires_at=row["expires_at"],
        created_by=by,
    )
    new, secret = await issue(conn, spec)
    ends = time.time() + grace
    old_expiry = row["expires_at"] if row["expires_at"] is not None and row["expires_at"] < ends else ends
    await update(conn, row, {"expires_at": old_expiry, "replaced_by": new["id"]})
    return new, secret


async def lookup(conn: AsyncConnection, digest: str) -> dict[str, Any] | None:
    """The key with this digest and what verification needs of its owners (codes, external id, active flags)."""
    query = (
        sa.select(
            api_keys,
            platforms.c.code.label("platform_code"),
            platforms.c.active.label("platform_active"),
            clients.c.external_id.label("client_external_id"),
            clients.c.active.label("client_active"),
        )
        .select_from(
            api_keys.outerjoin(platforms, api_keys.c.platform_id == platforms.c.id).outerjoin(
                clients, api_keys.c.client_id == clients.c.id
            )
        )
        .where(api_keys.c.sha256 == digest)
    )
    row = (await conn.execute(query)).mappings().first()
    return dict(row) if row else None


def public(row: dict[str, Any]) -> dict[str, Any]:
    """A key as the admin API shows it: never the key, never its digest."""
    return {
        "id": row["id"],
        "name": row["name"],
        "start": row["start"],
        "owner": {"kind": row["owner_kind"], "platformId": row["platform_id"], "clientId": row["client_id"]},
        "scopes": list(row["scopes"]),
        "roles": list(row["roles"]),
        "rateLimit": row["rate_limit"],
        "expiresAt": iso(row["expires_at"]),
        "status": row["status"],
        "replacedBy": row["replaced_by"],
        "createdBy": row["created_by"],
        "createdAt": iso(row["created_at"]),
        "updatedAt": iso(row["updated_at"]),
        "lastUsedAt": iso(row["last_used_at"]),
        "revokedAt": iso(row["revoked_at"]),
    }


def iso(moment: float | None) -> str | None:
    if moment is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(moment)) + f".{int(moment % 1 * 1000):03d}Z"
