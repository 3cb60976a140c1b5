"""Each Kafka route's ``kafka:`` block compiled once: mode, topic, key and header templates, result location.

Run by the feature over the compiled core. Every problem is a located config error; only a
config without errors binds its settings to the transports (``KafkaTransport.bind_routes``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway_engine.compiled.model import CompiledRoute
from gateway_engine.compiled.plans import REQUEST_NAMES
from gateway_engine.config.env import Interpolation
from gateway_engine.config.templates import Render, TemplateError, compile_value
from gateway_engine.foundation.errors import ConfigError

from .messages import GATEWAY_HEADERS

SCHEME = "kafka://"


@dataclass(frozen=True)
class RouteSettings:
    """What one Kafka route produces and how it answers."""

    mode: str  # request-reply | fire-and-forget | result
    topic: str
    key: Render | None
    headers: tuple[tuple[str, Render], ...]
    location: str | None  # the result route's public path, `{id}` standing for the correlation id
    id_param: str  # result routes: the path parameter holding the id
    env: Mapping[str, str]


def is_kafka(route: CompiledRoute) -> bool:
    return route.upstream_template.startswith(SCHEME)


def compile_routes(
    routes: list[CompiledRoute], env: Mapping[str, str], errors: list[ConfigError]
) -> dict[str, RouteSettings]:
    """Settings by route qualified name, for every route on a Kafka upstream."""
    locations: dict[str, str] = {}
    for route in routes:
        if is_kafka(route) and route.extensions.get("kafka", {}).get("mode") == "result":
            names = route.template.names
            if len(names) != 1 or route.methods != ("GET",):
                errors.append(_error(route, "a result route is `method: GET` with one path parameter, the id"))
            elif route.backend in locations:
                errors.append(_error(route, "a backend has at most one result route"))
            else:
                locations[route.backend] = route.path.replace("{" + names[0] + "}", "{id}")
    out: dict[str, RouteSettings] = {}
    for route in routes:
        spec = route.extensions.get("kafka")
        if not is_kafka(route):
            if spec is not None:
                errors.append(_error(route, "`kafka:` applies only to a backend with `upstream.transport: kafka`"))
            continue
        settings = _route(route, Interpolation(env).tree(spec or {}), locations.get(route.backend), env, errors)
        if settings is not None:
            out[route.qualified_name] = settings
    return out


def _route(
    route: CompiledRoute, spec: dict[str, Any], location: str | None, env: Mapping[str, str], errors: list[ConfigError]
) -> RouteSettings | None:
    mode = spec.get("mode", "request-reply")
    topic = spec.get("topic", "")
    if mode != "result" and not topic:
        errors.append(_error(route, f"a {mode} route needs `kafka.topic`"))
        return None
    try:
        key = compile_value(spec["key"], REQUEST_NAMES) if spec.get("key") else None
        headers = []
        for name, value in spec.get("headers", {}).items():
            if name.lower() in GATEWAY_HEADERS:
                errors.append(_error(route, f"message header {name!r} is set by the gateway itself"))
                return None
            headers.append((name.lower(), compile_value(value, REQUEST_NAMES)))
    except TemplateError as exc:
        errors.append(_error(route, f"kafka: {exc}"))
        return None
    names = route.template.names
    return RouteSettings(
        mode=mode,
        topic=topic,
        key=key,
        headers=tuple(headers),
        location=location,
        id_param=names[0] if mode == "result" and names else "",
        env=env,
    )


def _error(route: CompiledRoute, message: str) -> ConfigError:
    return ConfigError(message, file=route.source_file, line=route.source_line, col=5, path=f"routes[{route.name}]")
