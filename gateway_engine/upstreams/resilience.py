"""Failing backends: retries, a circuit breaker and a bulkhead, as a wrapper around any transport.

The proxy keeps calling ``send``; a backend that is slow, down or flapping is
contained here so it cannot take the gateway, or the other backends, with it.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from gateway_engine.foundation.errors import GatewayError
from gateway_engine.foundation.reply import Reply
from gateway_engine.upstreams.seam import Timeouts, Transport

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
_FAILURE_CODES = frozenset({"UPSTREAM_TIMEOUT", "UPSTREAM_UNAVAILABLE", "UPSTREAM_ERROR"})


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 1  # 1 = no retry
    statuses: frozenset[int] = frozenset({502, 503, 504})
    backoff: float = 0.1  # first delay; doubles each attempt, with full jitter
    max_backoff: float = 2.0
    idempotent_post: bool = False  # retry POST/PATCH only when the client sent Idempotency-Key


@dataclass(frozen=True)
class BreakerPolicy:
    failures: int = 0  # 0 = no breaker
    window: float = 30.0
    open_for: float = 30.0
    half_open_probes: int = 1


@dataclass(frozen=True)
class BulkheadPolicy:
    max_concurrent: int = 0  # 0 = unbounded
    queue_timeout: float = 1.0


class CircuitBreaker:
    """closed → (N failures within the window) → open → (after open_for) → half-open → closed or open."""

    def __init__(self, policy: BreakerPolicy, name: str = "") -> None:
        self.policy = policy
        self.name = name
        self.failures: deque[float] = deque()
        self.opened_at: float | None = None
        self.probes = 0

    def _moved(self) -> None:
        from gateway_engine.foundation.metrics import record_circuit

        record_circuit(self.name, self.state)

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "half_open" if time.monotonic() - self.opened_at >= self.policy.open_for else "open"

    def before(self) -> None:
        state = self.state
        if state == "open" or (state == "half_open" and self.probes >= self.policy.half_open_probes):
            retry_after = max(1, int(self.policy.open_for - (time.monotonic() - (self.opened_at or 0)) + 0.999))
            raise GatewayError(
                503,
                "CIRCUIT_OPEN",
                "The upstream is failing; the gateway stopped calling it for a while.",
                headers={"Retry-After": str(retry_after)},
            )
        if state == "half_open":
            if self.probes == 0:
                self._moved()
            self.probes += 1

    def success(self) -> None:
        if self.opened_at is not None:
            self.opened_at, self.probes = None, 0
            self.failures.clear()
            self._moved()

    def failure(self) -> None:
        now = time.monotonic()
        if self.opened_at is not None:  # a failed probe opens it again
            self.opened_at, self.probes = now, 0
            self._moved()
            return
        self.failures.append(now)
        while self.failures and now - self.failures[0] > self.policy.window:
            self.failures.popleft()
        if len(self.failures) >= self.policy.failures:
            self.opened_at, self.probes = now, 0
            self._moved()


class ResilientTransport:
    """Retries, breaker and bulkhead around an inner transport; each part off when unconfigured."""

    def __init__(
        self,
        inner: Transport,
        *,
        timeouts: Timeouts,
        retry: RetryPolicy,
        breaker: BreakerPolicy,
        bulkhead: BulkheadPolicy,
        name: str = "",
    ) -> None:
        self.inner = inner
        self.timeouts = timeouts
        self.retry = retry
        self.breaker = CircuitBreaker(breaker, name) if breaker.failures > 0 else None
        self.bulkhead = bulkhead
        self._slots = asyncio.Semaphore(bulkhead.max_concurrent) if bulkhead.max_concurrent > 0 else None

    async def send(
        self, method: str, url: str, headers: list[tuple[str, str]], body: bytes | AsyncIterator[bytes] | None
    ) -> Reply:
        if self.breaker is not None:
            self.breaker.before()
        slots = self._slots
        if slots is None:
            return await self._attempts(method, url, headers, body)
        try:
            await asyncio.wait_for(slots.acquire(), self.bulkhead.queue_timeout)
        except TimeoutError:
            raise GatewayError(
                503,
                "UPSTREAM_BUSY",
                "Too many requests are waiting for this upstream; try again shortly.",
                headers={"Retry-After": "1"},
            ) from None
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                slots.release()

        try:
            reply = await self._attempts(method, url, headers, body)
        except BaseException:
            release()
            raise
        if reply.stream is None:
            release()
            return reply
        inner_close = reply.close

        async def close() -> None:  # the slot is held until a streamed body is done
            try:
                if inner_close is not None:
                    await inner_close()
            finally:
                release()

        reply.close = close
        return reply

    async def _attempts(self, method: str, url: str, headers: list[tuple[str, str]], body: Any) -> Reply:
        attempts = self.retry.attempts if self._retryable(method, headers, body) else 1
        deadline = time.monotonic() + self.timeouts.total
        for attempt in range(1, attempts + 1):
            last = attempt == attempts
            try:
                reply = await self.inner.send(method, url, headers, body)
            except GatewayError as err:
                if err.code in _FAILURE_CODES and self.breaker is not None:
                    self.breaker.failure()
                if (
                    last
                    or err.code not in ("UPSTREAM_UNAVAILABLE", "UPSTREAM_ERROR")
                    or not self._wait_allowed(attempt, deadline)
                ):
                    raise
                await asyncio.sleep(self._delay(attempt))
                continue
            if reply.status >= 500 and self.breaker is not None:
                self.breaker.failure()
            elif self.breaker is not None:
                self.breaker.success()
            if last or reply.status not in self.retry.statuses or not self._wait_allowed(attempt, deadline):
                return reply
            await reply.aclose()
            await asyncio.sleep(self._delay(attempt))
        raise AssertionError("unreachable")  # pragma: no cover

    def _retryable(self, method: str, headers: list[tuple[str, str]], body: Any) -> bool:
        if self.retry.attempts <= 1 or not (body is None or isinstance(body, (bytes, bytearray))):
            return False  # a streamed body cannot be sent twice
        if method in IDEMPOTENT:
            return True
        return self.retry.idempotent_post and any(k == "idempotency-key" for k, _ in headers)

    def _delay(self, attempt: int) -> float:
        return random.uniform(0, min(self.retry.max_backoff, self.retry.backoff * 2 ** (attempt - 1)))

    def _wait_allowed(self, attempt: int, deadline: float) -> bool:
        return time.monotonic() + min(self.retry.max_backoff, self.retry.backoff * 2 ** (attempt - 1)) < deadline

    async def aclose(self) -> None:
        await self.inner.aclose()
