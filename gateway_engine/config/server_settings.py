"""gateway.yaml's ``server`` section: the timeouts and caps the HTTP server enforces on clients.

Kept apart from the protocol so loading a config never imports uvicorn. ``serve`` hands the settings
to each uvicorn worker in ``GATEWAY_SERVER_SETTINGS`` (JSON): workers build the app from a factory
and the protocol from a class, so the environment is what both see. They apply at start, not on reload.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from gateway_engine.config.durations import parse_duration

ENV_VAR = "GATEWAY_SERVER_SETTINGS"
_DURATIONS = ("header_timeout", "body_timeout", "keep_alive_timeout")


@dataclass(frozen=True)
class ServerSettings:
    header_timeout: float = 10.0  # from connection open (or a later request's first byte) to the end of its head
    body_timeout: float = 30.0  # longest pause in a request body while it is being read
    keep_alive_timeout: float = 5.0  # an idle keep-alive connection is closed after this
    max_connections: int = 4096  # open connections; requests above it get 503
    max_pending_heads: int = 1000  # connections still sending their head; above it the oldest is closed
    max_head_bytes: int = 65536  # request line + headers as sent (431 above it, while reading)
    max_request_line: int = 8192  # the request target (414 above it, while reading)
    websocket_compression: bool = False  # permessage-deflate: ~40 KB more per socket, for small JSON frames
    websocket_implementation: str = "wsproto"  # uvicorn's --ws; the one that costs least per socket (performance.md)
    websocket_max_bytes: int = 1048576  # largest client message the server assembles before the app sees it

    def to_env(self) -> str:
        return orjson.dumps(dataclasses.asdict(self)).decode()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> ServerSettings:
        text = environ.get(ENV_VAR)
        return cls(**orjson.loads(text)) if text else cls()


def server_settings(data: Mapping[str, Any], header_bytes: int) -> ServerSettings:
    """The settings from the (schema-validated) section; ``ValueError(key, message)`` for a bad duration.

    Unset, ``max_head_bytes`` is 64 KiB, or ``limits.header_bytes`` + ``max_request_line`` when that
    is larger, so raising the header limit alone never makes the protocol refuse first.
    """
    values: dict[str, Any] = {}
    for name, value in data.items():
        try:
            if name == "websocket_compression":
                values[name] = bool(value)
                continue
            if name == "websocket_implementation":
                values[name] = str(value)
                continue
            values[name] = parse_duration(value) if name in _DURATIONS else int(value)
        except ValueError as exc:
            raise ValueError(name, str(exc)) from None
    if "max_head_bytes" not in values:
        line = values.get("max_request_line", ServerSettings.max_request_line)
        values["max_head_bytes"] = max(ServerSettings.max_head_bytes, header_bytes + line)
    return ServerSettings(**values)
