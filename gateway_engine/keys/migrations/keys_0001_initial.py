"""keys: platforms, clients, API keys, usage counters and the request log.

Revision ID: keys_0001
Revises:
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "keys_0001"
down_revision = None
branch_labels = ("keys",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "keys_platforms",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("code", sa.String(64), nullable=False, unique=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("active", sa.Boolean, nullable=False, default=True),
        sa.Column("metadata", sa.JSON, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "keys_clients",
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
    op.create_table(
        "keys_api_keys",
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
    op.create_table(
        "keys_usage",
        sa.Column("key_id", sa.String(40), sa.ForeignKey("keys_api_keys.id"), primary_key=True),
        sa.Column("day", sa.String(10), primary_key=True),  # YYYY-MM-DD, UTC
        sa.Column("count", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "keys_request_log",
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


def downgrade() -> None:
    op.drop_table("keys_request_log")
    op.drop_table("keys_usage")
    op.drop_table("keys_api_keys")
    op.drop_table("keys_clients")
    op.drop_table("keys_platforms")
