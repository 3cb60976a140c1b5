"""outbound: subscriptions, the outbox, deliveries and the attempt log (see ``tables.py``).

Revision ID: outbound_0001
Revises:
Create Date: 2026-12-02
"""

from alembic import op

from gateway_engine.outbound.tables import attempts, deliveries, endpoints, messages

revision = "outbound_0001"
down_revision = None
branch_labels = ("outbound",)
depends_on = None

TABLES = (endpoints, messages, deliveries, attempts)


def upgrade() -> None:
    bind = op.get_bind()
    for table in TABLES:
        table.create(bind)


def downgrade() -> None:
    bind = op.get_bind()
    for table in reversed(TABLES):
        table.drop(bind)
