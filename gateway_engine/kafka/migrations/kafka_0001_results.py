"""kafka: the asynchronous results table (``results.py`` describes it).

Written out rather than built from ``results.py``, so that a later change there comes with a
revision of its own and this one keeps creating what it always created.

Revision ID: kafka_0001
Revises:
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "kafka_0001"
down_revision = None
branch_labels = ("kafka",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "kafka_results",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("headers", sa.Text, nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False, index=True),
    )


def downgrade() -> None:
    op.drop_table("kafka_results")
