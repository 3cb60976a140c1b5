"""Stored API keys, tenants (platforms and their clients) and the admin API, as a feature (docs/stored-keys.md)."""
