"""Schema migrations: Alembic, one branch per feature, every branch upgraded to its head.

Each feature owns its tables and a directory of Alembic revision files whose first
revision has ``down_revision = None`` and ``branch_labels = ("<feature>",)``. It
registers the directory's package under the ``gateway_engine.migrations`` entry-point
group (name: the branch label), so adding a feature's tables never touches another
feature's migrations. ``migrate`` runs ``upgrade heads`` over all of them, holding a
lock so that several gateways starting at once migrate one after the other.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import import_module
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from alembic.config import Config
from alembic.runtime.environment import EnvironmentContext
from alembic.script import ScriptDirectory

from .database import Store
from .locks import migration_lock

ENTRY_POINT_GROUP = "gateway_engine.migrations"


def migration_branches() -> dict[str, Path]:
    """Branch label → directory of its revision files, for every installed branch."""
    found = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        module = import_module(ep.value)
        found[ep.name] = Path(next(iter(module.__path__)))
    return dict(sorted(found.items()))


def _script(branches: Mapping[str, Path]) -> ScriptDirectory:
    config = Config()
    directories = [str(p) for p in branches.values()]
    config.set_main_option("script_location", directories[0])
    return ScriptDirectory(directories[0], version_locations=directories)


async def migrate(store: Store, branches: Mapping[str, Path] | None = None) -> list[str]:
    """Upgrade every branch to its head under the migration lock; return the revisions applied."""
    branches = migration_branches() if branches is None else branches
    script = _script(branches)
    async with migration_lock(store):
        async with store.engine.begin() as conn:
            applied: list[str] = await conn.run_sync(_upgrade, script)
    store.migrated = True
    return applied


def _upgrade(connection: Any, script: ScriptDirectory) -> list[str]:
    applied: list[str] = []

    def upgrade(revision: Any, _context: Any) -> Any:
        steps = script._upgrade_revs("heads", revision)
        applied.extend(step.revision.revision for step in steps)
        return steps

    with EnvironmentContext(Config(), script, fn=upgrade, destination_rev="heads") as env:
        env.configure(connection=connection, target_metadata=None)
        with env.begin_transaction():
            env.run_migrations()
    return applied


async def current_revisions(store: Store) -> set[str]:
    """The revisions the database is at (one per branch once migrated; empty before)."""
    from alembic.runtime.migration import MigrationContext

    async with store.engine.connect() as conn:
        return set(await conn.run_sync(lambda c: MigrationContext.configure(c).get_current_heads()))


async def ensure_migrated(store: Store) -> None:
    """Migrate once per store handle when its settings allow it (a gateway's start)."""
    if not store.migrated and store.settings.migrate_on_start:
        await migrate(store)
