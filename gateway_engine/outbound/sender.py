"""One delivery attempt over HTTP: no redirects, a total timeout, the answer cut to 4 KB.

Connections go through ``CheckedResolver`` (``ssrf.py``); an address literal, which the
client would not resolve, is checked here first. The outcome is data, never an exception.
"""

from __future__ import annotations

import email.utils
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp

from .settings import DeliverySettings
from .ssrf import CheckedResolver, Refused, check, literal

EXCERPT = 4096


@dataclass(frozen=True)
class Outcome:
    """What one attempt came to."""

    kind: str  # succeeded, failed, timeout, refused
    status: int | None
    latency: float  # seconds
    response: str  # at most EXCERPT bytes of the answer, as text
    error: str | None
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.kind == "succeeded"

    @property
    def throttled(self) -> bool:
        return self.kind == "timeout" or self.status == 429


class Sender:
    """A pooled HTTP client bound to the settings' address rules; one per dispatcher."""

    def __init__(self, settings: DeliverySettings) -> None:
        self.settings = settings
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                resolver=CheckedResolver(self.settings.allow),
                use_dns_cache=False,
                limit=self.settings.concurrency,
                limit_per_host=self.settings.per_endpoint,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=self.settings.timeout),
                auto_decompress=False,
                trust_env=False,
            )
        return self._session

    async def send(self, url: str, headers: list[tuple[str, str]], body: bytes) -> Outcome:
        started = time.perf_counter()
        try:
            host = urlsplit(url).hostname or ""
            address = literal(host)
            if address is not None:
                check(address, self.settings.allow)
            async with self._client().post(url, data=body, headers=headers, allow_redirects=False) as answer:
                excerpt = await answer.content.read(EXCERPT)
                text = excerpt.decode("utf-8", "replace")
                latency = time.perf_counter() - started
                if 200 <= answer.status < 300:
                    return Outcome("succeeded", answer.status, latency, text, None)
                return Outcome(
                    "failed",
                    answer.status,
                    latency,
                    text,
                    f"answered {answer.status}",
                    retry_after(answer.headers.get("retry-after")),
                )
        except Refused as exc:
            return Outcome("refused", None, time.perf_counter() - started, "", str(exc))
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, Refused):
                return Outcome("refused", None, time.perf_counter() - started, "", str(exc.os_error))
            return Outcome("failed", None, time.perf_counter() - started, "", "could not connect")
        except TimeoutError:
            return Outcome(
                "timeout", None, time.perf_counter() - started, "", f"no answer in {self.settings.timeout:g}s"
            )
        except (aiohttp.ClientError, ValueError, OSError) as exc:
            return Outcome("failed", None, time.perf_counter() - started, "", type(exc).__name__)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), None when absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
