"""The feature seam: the one place where a feature plugs into the gateway.

A feature is a class registered under the ``gateway_engine.features`` entry-point
group (the built-in endpoints, webhooks and workflows are registered that way too,
so a third party adds one the same way). The core never imports a feature: the
compiler finds them here, hands each the documents of its own config folder and the
compiled core, and gets back a ``Contribution``. Removing a feature's entry point
removes its folder, endpoints, transports and commands and leaves the rest working.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, ClassVar

from gateway_engine.compiled.model import CompiledConfig, CompiledRoute, Contribution
from gateway_engine.config.documents import Document
from gateway_engine.foundation.errors import ConfigError
from gateway_engine.foundation.plugin import Plugin
from gateway_engine.upstreams.seam import TransportFactory

ENTRY_POINT_GROUP = "gateway_engine.features"


@dataclass(frozen=True)
class OwnedRoute:
    """A route holding one of the feature's route keys: compiled by the core, its call left to the feature."""

    route: CompiledRoute
    document: Document
    path: tuple  # the route's location in its document, e.g. ("routes", 3)
    spec: dict[str, Any]  # the route as written


@dataclass
class FeatureInput:
    """What a feature sees while a config compiles: its documents, the compiled core, and where to report errors.

    ``core`` is the config as compiled so far (routes, router, upstreams, gateway
    settings), without any contribution; endpoint handlers receive the live config
    at request time instead.
    """

    documents: list[Document]  # its folder's files, schema-checked
    core: CompiledConfig
    errors: list[ConfigError]  # append located errors: `validate` reports them
    note_unset: Callable[..., None]  # note env vars a document references but the environment lacks
    earlier: Mapping[str, Contribution]  # contributions of the features compiled before this one
    owned: list[OwnedRoute] = field(default_factory=list)  # its routes: a handler in ``handlers`` answers one
    #: ``plugin_chain(doc, path, {name: options})``: the gateway's default chain with these overrides, as a
    #: backend's ``plugins`` give it; found through the registry, checked and shared as a route's are, sorted by
    #: priority (None when one is wrong: an error says where). A feature runs it on what is not a route, e.g. a
    #: WebSocket handshake.
    plugin_chain: Callable[[Document, tuple, Mapping[str, Any]], "tuple[Plugin, ...] | None"] = lambda *a: ()


class Feature:
    """Subclass, set what applies, and register the class under the entry-point group."""

    name: ClassVar[str] = ""
    order: ClassVar[int] = 100  # lower compiles first; later features see ``earlier``
    folder: ClassVar[str | None] = None  # a config folder of YAML files, e.g. "webhooks.d"
    schema: ClassVar[str | None] = None  # the JSON Schema those files are checked against
    transports: ClassVar[Mapping[str, TransportFactory]] = {}
    plugins: ClassVar[Mapping[str, type[Plugin]]] = {}
    # route keys it owns: a route holding one keeps them as written in ``route.extensions`` and reaches the
    # feature in ``FeatureInput.owned``; the feature may answer it with a handler (``Contribution.handlers``,
    # in place of the upstream call) and may add hooks that run once its answer was written (``.after_answer``)
    route_keys: ClassVar[frozenset[str]] = frozenset()

    def compile(self, given: FeatureInput) -> Contribution:
        return Contribution()

    def add_commands(self, commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
        """Add CLI subcommands; each sets ``handler=fn(args, out, err) -> exit code`` as its default."""

    def add_worker_options(self, worker: argparse.ArgumentParser) -> None:
        """Add flags of its workers to ``gateway-engine worker`` (they arrive as the worker's ``options``)."""


def installed_features() -> tuple[Feature, ...]:
    """The features installed in this environment (the compiler runs them by ``order``)."""
    return tuple(ep.load()() for ep in entry_points(group=ENTRY_POINT_GROUP))
