"""uvicorn's request-response cycle, writing an answer's head together with its first body bytes.

Why: uvicorn writes the head of every answer as soon as ``http.response.start`` arrives, then the
body in a second ``write()``: two system calls and two TCP segments per answer, and it checks every
header name and value with its own regular expression search. On the gateway's hot path (a JSON
answer, head then body at once) that was about a tenth of the server's CPU time. Here:

- a head with a ``content-length`` waits for the first body message and goes out in the same
  ``write()``; a chunked answer (an event stream, a body of unknown length) and a HEAD, 204 or 304
  answer write their head at once, so a client never waits on a stream for its head;
- the names and the values are checked in one search each, over all of them joined: the same
  characters are refused (both expressions match single characters), so the same headers are.

Everything else is uvicorn's ``RequestResponseCycle.send`` (framing, ``connection: close``, the
length checks, the access log), and ``start_cycle`` is uvicorn's ``on_headers_complete`` making one.
"""

from __future__ import annotations

import asyncio
import urllib.parse
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import (
    HEADER_RE,
    HEADER_VALUE_RE,
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)
from uvicorn.protocols.utils import get_client_addr, get_path_with_query_string


class GatewayCycle(RequestResponseCycle):
    """One request's answer; ``pending`` is a head built but not written yet (its body comes next)."""

    pending: bytes | None = None

    async def send(self, message: Any) -> None:
        if self.flow.write_paused and not self.disconnected:
            await self.flow.drain()
        if self.disconnected:
            return
        if not self.response_started:
            if message["type"] != "http.response.start":
                raise RuntimeError(f"Expected ASGI message 'http.response.start', but got '{message['type']}'.")
            self.response_started = True
            self.waiting_for_100_continue = False
            if self.access_log:
                self.access_logger.info(
                    '%s - "%s %s HTTP/%s" %d',
                    get_client_addr(self.scope),
                    self.scope["method"],
                    get_path_with_query_string(self.scope),
                    self.scope["http_version"],
                    message["status"],
                )
            self._start(message["status"], self.default_headers + list(message.get("headers", [])))
        elif not self.response_complete:
            if message["type"] != "http.response.body":
                raise RuntimeError(f"Expected ASGI message 'http.response.body', but got '{message['type']}'.")
            self._body(message.get("body", b""), message.get("more_body", False))
        else:
            raise RuntimeError(f"Unexpected ASGI message '{message['type']}' sent, after response already completed.")

    def _start(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        if HEADER_RE.search(b"".join([name for name, _ in headers])):
            raise RuntimeError("Invalid HTTP header name.")
        if HEADER_VALUE_RE.search(b"".join([value for _, value in headers])):
            raise RuntimeError("Invalid HTTP header value.")
        content = [STATUS_LINE[status]]
        has_connection_close = False
        for name, value in headers:
            name = name.lower()
            if name == b"content-length" and self.chunked_encoding is None:
                self.expected_content_length = int(value.decode())
                self.chunked_encoding = False
            elif name == b"transfer-encoding" and value.lower() == b"chunked":
                self.expected_content_length = 0
                self.chunked_encoding = True
            elif name == b"connection":
                if b"close" in [token.lower().strip() for token in value.split(b",")]:
                    self.keep_alive = False
                    has_connection_close = True
            content.extend([name, b": ", value, b"\r\n"])
        if not self.keep_alive and not has_connection_close:
            content.append(b"connection: close\r\n")
        head_only = self.scope["method"] == "HEAD" or status in (204, 304)
        if self.chunked_encoding is None and not head_only:  # neither length nor transfer-encoding given
            self.chunked_encoding = True
            content.append(b"transfer-encoding: chunked\r\n")
        content.append(b"\r\n")
        if self.chunked_encoding or head_only:
            self.transport.write(b"".join(content))
        else:
            self.pending = b"".join(content)

    def _body(self, body: bytes, more_body: bool) -> None:
        head, self.pending = self.pending, None
        if self.scope["method"] == "HEAD":
            self.expected_content_length = 0
        elif self.chunked_encoding:
            content = [b"%x\r\n" % len(body), body, b"\r\n"] if body else []
            if not more_body:
                content.append(b"0\r\n\r\n")
            self.transport.write(b"".join(content))
        else:
            if len(body) > self.expected_content_length:
                raise RuntimeError("Response content longer than Content-Length")
            self.expected_content_length -= len(body)
            if head is not None:
                self.transport.write(head + body)
            elif body:
                self.transport.write(body)
        if not more_body:
            if self.expected_content_length != 0:
                raise RuntimeError("Response content shorter than Content-Length")
            self.response_complete = True
            self.message_event.set()
            if not self.keep_alive:
                self.transport.close()
            self.on_response()


def start_cycle(proto: HttpToolsProtocol) -> None:
    """uvicorn's ``on_headers_complete`` with a ``GatewayCycle``; the connection cap was checked by the caller."""
    parser = proto.parser
    http_version = parser.get_http_version()
    proto.scope["method"] = parser.get_method().decode("ascii")
    if http_version != "1.1":
        proto.scope["http_version"] = http_version
    if parser.should_upgrade() and proto._should_upgrade():
        return
    parsed_url = httptools.parse_url(proto.url)
    raw_path = parsed_url.path
    path = raw_path.decode("ascii")
    if "%" in path:
        path = urllib.parse.unquote(path)
    proto.scope["path"] = proto.root_path + path
    proto.scope["raw_path"] = proto.root_path.encode("ascii") + raw_path
    proto.scope["query_string"] = parsed_url.query or b""
    existing = proto.cycle
    cycle = proto.cycle = GatewayCycle(
        scope=proto.scope,
        transport=proto.transport,
        flow=proto.flow,
        logger=proto.logger,
        access_logger=proto.access_logger,
        access_log=proto.access_log,
        default_headers=proto.server_state.default_headers,
        message_event=asyncio.Event(),
        expect_100_continue=proto.expect_100_continue,
        keep_alive=http_version != "1.0" and parser.should_keep_alive(),
        on_response=proto.on_response_complete,
    )
    if existing is None or existing.response_complete:
        proto._start_asgi_task(cycle, proto.app)
    else:  # a pipelined request waits for the answer before it
        proto.flow.pause_reading()
        proto.pipeline.appendleft((cycle, proto.app))
