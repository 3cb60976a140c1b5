"""outbound: subscriptions, the outbox, deliveries and the attempt log (``tables.py`` describes them).

Written out rather than built from ``tables.py``, so that a later change there comes with a
revision of its own and this one keeps creating what it always created.

Revision ID: outbound_0001
Revises:
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "outbound_0001"
down_revision = None
branch_labels = ("outbound",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "outbound_endpoints",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("tenant", sa.String(200), nullable=False, index=True),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("events", sa.Text, nullable=False),
        sa.Column("headers", sa.Text, nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("disabled_reason", sa.String(200)),
        sa.Column("max_retries", sa.Integer),
        sa.Column("secret", sa.Text, nullable=False),
        sa.Column("previous_secret", sa.Text),
        sa.Column("previous_until", sa.Float),
        sa.Column("failing_since", sa.Float),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "outbound_messages",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("tenant", sa.String(200), nullable=False),
        sa.Column("event_type", sa.String(200), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("fanned", sa.Boolean, nullable=False, index=True),
    )
    op.create_table(
        "outbound_deliveries",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("message_id", sa.String(40), nullable=False, index=True),
        sa.Column("endpoint_id", sa.String(40), nullable=False, index=True),
        sa.Column("tenant", sa.String(200), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_at", sa.Float, nullable=False),
        sa.Column("lease_owner", sa.String(40)),
        sa.Column("lease_until", sa.Float),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("outbound_deliveries_due", "outbound_deliveries", ["status", "next_at"])
    op.create_table(
        "outbound_attempts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("delivery_id", sa.String(40), nullable=False),
        sa.Column("message_id", sa.String(40), nullable=False),
        sa.Column("endpoint_id", sa.String(40), nullable=False),
        sa.Column("tenant", sa.String(200), nullable=False),
        sa.Column("event_type", sa.String(200), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("status", sa.Integer),
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.Column("response", sa.Text, nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("next_retry", sa.Float),
    )
    op.create_index("outbound_attempts_by_endpoint", "outbound_attempts", ["tenant", "endpoint_id", "id"])


def downgrade() -> None:
    for table in ("outbound_attempts", "outbound_deliveries", "outbound_messages", "outbound_endpoints"):
        op.drop_table(table)
