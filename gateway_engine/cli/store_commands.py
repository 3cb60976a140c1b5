"""``gateway-engine migrate``: bring the store's schema (every feature's branch) up to date, then exit.

A gateway also migrates on start (``store.migrate_on_start``, default true) under the
same lock; this command is for deployments that migrate in a release step instead.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from typing import TextIO

from gateway_engine.compiled.compiler import load_config
from gateway_engine.config.locations import add_config_option, config_dir
from gateway_engine.foundation.errors import ConfigErrors
from gateway_engine.store import DATA_ENV, StoreSettings, store_settings


def add_data_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data", help=f"directory of the embedded SQLite store (default: ${DATA_ENV} or data/ next to the config)"
    )


def apply_data_option(args: argparse.Namespace) -> None:
    """``--data`` reaches every worker (and every store user) through the environment."""
    if getattr(args, "data", None):
        os.environ[DATA_ENV] = os.path.abspath(args.data)


def add_store_commands(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    parser = commands.add_parser("migrate", help="upgrade the store's schema (every feature's branch) and exit")
    add_config_option(parser)
    add_data_option(parser)
    parser.set_defaults(handler=_migrate)


def settings_of(args: argparse.Namespace, err: TextIO) -> StoreSettings | None:
    """The store settings of ``--config`` (None after reporting a config error)."""
    apply_data_option(args)
    try:
        config = load_config(config_dir(args.config))
    except ConfigErrors as exc:
        err.write(f"{exc}\n")
        return None
    try:
        return store_settings(config.gateway.settings, config.gateway.config_dir)
    except ValueError as exc:
        err.write(f"{exc}\n")
        return None


def _migrate(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    settings = settings_of(args, err)
    if settings is None:
        return 1

    async def run() -> list[str]:
        from gateway_engine.store import acquire_store, migrate, release_store  # SQLAlchemy: only for `migrate`

        store = acquire_store(settings)
        try:
            return await migrate(store)
        finally:
            await release_store(store)

    applied = asyncio.run(run())
    out.write(f"applied {len(applied)} revision(s): {', '.join(applied)}\n" if applied else "up to date\n")
    return 0
