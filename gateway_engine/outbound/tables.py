"""The feature's tables (its own migration branch creates them): subscriptions, the outbox, deliveries, attempts.

``outbound_messages`` is the outbox: an emit is one insert there, and one ``outbound_deliveries`` row
per endpoint subscribed then (a route's emits are fanned out in the transaction that writes them; a
keyed write, by the dispatcher). Every try is recorded in ``outbound_attempts`` (the log the
subscriptions API shows).
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

endpoints = sa.Table(
    "outbound_endpoints",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("tenant", sa.String(200), nullable=False, index=True),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("events", sa.Text, nullable=False),  # JSON list of patterns
    sa.Column("headers", sa.Text, nullable=False),  # JSON object
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

messages = sa.Table(
    "outbound_messages",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("tenant", sa.String(200), nullable=False),
    sa.Column("event_type", sa.String(200), nullable=False),
    # the JSON body every attempt sends (``enveloped``), or only its data's JSON: a route's emit, whose body
    # is composed from the row when it is sent (``payload.compose``), so the write is smaller and cheaper
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("fanned", sa.Boolean, nullable=False),  # turned into deliveries (a route's emits: as written)
    sa.Column("enveloped", sa.Boolean, nullable=False, server_default=sa.true()),
    # the few not fanned out yet (keyed writes), oldest first: the dispatcher's ``fan_out`` reads only these
    sa.Index(
        "outbound_messages_unfanned",
        "created_at",
        sqlite_where=sa.text("fanned = 0"),
        postgresql_where=sa.text("fanned = false"),
    ),
)

deliveries = sa.Table(
    "outbound_deliveries",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("message_id", sa.String(40), nullable=False, index=True),
    sa.Column("endpoint_id", sa.String(40), nullable=False, index=True),
    sa.Column("tenant", sa.String(200), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),  # pending, succeeded, exhausted, skipped
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_at", sa.Float, nullable=False),
    sa.Column("lease_owner", sa.String(40)),
    sa.Column("lease_until", sa.Float),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Index("outbound_deliveries_due", "status", "next_at"),
)

attempts = sa.Table(
    "outbound_attempts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("delivery_id", sa.String(40), nullable=False),
    sa.Column("message_id", sa.String(40), nullable=False),
    sa.Column("endpoint_id", sa.String(40), nullable=False),
    sa.Column("tenant", sa.String(200), nullable=False),
    sa.Column("event_type", sa.String(200), nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("outcome", sa.String(20), nullable=False),  # succeeded, failed, timeout, refused
    sa.Column("status", sa.Integer),
    sa.Column("latency_ms", sa.Float, nullable=False),
    sa.Column("response", sa.Text, nullable=False),  # at most 4 KB of the answer
    sa.Column("error", sa.Text),
    sa.Column("next_retry", sa.Float),
    sa.Index("outbound_attempts_by_endpoint", "tenant", "endpoint_id", "id"),
)
