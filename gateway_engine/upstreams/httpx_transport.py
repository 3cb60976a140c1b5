"""An upstream transport over one pooled httpx client (``transport: httpx``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx

from gateway_engine.foundation.reply import Reply
from gateway_engine.upstreams.framing import framed
from gateway_engine.upstreams.seam import Timeouts, protocol_error, timeout_error, unavailable_error


class HttpxTransport:
    """The same contract over one pooled ``httpx.AsyncClient``."""

    def __init__(self, *, timeouts: Timeouts, max_connections: int = 100) -> None:
        self.timeouts = timeouts
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeouts.total, connect=timeouts.connect, read=timeouts.read),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            follow_redirects=False,
            trust_env=False,
        )

    async def send(
        self, method: str, url: str, headers: list[tuple[str, str]], body: bytes | AsyncIterator[bytes] | None
    ) -> Reply:
        headers, body = framed(headers, body)
        request = self._client.build_request(
            method, httpx.URL(url), headers=[(k.encode("ascii"), _wire(v)) for k, v in headers], content=body
        )
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
