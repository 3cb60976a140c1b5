"""Plugin chains: a route's plugins from the default chain and its overrides, instantiated once per options.

Each distinct (plugin, options) pair is one instance shared by every route that uses it;
options are checked against the plugin's schema and its own ``check_options`` first.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from gateway_engine.compiled.model import CompiledRoute
from gateway_engine.config.documents import Document
from gateway_engine.config.env import Interpolation
from gateway_engine.config.schema import fill_defaults, options_validator, validate_value
from gateway_engine.config.suggest import did_you_mean
from gateway_engine.foundation.errors import ConfigError
from gateway_engine.foundation.plugin import GatewayInfo, Plugin


class PluginChains:
    """The part of the compiler that builds plugin chains (mixed into it; it shares its errors)."""

    errors: list[ConfigError]
    registry: dict[str, type[Plugin]]
    instances: dict[tuple[str, str], Plugin]
    gateway: GatewayInfo
    environ: dict[str, str]
    default_chain: list[list[Any]]

    def _strip_everywhere(self, routes: list[CompiledRoute]) -> list[CompiledRoute]:
        """Headers any plugin consumes or sets (credentials, identity) are stripped on every route,
        also where that plugin is off (``auth: none``), so a client can never spoof them."""
        consumed = set()
        for plugin in self.instances.values():
            consumed |= {h.lower() for h in getattr(plugin, "strip_request_headers", ())}
        return [
            dataclasses.replace(
                r,
                strip_headers=frozenset(r.strip_headers | (consumed - r.request.forward_headers)),
                reserved_headers=r.reserved_headers | consumed,
            )
            for r in routes
        ]

    def _default_chain(self, doc: Document, interp: Interpolation) -> list[list[Any]]:
        chain: list[list[Any]] = []
        for i, entry in enumerate(doc.data.get("plugins", [])):
            name, options = (entry, None) if isinstance(entry, str) else next(iter(entry.items()))
            if any(c[0] == name for c in chain):
                self.errors.append(doc.error(("plugins", i), f"plugin {name!r} is listed twice"))
                continue
            where = (doc, ("plugins", i) if isinstance(entry, str) else ("plugins", i, name))
            chain.append([name, interp.tree(options or {}), where])
        return chain

    def _chain_for(self, default_chain: list, overrides: list[tuple[Document, tuple, dict, Interpolation]]) -> list:
        chain = [list(item) for item in default_chain]
        for doc, path, mapping, interp in overrides:
            for name, opts in mapping.items():
                where = (doc, path + (name,))
                existing = next((c for c in chain if c[0] == name), None)
                if opts is False:
                    if existing:
                        chain.remove(existing)
                    continue
                opts = interp.tree(opts or {})
                if existing:
                    existing[1] = {**existing[1], **opts}
                    existing[2] = where
                else:
                    chain.append([name, opts, where])
        return chain

    def _instantiate(self, chain: list) -> tuple[Plugin, ...] | None:
        plugins: list[Plugin] = []
        ok = True
        for name, options, (doc, path) in chain:
            cls = self.registry.get(name)
            if cls is None:
                known = ", ".join(sorted(self.registry)) or "none installed"
                hint = did_you_mean(name, self.registry)
                self.errors.append(doc.error(path, f"unknown plugin {name!r}{hint}; installed plugins: {known}"))
                ok = False
                continue
            key = (name, _canonical(options))
            if key not in self.instances:
                problems = validate_value(doc, path, options, options_validator(cls.options_schema))
                if not problems:  # semantic checks only see options of the right shape
                    problems = [
                        doc.error(path, msg) for msg in cls.check_options(fill_defaults(cls.options_schema, options))
                    ]
                if problems:
                    self.errors.extend(problems)
                    ok = False
                    continue
                try:
                    self.instances[key] = cls(fill_defaults(cls.options_schema, options), self.gateway)
                except (ValueError, TypeError, OSError) as exc:
                    self.errors.append(doc.error(path, f"plugin {name!r}: {exc}"))
                    ok = False
                    continue
            plugins.append(self.instances[key])
        if not ok:
            return None
        return tuple(sorted(plugins, key=lambda p: (-p.priority, p.name)))

    def _feature_chain(self, doc: Document, path: tuple, mapping: Mapping[str, Any]) -> tuple[Plugin, ...] | None:
        """A chain for a feature's own use (``FeatureInput.plugin_chain``): the default chain with ``mapping``
        as overrides, exactly as a backend's ``plugins`` (``false`` drops a plugin)."""
        overrides = [(doc, path, dict(mapping), Interpolation(self.environ))]
        return self._instantiate(self._chain_for(self.default_chain, overrides))

    # -- backends ------------------------------------------------------------


def chain_tables(plugins: tuple[Plugin, ...]) -> tuple[tuple[Plugin, ...], tuple[tuple[Plugin, ...], ...]]:
    """The request-phase plugins, and for each of them the response phase to run if it answers
    (only plugins that ran, reversed); the last entry is the full response phase."""
    request_plugins = tuple(p for p in plugins if type(p).on_request is not Plugin.on_request)
    responders = [p for p in plugins if type(p).on_response is not Plugin.on_response]
    position = {id(p): i for i, p in enumerate(plugins)}
    chains = tuple(
        tuple(reversed([p for p in responders if position[id(p)] <= position[id(rp)]])) for rp in request_plugins
    )
    return request_plugins, chains + (tuple(reversed(responders)),)


def shorthands(doc: Document, path: tuple, spec: dict, interp: Interpolation) -> list[tuple]:
    """Plugin overrides of a backend or route: ``plugins`` plus the ``auth``/``rate_limit`` shorthands."""
    out = []
    if spec.get("plugins"):
        out.append((doc, path + ("plugins",), spec["plugins"], interp))
    if "auth" in spec:
        out.append((doc, path, {"auth": False if spec["auth"] == "none" else spec["auth"]}, interp))
    if "rate_limit" in spec:
        out.append((doc, path, {"rate_limit": {"limit": spec["rate_limit"]}}, interp))
    return out


def _canonical(options: dict[str, Any]) -> str:
    return json.dumps(options, sort_keys=True, default=str)
