"""The ``keys`` migration branch: platforms, clients, API keys, usage and the request log."""
