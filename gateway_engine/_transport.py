"""The transport seam: how bytes reach an upstream. Library exceptions are mapped here, once.

The proxy only calls ``Transport.send``; a new kind of upstream is a new transport.
``Http1Transport`` (``_http1.py``) is the default because it measured fastest here
(see the README's Performance section); ``AiohttpTransport`` and ``HttpxTransport``
stay available per upstream.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import AsyncIterator, Protocol

import aiohttp
import httpx
from yarl import URL

from ._errors import GatewayError
from ._reply import Reply

#: bodies up to this size are read at once instead of streamed (fewer awaits per request)
_SMALL_BODY = 256 * 1024


@dataclass(frozen=True)
class Timeouts:
    """Seconds: ``connect`` to open a connection, ``read`` between bytes, ``total`` until the headers."""

    connect: float = 5.0
    read: float = 30.0
    total: float = 30.0


class Transport(Protocol):
    async def send(self, method: str, url: str, headers: list[tuple[str, str]],
                   body: bytes | AsyncIterator[bytes] | None) -> Reply: ...

    async def aclose(self) -> None: ...


#: RFC 9110 5.1 ``token``: what a field name (and a method) may be made of
TOKEN = r"[-!#$%&'*+.^_`|~0-9A-Za-z]+"
_NAME_RE = re.compile(TOKEN)
#: a control character other than HTAB: none may be in a field value (RFC 9110 5.5), so nothing ends or folds a line
_CONTROL_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def header_error(name: str) -> GatewayError:
    """400: the values that vary per request come from the client, directly or through a template of its input."""
    return GatewayError(400, "BAD_HEADER", f"Header {name[:64]!r} has an invalid name or value (a control character).")


def check_headers(headers: list[tuple[str, str]]) -> None:
    """Refuse a header whose name is not a token or whose value holds a control character other than HTAB."""
    for name, value in headers:
        if _NAME_RE.fullmatch(name) is None or _CONTROL_RE.search(value) is not None:
            raise header_error(name)


def length_error() -> GatewayError:
    return GatewayError(400, "BODY_LENGTH_MISMATCH", "The request body does not match its declared Content-Length.")


def declared_length(headers: list[tuple[str, str]]) -> int | None:
    """The one Content-Length the headers declare (None without one); 400 if it is not a number or the copies differ."""
    declared = None
    for name, value in headers:
        if name == "content-length":
            value = value.strip(" \t")
            if not (value.isdigit() and value.isascii() and len(value) <= 19):
                raise header_error(name)
            if declared is not None and int(value) != declared:
                raise header_error(name)
            declared = int(value)
    return declared


async def exactly(body: AsyncIterator[bytes], length: int) -> AsyncIterator[bytes]:
    """``body``, refused (400) as soon as it goes past ``length`` bytes or ends short of it; the chunk that completes
    the length is held until the body is known to end there, so the upstream never gets a whole request first."""
    sent = 0
    held = None
    async for chunk in body:
        if not chunk:
            continue
        sent += len(chunk)
        if held is not None or sent > length:
            raise length_error()
        if sent == length:
            held = chunk
            continue
        yield chunk
    if sent != length:
        raise length_error()
    if held is not None:
        yield held


Body = bytes | AsyncIterator[bytes] | None


def framed(headers: list[tuple[str, str]], body: Body) -> tuple[list[tuple[str, str]], Body]:
    """For the library transports: validated headers without framing fields (the library frames ``bytes`` itself),
    and a streamed body held to the length it declares."""
    check_headers(headers)
    length = declared_length(headers) if body is not None and not isinstance(body, (bytes, bytearray)) else None
    headers = [(k, v) for k, v in headers if k != "transfer-encoding" and (k != "content-length" or length is not None)]
    if length is not None:
        headers = [(k, v) for k, v in headers if k != "content-length"] + [("content-length", str(length))]
        body = exactly(body, length)  # type: ignore[arg-type]
    return headers, body


def timeout_error(total: float) -> GatewayError:
    return GatewayError(504, "UPSTREAM_TIMEOUT", f"The upstream did not answer within {total:g}s.")


def unavailable_error() -> GatewayError:
    return GatewayError(502, "UPSTREAM_UNAVAILABLE", "The upstream refused or dropped the connection.")


def protocol_error(message: str = "The upstream sent an invalid or incomplete response.") -> GatewayError:
    return GatewayError(502, "UPSTREAM_ERROR", message)


class AiohttpTransport:
    """One pooled aiohttp session per upstream, opened lazily inside the server's event loop."""

    def __init__(self, *, timeouts: Timeouts, max_connections: int = 100) -> None:
        self.timeouts = timeouts
        self.max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._client_timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeouts.connect,
                                                     sock_read=timeouts.read)

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=self.max_connections, limit_per_host=self.max_connections,
                                         ttl_dns_cache=60, enable_cleanup_closed=False)
        self._session = aiohttp.ClientSession(
            connector=connector, auto_decompress=False, timeout=self._client_timeout,
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"), cookie_jar=aiohttp.DummyCookieJar(),
        )
        return self._session

    async def send(self, method: str, url: str, headers: list[tuple[str, str]],
                   body: bytes | AsyncIterator[bytes] | None) -> Reply:
        session = self._session or self._open()
        headers, body = framed(headers, body)
        try:
            async with asyncio.timeout(self.timeouts.total):
                response = await session.request(method, URL(url, encoded=True), headers=headers, data=body,
                                                 allow_redirects=False)
                length = response.content_length
                if method == "HEAD" or (length is not None and length <= _SMALL_BODY):
                    data = await response.read()
                    response.release()
                    return Reply(response.status, _headers(response), data, from_upstream=True)
        except TimeoutError:
            raise timeout_error(self.timeouts.total) from None
        except (aiohttp.ClientConnectorError, aiohttp.ServerDisconnectedError, ConnectionError):
            raise unavailable_error() from None
        except aiohttp.ClientError as exc:
            if isinstance(exc.__cause__, GatewayError):  # the body broke its declared length while being sent
                raise exc.__cause__ from None
            raise protocol_error() from None

        async def release() -> None:
            response.release()

        return Reply(response.status, _headers(response), stream=_chunks(response), from_upstream=True,
                     close=release)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _headers(response: aiohttp.ClientResponse) -> list[tuple[str, str]]:
    return [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in response.raw_headers]


