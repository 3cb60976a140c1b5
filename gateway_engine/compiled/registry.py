"""Plugin discovery: built-ins and third-party plugins alike come from one entry-point group."""

from __future__ import annotations

from collections.abc import Mapping
from importlib.metadata import entry_points

from gateway_engine.foundation.plugin import Plugin

GROUP = "gateway_engine.plugins"


class PluginLoadError(Exception):
    """An entry point that does not name a proper Plugin class."""


def discover(extra: Mapping[str, type[Plugin]] | None = None) -> dict[str, type[Plugin]]:
    """Every installed plugin by name (the engine never imports a plugin module by name), plus ``extra``
    (the plugins features contribute; an installed plugin of the same name wins)."""
    found: dict[str, type[Plugin]] = {}
    for ep in entry_points(group=GROUP):
        if ep.name in found:
            continue  # the first distribution on sys.path wins, as for console scripts
        cls = ep.load()
        if not (isinstance(cls, type) and issubclass(cls, Plugin)):
            raise PluginLoadError(f"entry point {ep.name} = {ep.value} is not a gateway_engine.Plugin subclass")
        if cls.name != ep.name:
            raise PluginLoadError(
                f"entry point {ep.name!r} names plugin class {cls.__name__} whose name is {cls.name!r}"
            )
        found[ep.name] = cls
    for name, cls in (extra or {}).items():
        found.setdefault(name, cls)
    return found
