"""The keys feature: stored API keys and tenants, their verifier for the ``auth`` plugin, the ``keys``
transport (the admin API as YAML routes), the ``request_log`` plugin and the ``keys``/``platforms``/
``clients`` commands. Active when gateway.yaml has a ``keys`` section."""

from __future__ import annotations

import argparse
from typing import Any

from gateway_engine.compiled.features import Feature, FeatureInput
from gateway_engine.compiled.identity_forwarding import check_identity_forwarding
from gateway_engine.compiled.model import Contribution
from gateway_engine.foundation.errors import ConfigError
from gateway_engine.store import store_settings
from gateway_engine.upstreams.seam import Transport

from .caller import IDENTITY_HEADERS
from .log_plugin import RequestLogPlugin
from .names import KEYS, RUNTIME
from .settings import keys_settings

__all__ = ["KEYS", "VERIFIER", "KeysFeature"]
VERIFIER = "keys"  # the name routes give the auth plugin: `auth: {verifier: keys}`


def keys_transport(**options: Any) -> Transport:
    from .transport import KeysTransport

    return KeysTransport(**options)


keys_transport.schemes = ("keys://",)  # type: ignore[attr-defined]


class KeysFeature(Feature):
    name = "keys"
    order = 40
    transports = {"keys": keys_transport}
    plugins = {"request_log": RequestLogPlugin}

    def compile(self, given: FeatureInput) -> Contribution:
        gateway = given.core.gateway
        routes = [r for r in given.core.routes if r.upstream_template.startswith("keys://")]
        section = gateway.settings.get("keys")
        if section is None and "keys" not in gateway.written:
            for route in routes:
                given.errors.append(_error(route, "the keys transport needs a `keys` section in gateway.yaml"))
            if any(p.name == "auth" and p.options.get("verifier") == VERIFIER for p in given.core.plugins):
                given.errors.append(
                    ConfigError(
                        "auth names the `keys` verifier but gateway.yaml has no `keys` section (stored keys are off)",
                        file=f"{given.core.root}/gateway.yaml",
                        line=1,
                        col=1,
                    )
                )
            return Contribution()
        try:
            settings = keys_settings(section or {})
            storage = store_settings(gateway.settings, gateway.config_dir)
        except ValueError as exc:
            given.errors.append(ConfigError(f"keys: {exc}", file=f"{given.core.root}/gateway.yaml", line=1, col=1))
            return Contribution()
        check_identity_forwarding(routes, IDENTITY_HEADERS, "key admin", given.errors)
        from .runtime import KeysRuntime  # SQLAlchemy loads only for a config with stored keys

        runtime = KeysRuntime(settings, storage)
        gateway.verifiers[VERIFIER] = runtime.verifier
        gateway.shared(RUNTIME, lambda: runtime)
        for route in routes:
            transport = getattr(route.upstream, "transport", None)
            transport = getattr(transport, "inner", transport)
            if transport is not None and hasattr(transport, "bind_runtime"):
                transport.bind_runtime(runtime)
        return Contribution(startup=[runtime.start], shutdown=[runtime.stop], state=runtime)

    def add_commands(self, commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
        from .commands import add_commands

        add_commands(commands)


def _error(route: Any, message: str) -> ConfigError:
    return ConfigError(message, file=route.source_file, line=route.source_line, col=5, path=f"routes[{route.name}]")
