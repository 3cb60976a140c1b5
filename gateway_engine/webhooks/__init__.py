"""Inbound webhooks: signature-verified, replay-safe deliveries turned into durable actions.

Sources live in ``webhooks.d/*.yaml`` (schema ``webhooks``); ``compile_webhooks`` builds them
once per config, and the app serves their endpoints before the router.
"""

from .definitions import Source, WebhookSet, compile_webhooks

__all__ = ["Source", "WebhookSet", "compile_webhooks"]
