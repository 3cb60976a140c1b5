"""An upstream transport over one pooled aiohttp session (``transport: aiohttp``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
from yarl import URL

from gateway_engine.foundation.errors import GatewayError
from gateway_engine.foundation.reply import Reply
from gateway_engine.upstreams.framing import framed
from gateway_engine.upstreams.seam import _SMALL_BODY, Timeouts, protocol_error, timeout_error, unavailable_error


class AiohttpTransport:
    """One pooled aiohttp session per upstream, opened lazily inside the server's event loop."""

    def __init__(self, *, timeouts: Timeouts, max_connections: int = 100) -> None:
        self.timeouts = timeouts
        self.max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._client_timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeouts.connect, sock_read=timeouts.read)

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=self.max_connections,
            limit_per_host=self.max_connections,
            ttl_dns_cache=60,
            enable_cleanup_closed=False,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            timeout=self._client_timeout,
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        return self._session

    async def send(
        self, method: str, url: str, headers: list[tuple[str, str]], body: bytes | AsyncIterator[bytes] | None
    ) -> Reply:
        session = self._session or self._open()
        headers, body = framed(headers, body)
        try:
            async with asyncio.timeout(self.timeouts.total):
                response = await session.request(
                    method, URL(url, encoded=True), headers=headers, data=body, allow_redirects=False
                )
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

        return Reply(response.status, _headers(response), stream=_chunks(response), from_upstream=True, close=release)

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
