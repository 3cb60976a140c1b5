"""``channels.d``: channel declarations and the realtime server settings, compiled into a ``Realtime``.

Every file may declare channels; at most one declares ``server`` (paths, handshake plugins, limits,
backplane). Templates compile and env is resolved here, once; a mistake is a located config error.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from gateway_engine.config.documents import Document
from gateway_engine.config.durations import parse_duration
from gateway_engine.config.env import Interpolation
from gateway_engine.config.templates import TemplateError, compile_value
from gateway_engine.foundation.errors import ConfigError
from gateway_engine.foundation.plugin import Plugin

from .channels import Catalog, Channel, compile_channel
from .hub import Limits
from .socketio_app import SocketIoSettings
from .sources import TEMPLATE_NAMES, KafkaSource, PublishSource, RedisSource
from .sources import Mapping as SourceMapping


class Declared:
    """What the documents say, compiled: the catalog, the sources, and the server settings."""

    def __init__(self) -> None:
        self.channels: list[Channel] = []
        self.sources: list[Any] = []
        self.server: dict[str, Any] = {}
        self.server_doc: Document | None = None
        self.plugins: tuple[Plugin, ...] = ()
        self.limits = Limits()
        self.ticket_ttl = 30.0
        self.socketio: SocketIoSettings | None = None

    @property
    def catalog(self) -> Catalog:
        return Catalog(self.channels)


def compile_channels(
    docs: list[Document],
    environ: Mapping[str, str],
    errors: list[ConfigError],
    note_unset: Callable[..., None],
    plugin_chain: Callable[[Document, tuple, Mapping[str, Any]], tuple[Plugin, ...] | None],
) -> Declared:
    declared = Declared()
    seen: dict[str, str] = {}
    for doc in docs:
        interp = Interpolation(environ)
        data = interp.tree(doc.data)
        note_unset(doc, interp)
        if "server" in data:
            if declared.server_doc is not None:
                errors.append(
                    doc.error(("server",), f"the realtime server is already declared in {declared.server_doc.file}")
                )
            else:
                declared.server, declared.server_doc = data["server"], doc
        for i, spec in enumerate(data.get("channels", [])):
            path = ("channels", i)
            if spec["name"] in seen:
                errors.append(
                    doc.error(path + ("name",), f"channel {spec['name']!r} is already declared in {seen[spec['name']]}")
                )
                continue
            seen[spec["name"]] = doc.file
            subscribe = spec.get("subscribe", {})
            try:
                channel = compile_channel(
                    spec["name"],
                    subscribe.get("identity", {}),
                    subscribe.get("scopes", []),
                    spec.get("history", 100),
                    spec.get("description", ""),
                )
            except ValueError as exc:
                errors.append(doc.error(path + ("name",), str(exc)))
                continue
            declared.channels.append(channel)
            for j, source in enumerate(spec.get("sources", [])):
                built = _source(doc, path + ("sources", j), source, channel, errors)
                if built is not None:
                    declared.sources.append(built)
    _server(declared, errors, plugin_chain)
    return declared


def _server(declared: Declared, errors: list[ConfigError], plugin_chain: Callable[..., Any]) -> None:
    server, doc = declared.server, declared.server_doc
    if doc is None:
        return
    limits = server.get("limits", {})
    try:
        declared.limits = Limits(
            connections=limits.get("connections", 10000),
            per_identity=limits.get("per_identity", 10),
            subscriptions=limits.get("subscriptions", 50),
            queue=limits.get("queue", 256),
            slow_consumer=limits.get("slow_consumer", "drop_oldest"),
            message_bytes=limits.get("message_bytes", 16384),
            heartbeat=parse_duration(server.get("heartbeat", "25s")),
            history_channels=limits.get("history_channels", 10000),
        )
        declared.ticket_ttl = parse_duration(server.get("tickets", {}).get("ttl", "30s"))
    except ValueError as exc:
        errors.append(doc.error(("server",), str(exc)))
    plugins = plugin_chain(doc, ("server", "plugins"), server.get("plugins", {}))
    if plugins is not None:
        if not any(p.name == "auth" for p in plugins):
            errors.append(
                doc.error(
                    ("server", "plugins"), "the handshake chain needs the auth plugin: connections must authenticate"
                )
            )
        declared.plugins = plugins
    spec = server.get("socketio")
    if spec is not None:
        catalog = declared.catalog
        rooms = []
        for i, pattern in enumerate(spec.get("rooms", [])):
            room = catalog.by_pattern.get(pattern)
            if room is None or not room.identity:
                errors.append(
                    doc.error(
                        ("server", "socketio", "rooms", i), f"{pattern!r} is no declared channel bound to the identity"
                    )
                )
                continue
            rooms.append(room)
        origins = spec.get("origins")
        declared.socketio = SocketIoSettings(
            path=spec.get("path", "/socket.io"),
            namespace=spec["namespace"],
            rooms=tuple(rooms),
            register_event=spec.get("register_event"),
            origins=tuple(origins) if origins is not None else None,
        )


def _source(doc: Document, path: tuple, spec: dict[str, Any], channel: Channel, errors: list[ConfigError]) -> Any:
    try:
        mapping = SourceMapping(
            channel=channel,
            params={p: compile_value(spec.get("params", {}).get(p), TEMPLATE_NAMES) for p in channel.params},
            event=compile_value(spec.get("event", "message"), TEMPLATE_NAMES),
            data=compile_value(spec.get("data", "{{ value }}"), TEMPLATE_NAMES),
            when=compile_value(spec["when"], TEMPLATE_NAMES) if "when" in spec else None,
        )
    except TemplateError as exc:
        errors.append(doc.error(path, str(exc)))
        return None
    missing = [p for p in channel.params if p not in spec.get("params", {})]
    if missing:
        errors.append(doc.error(path + ("params",), f"say where {', '.join(missing)} of {channel.pattern!r} come from"))
        return None
    if "kafka" in spec:
        kafka = spec["kafka"]
        if not kafka.get("brokers"):
            return None  # its env var is unset: `validate` reports it, the gateway serves without this source
        return KafkaSource(
            kafka["brokers"],
            kafka["topic"],
            mapping,
            start=kafka.get("start", "latest"),
            options=_kafka_security(kafka.get("security", {})),
        )
    if "redis" in spec:
        if not spec["redis"].get("url"):
            return None
        return RedisSource(spec["redis"]["url"], spec["redis"]["channel"], mapping)
    return PublishSource(spec["publish"]["topic"], mapping)


_SECURITY = {
    "protocol": "security_protocol",
    "mechanism": "sasl_mechanism",
    "username": "sasl_plain_username",
    "password": "sasl_plain_password",
}


def _kafka_security(security: Mapping[str, Any]) -> dict[str, Any]:
    """aiokafka's options for SASL and TLS (values come from env through ``${VAR}``)."""
    options: dict[str, Any] = {_SECURITY[k]: v for k, v in security.items()}
    if "SSL" in str(security.get("protocol", "")):
        from aiokafka.helpers import create_ssl_context

        options.update(ssl_context=create_ssl_context())
    return options
