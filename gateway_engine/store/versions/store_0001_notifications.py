"""store: the notification table SQLite peers poll (see ``notify.py``).

Revision ID: store_0001
Revises:
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "store_0001"
down_revision = None
branch_labels = ("store",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "store_notifications",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("channel", sa.String(100), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("store_notifications")
