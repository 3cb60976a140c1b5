"""uvicorn's httptools protocol, with the head caps and the slow-client timeouts enforced while a request is read.

Why: uvicorn reads a request head whole before anything looks at its size, and times nothing until the
first answer. A 100 MB request line cost +200 MB before its 414; a silent or trickling client kept its
connection forever. Here:

- the bytes of a head are counted as they arrive: past ``max_request_line`` (the target) a 414, past
  ``max_head_bytes`` a 431, each at most one network read late, never buffering the rest;
- a head must be complete ``header_timeout`` after the connection opened (its first request) or after
  its first byte (later ones), else 408; a body must not pause for ``body_timeout``, else 408;
- at most ``max_pending_heads`` connections may be waiting for their head: a new one closes the oldest;
- at most ``max_connections`` connections are served; a request above it gets a 503.

Every refusal is the gateway's error envelope with ``Connection: close``; the client's further input is
then read and dropped for a moment (a lingering close), so an answer is not lost to a TCP reset.

A graceful shutdown (SIGTERM) closes the listener first; an idle keep-alive connection then stays open for
``_DRAIN_GRACE`` and answers what arrives on it with ``Connection: close`` (uvicorn drops it at once, so a
request a load balancer had just sent on its pooled connection was reset, and it retries only idempotent ones).
The settings are ``ServerSettings`` from ``GATEWAY_SERVER_SETTINGS`` (see ``_server_settings``).

Cost: no timer and no clock read per request (a uvloop timer armed and cancelled costs microseconds).
One sweep per server, every quarter of the shorter timeout (at most every second), checks the deadlines
against the time of the last sweep, so a timeout fires up to two sweeps late. A request whose head and
body arrive in one read (a keep-alive GET) costs a few flag checks and no dict operation: only a head or a
body still incomplete at the end of a read is registered with the sweep, once, at that read's end (the
deadline is the same as at its first byte, as the sweep's clock does not move within a read). Per body
chunk a flag; per network read while a head is incomplete, two length checks.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import httptools
import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from gateway_engine.config.server_settings import ServerSettings
from gateway_engine.foundation.envelope import timestamp
from gateway_engine.foundation.ids import random_hex
from gateway_engine.runtime.response_cycle import start_cycle

_LINGER = 2.0  # seconds a refused connection's input is read and dropped before it is closed ...
_DRAIN_GRACE = 1.0  # seconds an idle keep-alive connection is kept after a graceful shutdown began
_LINGER_BYTES = 4 * 1024 * 1024  # ... or until this much was dropped (reading is cheap; closing with unread input
#   sends a reset that can destroy the answer before a client still sending reads it)


# uvicorn's own callbacks, called directly on the per-request path (a zero-argument super() builds an object per call)
_on_body = HttpToolsProtocol.on_body
_on_message_complete = HttpToolsProtocol.on_message_complete


class _Refused(Exception):
    """Raised from a parser callback to stop parsing after the connection was answered."""


class _Watch:
    """One server's connections waiting for a head or reading a body, and the one timer that checks them."""

    def __init__(self, loop: asyncio.AbstractEventLoop, limits: ServerSettings) -> None:
        self.loop = loop
        self.limits = limits
        self.heads: dict[GatewayHttpProtocol, float] = {}  # deadline; oldest first, as every head gets the same time
        self.bodies: dict[GatewayHttpProtocol, None] = {}
        self.tick = min(1.0, max(0.05, min(limits.header_timeout, limits.body_timeout) / 4))
        self.timer: asyncio.TimerHandle | None = None
        self.now = 0.0  # the clock at the last sweep (or when the sweeps started again)

    def _run(self) -> None:
        self.now = self.loop.time()
        self.timer = self.loop.call_later(self.tick, self.sweep)

    def head(self, proto: GatewayHttpProtocol) -> None:
        heads = self.heads
        if len(heads) >= self.limits.max_pending_heads:
            oldest = next(iter(heads))
            del heads[oldest]
            oldest.evict()
        if self.timer is None:
            self._run()
        heads[proto] = self.now + self.tick + self.limits.header_timeout  # ``now`` is at most a tick old

    def body(self, proto: GatewayHttpProtocol) -> None:
        self.bodies[proto] = None
        if self.timer is None:
            self._run()

    def sweep(self) -> None:
        self.now = now = self.loop.time()
        late = []
        for proto, deadline in self.heads.items():
            if deadline > now:
                break
            late.append(proto)
        for proto in late:
            del self.heads[proto]
            proto.head_expired()
        for proto in list(self.bodies):
            proto.check_body(now)
        self.timer = self.loop.call_later(self.tick, self.sweep) if self.heads or self.bodies else None


