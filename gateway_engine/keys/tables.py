"""The key store's tables (SQLAlchemy Core): tenants, their keys, usage counters and the request log.

Times are POSIX seconds (floats) so that SQLite and PostgreSQL agree without time-zone
handling. The migration ``migrations/keys_0001_initial.py`` creates exactly these.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

platforms = sa.Table(
    "keys_platforms",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("code", sa.String(64), nullable=False, unique=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("active", sa.Boolean, nullable=False, default=True),
    sa.Column("metadata", sa.JSON, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

clients = sa.Table(
    "keys_clients",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("platform_id", sa.String(40), sa.ForeignKey("keys_platforms.id"), nullable=False, index=True),
    sa.Column("code", sa.String(64), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("external_id", sa.String(200), nullable=True),
    sa.Column("active", sa.Boolean, nullable=False, default=True),
    sa.Column("metadata", sa.JSON, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.UniqueConstraint("platform_id", "code", name="uq_keys_clients_code"),
    sa.UniqueConstraint("platform_id", "external_id", name="uq_keys_clients_external_id"),
)

api_keys = sa.Table(
    "keys_api_keys",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("owner_kind", sa.String(16), nullable=False),  # gateway | platform | client
    sa.Column("platform_id", sa.String(40), sa.ForeignKey("keys_platforms.id"), nullable=True, index=True),
    sa.Column("client_id", sa.String(40), sa.ForeignKey("keys_clients.id"), nullable=True, index=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("prefix", sa.String(16), nullable=False),
    sa.Column("start", sa.String(32), nullable=False),  # shown in listings: prefix and the first characters
    sa.Column("sha256", sa.String(64), nullable=False, unique=True),
    sa.Column("scopes", sa.JSON, nullable=False),
    sa.Column("roles", sa.JSON, nullable=False),
    sa.Column("rate_limit", sa.Integer, nullable=True),  # requests per minute
    sa.Column("expires_at", sa.Float, nullable=True),
    sa.Column("status", sa.String(16), nullable=False),  # active | revoked
    sa.Column("replaced_by", sa.String(40), nullable=True),  # the key a rotation issued
    sa.Column("created_by", sa.String(200), nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("last_used_at", sa.Float, nullable=True),
    sa.Column("revoked_at", sa.Float, nullable=True),
)

key_usage = sa.Table(
    "keys_usage",
    metadata,
    sa.Column("key_id", sa.String(40), sa.ForeignKey("keys_api_keys.id"), primary_key=True),
    sa.Column("day", sa.String(10), primary_key=True),  # YYYY-MM-DD, UTC
    sa.Column("count", sa.BigInteger, nullable=False),
)

request_log = sa.Table(
    "keys_request_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.Float, nullable=False, index=True),
    sa.Column("request_id", sa.String(64), nullable=True),
    sa.Column("method", sa.String(16), nullable=False),
    sa.Column("path", sa.String(500), nullable=False),  # without the query string: no secrets from URLs
    sa.Column("route", sa.String(200), nullable=True),
    sa.Column("status", sa.Integer, nullable=False),
    sa.Column("duration_ms", sa.Float, nullable=False),
    sa.Column("platform_id", sa.String(40), nullable=True),
    sa.Column("client_id", sa.String(40), nullable=True),
    sa.Column("key_id", sa.String(40), nullable=True),
    sa.Column("consumer", sa.String(200), nullable=True),
    sa.Column("ip", sa.String(64), nullable=True),
    sa.Column("error_code", sa.String(64), nullable=True),
    sa.Index("ix_keys_request_log_platform_at", "platform_id", "at"),
)
