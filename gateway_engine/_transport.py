"""The transport seam: how bytes reach an upstream. Library exceptions are mapped here, once.

The proxy only calls ``Transport.send``; a new kind of upstream is a new transport.
``Http1Transport`` (``_http1.py``) is the default because it measured fastest here
(see the README's Performance section); ``AiohttpTransport`` and ``HttpxTransport``
stay available per upstream.
"""

from __future__ import annotations

import asyncio
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


def timeout_error(total: float) -> GatewayError:
    return GatewayError(504, "UPSTREAM_TIMEOUT", f"The upstream did not answer within {total:g}s.")


def unavailable_error() -> GatewayError:
    return GatewayError(502, "UPSTREAM_UNAVAILABLE", "The upstream refused or dropped the connection.")


def protocol_error() -> GatewayError:
    return GatewayError(502, "UPSTREAM_ERROR", "The upstream sent an invalid or incomplete response.")


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
        except aiohttp.ClientError:
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
        request = self._client.build_request(method, httpx.URL(url), headers=headers, content=body)
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


def _temporal(**options: object) -> Transport:
    from .workflows.transport import TemporalTransport  # temporalio loads only for configs that use it

    return TemporalTransport(**options)


def _http1(**options: object) -> Transport:
    from ._http1 import Http1Transport  # defined beside the parser it needs

    return Http1Transport(**options)


TRANSPORTS = {"http1": _http1, "aiohttp": AiohttpTransport, "httpx": HttpxTransport, "temporal": _temporal}
