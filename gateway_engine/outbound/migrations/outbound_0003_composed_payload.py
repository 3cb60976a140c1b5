"""outbound: a message's payload may hold only its data's JSON, its body composed when it is sent.

A route's emit wrote the whole Standard Webhooks body (id, type, timestamp and data), which repeats three
columns of its own row; ``enveloped = false`` marks a payload that is only the data, the body composed
from the row by the sender. Rows written before hold whole bodies and read ``enveloped = true``.

Revision ID: outbound_0003
Revises: outbound_0002
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "outbound_0003"
down_revision = "outbound_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("outbound_messages", sa.Column("enveloped", sa.Boolean, nullable=False, server_default=sa.true()))


def downgrade() -> None:
    op.drop_column("outbound_messages", "enveloped")
