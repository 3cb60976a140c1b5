"""The outbound feature's migration branch (``outbound``): its outbox, subscriptions and attempt log."""
