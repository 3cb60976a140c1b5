"""Where the store lives: the ``store`` section of gateway.yaml, or a SQLite file in the data directory.

No section means the embedded default: ``gateway.db`` in the data directory, which is
``$GATEWAY_DATA`` (the ``--data`` option sets it), else ``store.data_dir``, else ``data/``
next to the config. ``store.url`` (a SQLAlchemy URL, usually ``${STORE_URL}``) points
several gateway instances at one shared database instead.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DATA_ENV = "GATEWAY_DATA"
_DRIVERS = {"postgresql": "postgresql+asyncpg", "postgres": "postgresql+asyncpg", "sqlite": "sqlite+aiosqlite"}


@dataclass(frozen=True)
class StoreSettings:
    """The store's URL (async driver), whether a start migrates it, and how often SQLite peers poll."""

    url: str
    migrate_on_start: bool = True
    poll_interval: float = 0.25  # seconds between looks at the notification table (SQLite only)

    @property
    def dialect(self) -> str:
        return self.url.partition(":")[0].partition("+")[0]

    def __repr__(self) -> str:  # the URL may carry a password
        return f"StoreSettings(dialect={self.dialect!r}, migrate_on_start={self.migrate_on_start})"


def store_settings(
    settings: Mapping[str, Any], config_dir: str, environ: Mapping[str, str] | None = None
) -> StoreSettings:
    """The store of a config from its gateway.yaml sections (already ${VAR}-interpolated)."""
    section = settings.get("store") or {}
    env = os.environ if environ is None else environ
    migrate = bool(section.get("migrate_on_start", True))
    poll = float(section.get("poll_interval", 0.25))
    url = section.get("url")
    if url:
        return StoreSettings(async_url(str(url)), migrate, poll)
    data = env.get(DATA_ENV) or section.get("data_dir") or str(Path(config_dir) / "data")
    path = Path(data)
    if not path.is_absolute():
        path = Path(config_dir) / path
    return StoreSettings(f"sqlite+aiosqlite:///{path / 'gateway.db'}", migrate, poll)


def async_url(url: str) -> str:
    """``postgresql://...`` and ``sqlite:///...`` with the async driver the store uses."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError("store.url must be a URL such as postgresql://user@host/db or sqlite:///path")
    name = scheme.partition("+")[0]
    if name not in _DRIVERS:
        raise ValueError(f"store.url: unsupported database {name!r} (use postgresql or sqlite)")
    return f"{_DRIVERS[name]}://{rest}"