async def _chunks(response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    try:
        async for chunk in response.content.iter_any():
            yield chunk
    except TimeoutError:
        raise timeout_error(0) from None
    except aiohttp.ClientError:
        raise protocol_error() from None
    finally:
        response.release()


class HttpxTransport:
    """The same contract over one pooled ``httpx.AsyncClient``."""

    def __init__(self, *, timeouts: Timeouts, max_connections: int = 100) -> None:
        self.timeouts = timeouts
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeouts.total, connect=timeouts.connect, read=timeouts.read),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            follow_redirects=False, trust_env=False,
        )

    async def send(self, method: str, url: str, headers: list[tuple[str, str]],
                   body: bytes | AsyncIterator[bytes] | None) -> Reply:
        headers, body = framed(headers, body)
        request = self._client.build_request(method, httpx.URL(url), headers=[(k, _wire(v)) for k, v in headers],
                                             content=body)
        try:
            async with asyncio.timeout(self.timeouts.total):
                response = await self._client.send(request, stream=True)
        except (TimeoutError, httpx.TimeoutException):
            raise timeout_error(self.timeouts.total) from None
        except (httpx.ConnectError, httpx.RemoteProtocolError):
            raise unavailable_error() from None
        except httpx.HTTPError:
            raise protocol_error() from None
        headers_out = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in response.headers.raw]

        async def chunks() -> AsyncIterator[bytes]:
            try:
                async for chunk in response.aiter_raw():
                    yield chunk
            except httpx.TimeoutException:
                raise timeout_error(self.timeouts.read) from None
            except httpx.HTTPError:
                raise protocol_error() from None
            finally:
                await response.aclose()

        return Reply(response.status_code, headers_out, stream=chunks(), from_upstream=True, close=response.aclose)

    async def aclose(self) -> None:
        await self._client.aclose()


def _wire(value: str) -> bytes:
    """A value as bytes: client values were decoded as latin-1, so the same bytes go out (httpx would refuse them)."""
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return value.encode("utf-8")  # a templated value beyond latin-1


def _temporal(**options: object) -> Transport:
    from .workflows.transport import TemporalTransport  # temporalio loads only for configs that use it

    return TemporalTransport(**options)


def _http1(**options: object) -> Transport:
    from ._http1 import Http1Transport  # defined beside the parser it needs

    return Http1Transport(**options)


TRANSPORTS = {"http1": _http1, "aiohttp": AiohttpTransport, "httpx": HttpxTransport, "temporal": _temporal}
