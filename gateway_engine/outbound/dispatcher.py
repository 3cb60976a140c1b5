"""The dispatcher: fans new messages out, takes due attempts and sends them, within bounds.

It is the feature's ``outbound`` worker: in each gateway process (``dispatch: in_process``) and in
``gateway-engine worker``. In-flight attempts
are bounded per process and per endpoint, and an endpoint at its bound is left out of the next
claim, so a slow or dead endpoint only ever holds its own slots (fair queues). Every attempt
ends in the attempt log; the delivery is rescheduled, finished, or exhausted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from . import metrics
from .outbox import Claimed, Recorded, claim, fan_out, record, record_many, release, waiting
from .payload import new_id
from .schedule import next_delay
from .sender import Outcome, Sender
from .settings import DeliverySettings
from .signing import signed_headers
from .tables import endpoints
from .upkeep import backlog, prune
from .writer import GroupCommit, Transact, engine_transact

log = logging.getLogger("gateway_engine.outbound")
QUIET = frozenset({"message.attempt.exhausted", "endpoint.disabled"})  # their exhaustion emits nothing (no chains)
BACKLOG_EVERY = 5.0  # seconds between counts of the pending deliveries (the backlog gauge)
COALESCE = 0.01  # seconds a woken dispatcher waits for more wake-ups before its round
PRUNE_EVERY = 300.0  # seconds between deletions of rows past the retention period
Emit = Callable[[str, str, Any], Awaitable[Any]]  # (tenant, event type, data): an operational event


class Dispatcher:
    def __init__(
        self, engine: AsyncEngine, settings: DeliverySettings, emit: Emit, transact: Transact | None = None
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.emit = emit
        self.owner = new_id("disp")
        self.sender = Sender(settings)
        self.transact = transact or engine_transact(engine)  # one transaction (``Store.transact``)
        self.recorder = GroupCommit(self.transact, self._record)
        self.in_flight: dict[str, int] = {}
        self.tasks: set[asyncio.Task] = set()
        self.wakeup = asyncio.Event()
        self._loop: asyncio.Task | None = None
        self._counted = 0.0  # when the backlog gauge was last set
        self._pruned = 0.0  # when old rows were last deleted
        self._stopping = False

    def start(self) -> None:
        self._loop = asyncio.get_running_loop().create_task(self._run())

    def wake(self) -> None:
        self.wakeup.set()

    async def stop(self) -> None:
        self._stopping = True  # the loop ends after this round even where a cancellation is lost (below)
        if self._loop is not None:
            self._loop.cancel()
            await asyncio.gather(self._loop, return_exceptions=True)
        if self.tasks:  # attempts under way finish (each is bounded by the timeout)
            await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.recorder.close()
        await self.sender.aclose()

    async def _run(self) -> None:
        """Rounds until stopped. Waits use ``asyncio.timeout``: on Python 3.11 ``asyncio.wait_for`` loses a
        cancellation that lands as its inner wait completes, and a worker given SIGTERM then went on
        dispatching for ever (seen in CI: ``stop`` waited on this loop)."""
        failures = 0
        woken = True  # the first round, and one after a wake-up or a full batch, looks at everything
        while not self._stopping:
            try:
                worked = await self.step(look=woken)
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception:  # the store is down, say: try again later (backing off), never die
                failures += 1
                if failures == 1 or failures % 20 == 0:
                    log.exception("the outbound dispatcher failed a step (%d in a row)", failures)
                await asyncio.sleep(min(30.0, self.settings.poll_interval * 2 ** min(failures, 10)))
                continue
            woken = worked
            if not worked:
                self.wakeup.clear()
                try:
                    async with asyncio.timeout(self.settings.poll_interval):
                        await self.wakeup.wait()
                except TimeoutError:
                    pass
                else:  # woken: let the wake-ups of the next moment join this one (one round for a burst)
                    woken = True
                    await asyncio.sleep(COALESCE)

    async def step(self, look: bool = True) -> bool:
        """One round: fan out, claim, start sends; whether more may be waiting (a batch came back full).

        ``look`` false (a poll after an idle round): the round runs only if the outbox has something for
        it (``outbox.waiting``, one read)."""
        if time.monotonic() - self._counted >= BACKLOG_EVERY:
            self._counted = time.monotonic()
            metrics.BACKLOG.set(await backlog(self.engine))
        if time.monotonic() - self._pruned >= PRUNE_EVERY:
            self._pruned = time.monotonic()
            if await prune(self.engine, time.time() - self.settings.retention):  # more left: the next round goes on
                self._pruned -= PRUNE_EVERY
        if not look and not await waiting(self.transact):
            return False
        fanned = await fan_out(self.transact, self.settings.schedule[0], self.settings.batch)
        free = self.settings.concurrency - len(self.tasks)
        busy = [e for e, n in self.in_flight.items() if n >= self.settings.per_endpoint]
        taken = await claim(self.transact, self.owner, self.settings.lease, min(free, self.settings.batch), busy)
        surplus = []
        for item in taken:
            if self.in_flight.get(item.endpoint_id, 0) >= self.settings.per_endpoint:
                surplus.append(item.delivery_id)
                continue
            self.in_flight[item.endpoint_id] = self.in_flight.get(item.endpoint_id, 0) + 1
            task = asyncio.get_running_loop().create_task(self._attempt(item))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        await release(self.engine, self.owner, surplus)
        if free <= 0 and self.tasks:  # every slot in use: wait for one
            await asyncio.wait(set(self.tasks), return_when=asyncio.FIRST_COMPLETED)
        # more is waiting only where a batch came back full; else the next emit or finished attempt wakes it
        return fanned >= self.settings.batch or len(taken) >= min(free, self.settings.batch) > 0

    async def _attempt(self, item: Claimed) -> None:
        try:
            await self.deliver(item)
        except Exception:
            log.exception("an outbound attempt could not be recorded (its lease will expire and it is retried)")
        finally:
            left = self.in_flight.get(item.endpoint_id, 1) - 1
            if left:
                self.in_flight[item.endpoint_id] = left
            else:
                self.in_flight.pop(item.endpoint_id, None)
            self.wake()

    async def deliver(self, item: Claimed, *, retry: bool = True) -> tuple[Outcome, float | None]:
        """Send one attempt and record it; returns the outcome and the next retry time."""
        endpoint = item.endpoint
        if endpoint is None or not endpoint.enabled:
            outcome = Outcome("skipped", None, 0.0, "", "the endpoint is disabled or deleted")
            async with self.engine.begin() as conn:
                await record(conn, item, self.owner, outcome, None, "skipped")
            return outcome, None
        now = time.time()
        keys = [endpoint.secret]
        if endpoint.previous_secret and (endpoint.previous_until or 0) > now:
            keys.append(endpoint.previous_secret)
        headers = [("content-type", "application/json"), ("user-agent", "gateway-engine-webhooks")]
        headers += [(k.lower(), v) for k, v in orjson.loads(endpoint.headers).items()]
        headers += signed_headers(keys, item.message_id, int(now), item.body)
        outcome = await self.sender.send(endpoint.url, headers, item.body)
        metrics.record_attempt(outcome)
        delay = next_delay(self.settings, item.made + 1, endpoint.max_retries, outcome) if retry else None
        gone = outcome.status == 410
        next_at = None if outcome.ok or gone or delay is None else time.time() + delay
        status = "succeeded" if outcome.ok else ("pending" if next_at is not None else "exhausted")
        disable = "the endpoint answered 410 Gone" if gone else None
        since = None if outcome.ok else (endpoint.failing_since or now)
        if disable is None and since is not None and now - since >= self.settings.disable_after:
            disable = f"failing continuously since {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(since))}"
        done = Recorded(item, outcome, next_at, status)
        if disable is None and (endpoint.failing_since is None) == outcome.ok:  # the endpoint's state stays
            await self.recorder.submit(done)  # with the other attempts that finished meanwhile
        else:
            async with self.engine.begin() as conn:
                await conn.run_sync(record_many, self.owner, [done])
                await conn.execute(
                    sa.update(endpoints).where(endpoints.c.id == endpoint.id).values(failing_since=since)
                )
                if disable is not None:
                    await conn.execute(
                        sa.update(endpoints)
                        .where(endpoints.c.id == endpoint.id, endpoints.c.enabled.is_(True))
                        .values(enabled=False, disabled_reason=disable[:200], updated_at=now)
                    )
        if status == "exhausted" and retry and item.event_type not in QUIET:
            await self._operational(item, "message.attempt.exhausted", {"attempts": item.made + 1})
        if disable is not None:
            await self._operational(item, "endpoint.disabled", {"reason": disable})
        return outcome, next_at

    def _record(self, conn: Any, done: Any) -> None:
        record_many(conn, self.owner, done)

    async def _operational(self, item: Claimed, event_type: str, extra: dict[str, Any]) -> None:
        data = {"endpointId": item.endpoint_id, "messageId": item.message_id, "eventType": item.event_type, **extra}
        try:
            await self.emit(item.tenant, event_type, data)
        except Exception:
            log.exception("the operational event %s could not be written", event_type)
