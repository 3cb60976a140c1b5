"""One upstream HTTP/1.1 connection as an explicit state machine: IDLE -> WRITING -> READING_HEAD -> READING_BODY -> COMPLETE | BROKEN."""

from __future__ import annotations

import asyncio
from collections import deque

from gateway_engine.upstreams.http1_fields import (
    _CHUNK_SIZE_RE,
    _CHUNKED,
    _HEAD_BYTES,
    _LENGTH,
    _NO_BODY,
    _STATUS_CODES,
    _STATUS_PREFIXES,
    _UNTIL_EOF,
    MAX_HEAD,
    _parse_fields,
)
from gateway_engine.upstreams.seam import protocol_error, timeout_error, unavailable_error

_HIGH_WATER = 256 * 1024  # pause reading the upstream socket above this many buffered bytes

IDLE = "idle"  # in the pool (or new): any byte received now retires the connection
WRITING = "writing"  # the request is going out; an early answer's head is parsed already
READING_HEAD = "reading head"  # the request is out, the answer's head is not complete
READING_BODY = "reading body"
COMPLETE = "complete"  # the answer ended exactly and the connection may carry another exchange
BROKEN = "broken"  # never reused: an error, surplus bytes, or an answer that ends the connection


class _Connection(asyncio.Protocol):
    """One upstream connection carrying one exchange at a time; ``state`` says where that exchange is."""

    __slots__ = (
        "transport",
        "loop",
        "state",
        "closed",
        "_write_ready",
        "method",
        "status",
        "headers",
        "headers_done",
        "chunks",
        "buffered",
        "error",
        "data_waiter",
        "received_any",
        "paused",
        "request_sent",
        "keep_alive",
        "message_done",
        "buf",
        "scanned",
        "head_bytes",
        "mode",
        "length",
        "remaining",
        "trailers",
    )

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()  # kept: each get_running_loop() call costs a getpid() syscall
        self.state = IDLE
        self.closed = False
        self._write_ready = asyncio.Event()
        self._write_ready.set()
        self.status = 0
        self.headers: list[tuple[str, str]] = []
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.error: BaseException | None = None
        self.data_waiter: asyncio.Future | None = None
        self.paused = False
        self.buf: bytes | bytearray = b""
        self.scanned = 0  # how far the head buffer was searched for its end
        self.mode = _NO_BODY
        self.length = 0  # the Content-Length of a _LENGTH body
        self.remaining = 0  # body bytes still due (_LENGTH) or in the current chunk; -1: a chunk's CRLF is due
        self.trailers = False
        self.begin("")
        self.state = IDLE

    def begin(self, method: str) -> asyncio.Future:
        """A new exchange. Only what an exchange changes on its way to COMPLETE is reset: a connection that ended
        any other way is never reused (``pooled`` empties the body queue)."""
        self.method = method
        self.received_any = self.request_sent = self.keep_alive = self.message_done = False
        self.head_bytes = 0
        self.state = WRITING
        self.headers_done = self.loop.create_future()
        return self.headers_done

    def sent(self) -> None:
        """The whole request is written."""
        self.request_sent = True
        if self.state is WRITING:
            self.state = READING_HEAD

    # -- asyncio.Protocol --------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.received_any = True
        state = self.state
        if state is READING_BODY:
            mode = self.mode
            if mode is _LENGTH:
                remaining = self.remaining
                if len(data) < remaining:
                    self.remaining = remaining - len(data)
                    self._deliver(data)
                    return
                self._deliver(data[:remaining] if len(data) > remaining else data)
                self._end(surplus=len(data) > remaining)
            elif mode is _CHUNKED:
                self._read_chunked(self.buf + data if self.buf else data)
            else:
                self._deliver(data)
        elif state is WRITING or state is READING_HEAD:
            if self.buf:
                self.buf += data  # a bytearray: heads that come in pieces grow in place
                self._read_head(self.buf)
            else:
                self._read_head(data)
        else:  # IDLE, COMPLETE or BROKEN: bytes no exchange asked for
            self._retire()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.state is READING_BODY and self.mode is _UNTIL_EOF:
            self._end(surplus=False)  # the close is the end of this answer
        elif self.state is WRITING or self.state is READING_HEAD or self.state is READING_BODY:
            self._fail(protocol_error() if self.received_any else unavailable_error())
        elif self.state is not COMPLETE:
            self.state = BROKEN
        self._write_ready.set()

    def pause_writing(self) -> None:
        self._write_ready.clear()

    def resume_writing(self) -> None:
        self._write_ready.set()

    # -- the answer --------------------------------------------------------
    def _read_head(self, buf: bytes | bytearray) -> None:
        while True:
            end = buf.find(b"\r\n\r\n", self.scanned)
            if end < 0:
                if self.head_bytes + len(buf) > MAX_HEAD:
                    return self._fail(protocol_error("The upstream answer's head exceeds the size limit."))
                checked = self.scanned + 3 if self.scanned else 0  # a bare LF ends no line here: fail now, not later
                if buf.count(b"\n", checked) != buf.count(b"\r\n", max(0, checked - 1)):
                    return self._fail(protocol_error())
                self.scanned = max(0, len(buf) - 3)
                self.buf = buf if isinstance(buf, bytearray) else bytearray(buf)
                return
            self.head_bytes += end + 4
            if self.head_bytes > MAX_HEAD:
                return self._fail(protocol_error("The upstream answer's head exceeds the size limit."))
            raw = buf[:end]
            rest = buf[end + 4 :]
            self.scanned = 0
            lines = raw.decode("latin-1").split("\r\n")
            if raw.translate(None, _HEAD_BYTES) != b"\r\n" * (len(lines) - 1):
                return self._fail(protocol_error())  # a control character, or a CR or LF that ends no line
            status_line = lines[0]
            status = _STATUS_CODES.get(status_line[9:12], 0)
            if not status or status_line[:9] not in _STATUS_PREFIXES or status_line[12:13] not in ("", " "):
                return self._fail(protocol_error())
            fields = _parse_fields(lines, 1)
            if fields is None:
                return self._fail(protocol_error())
            headers, length, chunked, close = fields
            if status < 200:
                if status == 101:  # no upgrade was asked for
                    return self._fail(protocol_error())
                buf = rest  # an interim answer (100 Continue, 103 Early Hints): the real one follows
                continue
            http10 = status_line[7] == "0"
            if chunked and (length is not None or http10):  # RFC 9112 6.1, 6.3: faulty framing
                return self._fail(protocol_error())
            break
        self.status = status
        self.headers = headers
        self.keep_alive = not (close or http10) and self.method != "HEAD"  # a body sent after HEAD would poison it
        self.buf = b""
        self.state = READING_BODY
        if self.headers_done is not None and not self.headers_done.done():
            self.headers_done.set_result(None)
        if self.method == "HEAD" or status == 204 or status == 304:
            self.mode = _NO_BODY
            self._end(surplus=bool(rest))
        elif chunked:
            self.mode = _CHUNKED
            self.remaining = 0
            self.trailers = False
            if rest:
                self._read_chunked(rest)
        elif length is not None:
            self.mode = _LENGTH
            self.remaining = self.length = int(length)
            if self.remaining == 0 or rest:
                self._read_length_body(rest)
        else:
            self.mode = _UNTIL_EOF
            self.keep_alive = False
            if rest:
                self._deliver(bytes(rest))

    def _read_length_body(self, data: bytes | bytearray) -> None:
        """The bytes that came with a head framed by Content-Length."""
        remaining = self.remaining
        if data:
            self._deliver(bytes(data[:remaining]))
        self.remaining = max(0, remaining - len(data))
        if self.remaining == 0:
            self._end(surplus=len(data) > remaining)

    def _read_chunked(self, buf: bytes | bytearray) -> None:
        pos, size = 0, len(buf)
        while True:
            if self.remaining > 0:  # inside a chunk's data
                take = buf[pos : pos + self.remaining]
                if take:
                    self._deliver(bytes(take))
                pos += len(take)
                self.remaining -= len(take)
                if self.remaining:
                    break
                self.remaining = -1
            if self.remaining == -1:  # the CRLF after a chunk's data
                if size - pos < 2:
                    break
                if buf[pos : pos + 2] != b"\r\n":
                    return self._fail(protocol_error())
                pos += 2
                self.remaining = 0
            if self.trailers:  # after the last chunk: trailer fields (read, checked, dropped), then a blank line
                if buf[pos : pos + 2] == b"\r\n":
                    pos += 2
                else:
                    end = buf.find(b"\r\n\r\n", pos)
                    if end < 0:
                        if size - pos > MAX_HEAD:
                            return self._fail(protocol_error())
                        break
                    block = buf[pos:end]
                    lines = block.decode("latin-1").split("\r\n")
                    if (
                        end + 4 - pos > MAX_HEAD
                        or block.translate(None, _HEAD_BYTES) != b"\r\n" * (len(lines) - 1)
                        or _parse_fields(lines, 0) is None
                    ):
                        return self._fail(protocol_error())
                    pos = end + 4
                self.buf = b""
                return self._end(surplus=pos < size)
            end = buf.find(b"\r\n", pos)
            if end < 0:
                if size - pos > MAX_HEAD:
                    return self._fail(protocol_error())
                break
            line = _CHUNK_SIZE_RE.fullmatch(buf, pos, end)
            if line is None:
                return self._fail(protocol_error())
            pos = end + 2
            self.remaining = int(line.group(1), 16)
            if self.remaining == 0:
                self.trailers = True
        self.buf = buf[pos:] if pos < size else b""

    def _deliver(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > _HIGH_WATER and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
        self._wake()

    def _end(self, surplus: bool) -> None:
        """The answer ended at its framed length; what follows decides whether the connection lives on."""
        self.message_done = True
        if surplus or not self.keep_alive or not self.request_sent:
            self._retire()
        else:
            self.state = COMPLETE
        self._wake()

    # -- helpers -------------------------------------------------------------
    def _retire(self) -> None:
        self.state = BROKEN
        self.buf = b""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def _fail(self, error: BaseException) -> None:
        self.error = error
        if self.headers_done is not None and not self.headers_done.done():
            self.headers_done.set_exception(error)
        self._retire()
        self._wake()

    def _wake(self) -> None:
        waiter = self.data_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def next_chunk(self, read_timeout: float) -> bytes | None:
        """The next body chunk, or None at the end."""
        while not self.chunks:
            if self.error is not None:
                raise self.error
            if self.message_done:
                return None
            self.data_waiter = self.loop.create_future()
            try:
                async with asyncio.timeout(read_timeout):
                    await self.data_waiter
            except TimeoutError:
                raise timeout_error(read_timeout) from None
            finally:
                self.data_waiter = None
        chunk = self.chunks.popleft()
        self.buffered -= len(chunk)
        if self.paused and self.buffered <= _HIGH_WATER // 2 and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        return chunk

    def pooled(self) -> bool:
        """Back to IDLE if the exchange ended COMPLETE (unread chunks of a complete answer are dropped)."""
        if self.state is not COMPLETE or self.closed or self.transport is None or self.transport.is_closing():
            return False
        self.chunks.clear()
        self.buffered = 0
        if self.paused:
            self.paused = False
            self.transport.resume_reading()
        self.state = IDLE
        return True

    async def drain(self) -> None:
        await self._write_ready.wait()
        if self.closed:
            raise unavailable_error()
