"""The gateway's own endpoints as a feature: health, backend health, metrics, the OpenAPI document, the docs page."""

from __future__ import annotations

import argparse
from typing import TextIO

import orjson

from gateway_engine.compiled.features import Feature, FeatureInput
from gateway_engine.compiled.model import Contribution, StateKey
from gateway_engine.config.locations import config_dir
from gateway_engine.endpoints.builtins import Builtins
from gateway_engine.foundation.errors import ConfigError

#: the config's built-in endpoints: ``config.state(BUILTINS)``
BUILTINS: StateKey[Builtins] = StateKey("endpoints")


class EndpointsFeature(Feature):
    name = "endpoints"
    order = 1000  # last: the OpenAPI document describes what every other feature contributed

    def compile(self, given: FeatureInput) -> Contribution:
        views = [v["path"] for v in (given.core.gateway.settings.get("health") or {}).get("views") or []]
        for path in sorted({p for p in views if views.count(p) > 1}):
            given.errors.append(
                ConfigError(f"the path {path!r} is given twice", file="gateway.yaml", path="health.views")
            )
        if given.errors:  # the config will not load: build nothing from a partial one
            return Contribution()
        earlier = given.earlier.values()
        builtins = Builtins(given.core, [c.openapi_paths for c in earlier], [c.openapi_webhooks for c in earlier])
        return Contribution(endpoints=dict(builtins.table), state=builtins)

    def add_commands(self, commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
        openapi = commands.add_parser("openapi", help="print the OpenAPI 3.1 document generated from the config")
        openapi.add_argument(
            "--config", help="config directory, or its gateway.yaml (default: $GATEWAY_CONFIG, else .)"
        )
        openapi.set_defaults(handler=_openapi)


def _openapi(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from gateway_engine.compiled.compiler import load_config
    from gateway_engine.foundation.errors import ConfigErrors

    try:
        config = load_config(config_dir(args.config))
    except ConfigErrors as exc:
        err.write(f"{exc}\n")
        return 1
    builtins = config.state(BUILTINS)
    if builtins is None:
        err.write("the endpoints feature built nothing for this config\n")
        return 1
    out.write(orjson.dumps(builtins.openapi(), option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0