class GatewayHttpProtocol(HttpToolsProtocol):
    settings: ClassVar[ServerSettings | None] = None  # read from the environment by the first connection

    def __init__(
        self, config: Any, server_state: Any, app_state: dict[str, Any], _loop: asyncio.AbstractEventLoop | None = None
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        cls = type(self)
        if cls.settings is None:
            cls.settings = ServerSettings.from_env()
        self.limits = cls.settings
        self.max_request_line = self.limits.max_request_line  # read on every request
        # the 503 above max_connections is answered here, as the envelope, instead of by uvicorn
        self.max_connections = self.limit_concurrency
        self.limit_concurrency = None
        watch = server_state.__dict__.get("gateway_watch")  # one per server, and so per event loop
        if watch is None:
            watch = server_state.__dict__["gateway_watch"] = _Watch(self.loop, self.limits)
        self.watch: _Watch = watch
        self.url = b""
        self.in_head = True  # the next bytes belong to a request head
        self.head_watched = False  # its deadline runs
        self.body_watched = False  # in the watch's bodies: the body of the current request is still coming
        self.head_bytes = 0
        self.refused = False  # answered and closing: input is dropped
        self.draining = False  # the server shuts down: every answer from now on closes its connection
        self.body_seen = False  # some body arrived since the last sweep
        self.body_idle_since = 0.0

    # -- connection ------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.head_watched = True
        self.watch.head(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.watch.heads.pop(self, None)
        self.watch.bodies.pop(self, None)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        if self.in_head:
            if self.refused:  # lingering after an answer: drop the input, up to a bound
                self.head_bytes += len(data)
                if self.head_bytes > _LINGER_BYTES:
                    self.transport.close()
                return
            self.head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
                self._watch_body()  # answered as a plain request
            return
        except httptools.HttpParserError:
            if not self.refused:  # a callback that refused has answered already
                self.logger.warning("Invalid HTTP request received.")
                self.send_400_response("Invalid HTTP request received.")
            return
        if self.in_head:
            if len(self.url) > self.max_request_line:
                self.refuse(414, "URI_TOO_LONG", f"The request target exceeds {self.limits.max_request_line} bytes.")
            elif not self.head_bytes:  # the heads that began in this read also ended in it: nothing to watch
                return
            elif self.head_bytes > self.limits.max_head_bytes:
                self.refuse(431, "HEADERS_TOO_LARGE", f"The request head exceeds {self.limits.max_head_bytes} bytes.")
            elif not self.head_watched:  # a later request's head is incomplete: its deadline starts with this read
                self.head_watched = True
                self.watch.head(self)
        else:
            self._watch_body()

    def _watch_body(self) -> None:
        """A request whose body did not end in this read must keep it coming (registered once, at that read's end)."""
        if not self.in_head and not self.body_watched:
            self.body_watched = True
            self.body_seen = True  # the next sweep starts the pause clock
            self.watch.body(self)

    def send_400_response(self, msg: str) -> None:
        self.refuse(400, "BAD_REQUEST", "The request is not valid HTTP/1.1.")

    # -- parser callbacks ------------------------------------------------
    def on_headers_complete(self) -> None:
        if self.head_watched:
            self.watch.heads.pop(self, None)
            self.head_watched = False
        self.head_bytes = 0
        if len(self.url) > self.max_request_line:
            self.refuse(414, "URI_TOO_LONG", f"The request target exceeds {self.limits.max_request_line} bytes.")
            raise _Refused
        if self.max_connections is not None and (
            len(self.connections) > self.max_connections or len(self.tasks) >= self.max_connections
        ):
            self.refuse(503, "SERVER_BUSY", "The gateway has too many open connections; retry later.")
            raise _Refused
        self.in_head = False
        start_cycle(self)  # a body that does not end in this read is watched by data_received
        if self.draining and self.cycle is not None:  # None after an upgrade (WebSocket)
            self.cycle.keep_alive = False

    def on_body(self, body: bytes) -> None:
        self.body_seen = True
        _on_body(self, body)

    def on_message_complete(self) -> None:
        if self.body_watched:
            self.watch.bodies.pop(self, None)
            self.body_watched = False
        self.in_head = True
        _on_message_complete(self)

    # -- graceful shutdown -------------------------------------------------
    def shutdown(self) -> None:
        """Called by uvicorn once the listener is closed: a request in flight finishes and closes the connection;
        an idle one answers a request already on its way, with ``Connection: close``, and closes after the grace."""
        self.draining = True
        if self.cycle is None or self.cycle.response_complete:
            self.loop.call_later(_DRAIN_GRACE, self._close_if_idle)
        else:
            self.cycle.keep_alive = False

    def _close_if_idle(self) -> None:
        if (self.cycle is None or self.cycle.response_complete) and not self.transport.is_closing():
            self.transport.close()

    # -- deadlines (called by the sweep) -----------------------------------
    def head_expired(self) -> None:
        self.head_watched = False
        if self.transport.is_closing():
            return
        if self.head_bytes:
            self.refuse(
                408, "REQUEST_TIMEOUT", f"The request head did not arrive within {self.limits.header_timeout:g}s."
            )
        else:
            self.transport.close()  # sent nothing: nobody to answer

    def evict(self) -> None:
        """Make room for a newer connection waiting for its head."""
        self.head_watched = False
        if self.head_bytes:
            self.refuse(503, "SERVER_BUSY", "Too many connections are waiting for their request head.")
        else:
            self.transport.close()

    def check_body(self, now: float) -> None:
        cycle = self.cycle
        if self.transport.is_closing():
            self.watch.bodies.pop(self, None)
            self.body_watched = False
        elif (
            self.body_seen
            or self.flow.read_paused
            or cycle.waiting_for_100_continue
            or (cycle.body and not cycle.response_complete)
        ):
            # the client sent some, or waits for our 100 Continue, or the app has not read what it sent yet
            self.body_seen = False
            self.body_idle_since = now
        elif now - self.body_idle_since >= self.limits.body_timeout:
            self.watch.bodies.pop(self, None)
            self.body_watched = False
            self.refuse(408, "REQUEST_TIMEOUT", f"The request body paused for more than {self.limits.body_timeout:g}s.")

    # -- answering -----------------------------------------------------------
    def refuse(self, status: int, code: str, message: str) -> None:
        """Answer with the envelope and close; stop reading. Input after it is dropped, never parsed.

        A refused head that follows a request still being answered gets no answer of its own: that
        answer is finished, then the connection closes. A refused body ends its own request.
        """
        self.watch.heads.pop(self, None)
        self.watch.bodies.pop(self, None)
        self.head_watched = self.body_watched = False
        in_head, self.in_head = self.in_head, True  # in_head routes later input to the drop in data_received
        self.refused = True
        self.head_bytes = 0  # from here: the bytes dropped
        cycle = self.cycle
        if cycle is not None:
            if in_head:
                if not cycle.response_complete:
                    cycle.keep_alive = False
                    return
            elif cycle.response_started:  # this request has (part of) its answer: it cannot be replaced, only cut
                self.transport.close()
                return
            else:
                cycle.disconnected = True  # the app's own answer, if it comes, is dropped
                cycle.message_event.set()
        request_id = random_hex()
        body = orjson.dumps(
            {
                "success": False,
                "error": {"code": code, "message": message},
                "meta": {"source": "gateway", "timestamp": timestamp(), "requestId": request_id},
            }
        )
        content = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.append(
            b"content-type: application/json\r\nx-request-id: %s\r\nconnection: close\r\n"
            b"content-length: %d\r\n\r\n" % (request_id.encode(), len(body))
        )
        content.append(body)
        transport = self.transport
        transport.write(b"".join(content))
        if transport.can_write_eof():
            transport.write_eof()
            self.loop.call_later(_LINGER, transport.close)
        else:
            transport.close()
