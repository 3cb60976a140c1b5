"""The Kafka feature: the ``kafka`` transport and the ``kafka:`` key of routes on it."""

from __future__ import annotations

from typing import Any

from gateway_engine.compiled.features import Feature, FeatureInput
from gateway_engine.compiled.model import CompiledRoute, Contribution, StateKey
from gateway_engine.foundation.errors import ConfigError
from gateway_engine.store import store_settings
from gateway_engine.upstreams.seam import Transport

from .definitions import SCHEME, RouteSettings, compile_routes

KAFKA_ROUTES: StateKey[dict[str, RouteSettings]] = StateKey("kafka")


def kafka_transport(**options: Any) -> Transport:
    from .transport import KafkaTransport  # aiokafka loads only for configs that use it

    return KafkaTransport(**options)


def _base_url(upstream: dict[str, Any]) -> str:
    """``kafka://`` and the first broker: the upstream's address for displays and the TCP health probe."""
    return SCHEME + str(upstream.get("brokers", "")).split(",")[0].strip()


kafka_transport.schemes = (SCHEME,)  # type: ignore[attr-defined]
kafka_transport.options = ("brokers", "kafka")  # type: ignore[attr-defined]
kafka_transport.base_url = _base_url  # type: ignore[attr-defined]


class KafkaFeature(Feature):
    name = "kafka"
    transports = {"kafka": kafka_transport}
    route_keys = frozenset({"kafka"})

    def compile(self, given: FeatureInput) -> Contribution:
        routes = list(given.core.routes)
        settings = compile_routes(routes, given.core.env, given.errors)
        transports: dict[int, tuple[CompiledRoute, Any]] = {}
        for route in routes:
            transport: Any = getattr(route.upstream, "transport", None)
            transport = getattr(transport, "inner", transport)
            if hasattr(transport, "bind_routes"):
                transports[id(transport)] = (route, transport)
        for route, transport in transports.values():
            if transport.settings.problem:
                given.errors.append(_located(route, f"upstream: {transport.settings.problem}"))

        gateway, store = given.core.gateway, None
        if transports:  # where asynchronous results are kept (reply.results: store)
            try:
                store = store_settings(gateway.settings, gateway.config_dir)
            except ValueError as exc:
                given.errors.append(ConfigError(f"store: {exc}", file="gateway.yaml", path="store"))

        async def bind() -> None:  # only a config that goes live binds its routes (and opens the store)
            for _, transport in transports.values():
                transport.bind_routes(settings, store)

        return Contribution(state=settings, startup=[bind])


def _located(route: CompiledRoute, message: str) -> ConfigError:
    return ConfigError(message, file=route.source_file, line=route.source_line, col=3, path="upstream")
