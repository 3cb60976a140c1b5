"""Outbound webhooks: events declared in ``events.d``, tenant subscriptions, signed durable delivery."""
