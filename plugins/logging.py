"""logging: one JSON line per request (no secrets, no bodies), to stdout or a file."""

from __future__ import annotations

import asyncio
import sys
import time

import orjson

from gateway_engine import Plugin, Reply, RequestContext, timestamp


class LoggingPlugin(Plugin):
    """Writes ``{time, request_id, method, path, route, backend, status, latency_ms, upstream_latency_ms, ...}``
    (plus ``upstream_calls`` for a route that called several backends).

    The path is logged without its query string (queries may carry tokens). Lines
    are buffered and written every ``flush_interval`` seconds, whenever ``buffer_bytes``
    have gathered, and at shutdown: a request costs one list append, and no single
    write grows with the request rate (a large write holds up every request in flight).
    """

    name = "logging"
    priority = 90_000
    runs_unrouted = True
    options_schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "format": {
                "enum": ["json"],
                "default": "json",
                "description": "Line format (JSON lines); `gateway-engine serve` then writes its own log lines (the server's, the engine's) as JSON too.",
            },
            "file": {"type": "string", "default": "-", "description": "Path of the log file, or `-` for stdout."},
            "flush_interval": {
                "type": "number",
                "exclusiveMinimum": 0,
                "default": 0.5,
                "description": "Seconds between flushes of buffered lines.",
            },
            "buffer_bytes": {
                "type": "integer",
                "minimum": 1,
                "default": 65536,
                "description": "Write the buffered lines as soon as they reach this many bytes (1: every line at once).",
            },
            "fields": {
                "type": "array",
                "items": {"enum": ["client_ip", "consumer", "user_agent"]},
                "default": ["client_ip", "consumer"],
                "description": "Optional fields added to each line.",
            },
        },
    }

    def __init__(self, options, gateway):
        super().__init__(options, gateway)
        self.path = options["file"]
        self.interval = options["flush_interval"]
        self.buffer_bytes = options["buffer_bytes"]
        self._buffered = 0
        self.fields = set(options["fields"])
        self._buffer: list[bytes] = []
        self._stream = None
        self._task: asyncio.Task | None = None

    def process_log_format(self) -> str | None:
        return str(self.options["format"])  # `serve` writes its own lines in the same format

    async def startup(self) -> None:
        self._stream = sys.stdout.buffer if self.path == "-" else open(self.path, "ab")  # noqa: ASYNC230 (once, at startup)
        self._task = asyncio.get_running_loop().create_task(self._flusher())

    async def shutdown(self) -> None:
        if self._task:
            self._task.cancel()
        self.flush()
        if self._stream is not None and self.path != "-":
            self._stream.close()
        self._stream = None

    async def _flusher(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.flush()

    def flush(self) -> None:
        if self._buffer and self._stream is not None:
            lines, self._buffer, self._buffered = self._buffer, [], 0
            self._stream.write(b"".join(lines))
            self._stream.flush()

    async def on_response(self, ctx: RequestContext, reply: Reply) -> None:
        now = time.perf_counter()
        route = ctx.route
        line = {
            "time": timestamp(),
            "request_id": ctx.request_id,
            "method": ctx.method,
            "path": ctx.path,
            "route": route.name if route else None,
            "backend": ctx.backend,
            "status": reply.status,
            "latency_ms": round((now - ctx.started) * 1000, 3),
            "upstream_latency_ms": round(ctx.upstream_latency * 1000, 3) if ctx.upstream_latency is not None else None,
        }
        if "client_ip" in self.fields:
            line["client_ip"] = ctx.client_ip
        if "consumer" in self.fields:
            line["consumer"] = ctx.consumer
        if "user_agent" in self.fields:
            line["user_agent"] = ctx.headers.get("user-agent")
        calls = ctx.state.get("upstream_calls")
        if calls is not None:  # a route that made several upstream calls: each one's backend, status and latency
            line["upstream_calls"] = calls
        if self._stream is not None:  # not started: an offline run (explain) logs nothing
            data = orjson.dumps(line) + b"\n"
            self._buffer.append(data)
            self._buffered += len(data)
            if self._buffered >= self.buffer_bytes:
                self.flush()
