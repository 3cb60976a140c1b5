"""The store: the database features keep their state in (keys, tenants, logs, outboxes).

Infrastructure beside ``upstreams``: it imports only ``config`` and ``foundation``,
and features build on it. ``docs/store.md`` describes the API:

    settings = store_settings(gateway.settings, gateway.config_dir)   # from gateway.yaml
    store = acquire_store(settings)         # one shared engine per URL and event loop
    await ensure_migrated(store)            # upgrade every feature's branch, under a lock
    async with store.engine.begin() as conn: ...   # SQLAlchemy Core
    await store.subscribe("channel", callback); await store.notify("channel", "payload")
    await release_store(store)

The names load on first use (PEP 562): SQLAlchemy and Alembic cost ~28 MB per worker, which a config
that never opens the store (a realtime-only gateway) does not pay.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .database import Store, acquire_store, release_store
    from .lazy import LazyStore
    from .migrations import ENTRY_POINT_GROUP, current_revisions, ensure_migrated, migrate, migration_branches
    from .settings import DATA_ENV, StoreSettings, async_url, store_settings

_WHERE = {
    "Store": "database",
    "LazyStore": "lazy",
    "acquire_store": "database",
    "release_store": "database",
    "ENTRY_POINT_GROUP": "migrations",
    "current_revisions": "migrations",
    "ensure_migrated": "migrations",
    "migrate": "migrations",
    "migration_branches": "migrations",
    "DATA_ENV": "settings",
    "StoreSettings": "settings",
    "async_url": "settings",
    "store_settings": "settings",
}
__all__ = [
    "DATA_ENV",
    "ENTRY_POINT_GROUP",
    "LazyStore",
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


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
