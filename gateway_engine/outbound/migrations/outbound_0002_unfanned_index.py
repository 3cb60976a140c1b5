"""outbound: the outbox's index on ``fanned`` becomes a partial index of the messages not fanned out yet.

A route's emits are fanned out in the transaction that writes them, so almost every message is written
``fanned = true``; a partial index holds only the few the dispatcher still has to fan out (keyed writes:
inbound webhooks, workflow steps), and an insert of a fanned-out message no longer touches it.

Revision ID: outbound_0002
Revises: outbound_0001
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "outbound_0002"
down_revision = "outbound_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_outbound_messages_fanned", table_name="outbound_messages")
    op.create_index(
        "outbound_messages_unfanned",
        "outbound_messages",
        ["created_at"],
        sqlite_where=sa.text("fanned = 0"),
        postgresql_where=sa.text("fanned = false"),
    )


def downgrade() -> None:
    op.drop_index("outbound_messages_unfanned", table_name="outbound_messages")
    op.create_index("ix_outbound_messages_fanned", "outbound_messages", ["fanned"])
