"""The store: the database features keep their state in (keys, tenants, logs, outboxes).

Infrastructure beside ``upstreams``: it imports only ``config`` and ``foundation``,
and features build on it. ``docs/store.md`` describes the API:

    settings = store_settings(gateway.settings, gateway.config_dir)   # from gateway.yaml
    store = acquire_store(settings)         # one shared engine per URL and event loop
    await ensure_migrated(store)            # upgrade every feature's branch, under a lock
    async with store.engine.begin() as conn: ...   # SQLAlchemy Core
    await store.subscribe("channel", callback); await store.notify("channel", "payload")
    await release_store(store)
"""

from .database import Store, acquire_store, release_store
from .migrations import ENTRY_POINT_GROUP, current_revisions, ensure_migrated, migrate, migration_branches
from .settings import DATA_ENV, StoreSettings, async_url, store_settings

__all__ = [
    "DATA_ENV",
    "ENTRY_POINT_GROUP",
    "Store",
    "StoreSettings",
    "acquire_store",
    "async_url",
    "current_revisions",
    "ensure_migrated",
    "migrate",
    "migration_branches",
    "release_store",
    "store_settings",
]
