"""The connection to one Kafka cluster: a producer, and a reply reader on this instance's own partition.

Both start on first use, inside the serving event loop, one start at a time; a failed start is
remembered for a second so a dead broker costs one connect attempt per second, not one per request.
The reply reader is assigned its partition directly (``consumer.assign``): no group join, no
rebalance, so a gateway answers its first request in milliseconds. It starts at the partition's
end, before the first request is produced, so no reply to this worker can be missed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import time
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from gateway_engine.foundation.context import forwarding
from gateway_engine.foundation.errors import GatewayError
from gateway_engine.upstreams.seam import Timeouts, unavailable_error

from .settings import ClusterSettings

log = logging.getLogger("gateway_engine.kafka")

_RETRY_AFTER_FAILURE = 1.0  # seconds a failed start is answered from memory
_FETCH_WAIT_MS = (
    10  # longest a reply read waits at a broker that does not answer a fetch early (Tansu): a latency floor
)
_FETCH_SLACK = 64 * 1024  # record batch framing on top of the largest reply


class KafkaClient:
    """Lazily started producer and reply reader; ``on_reply(record)`` gets every record of the partition."""

    def __init__(self, settings: ClusterSettings, timeouts: Timeouts, on_reply: Callable[[Any], None]) -> None:
        self.settings = settings
        self.timeouts = timeouts
        self.on_reply = on_reply
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._reader: asyncio.Task[None] | None = None
        self._lock: asyncio.Lock | None = None
        self._failed_at = -_RETRY_AFTER_FAILURE
        self._client_id = f"{settings.group}-{os.getpid()}"

    async def producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            await self._start(reader=False)
        assert self._producer is not None
        return self._producer

    async def ensure_reader(self) -> None:
        """Start reading replies (before the first request-reply message is produced)."""
        if self._reader is None:
            await self._start(reader=True)

    async def produce(self, topic: str, value: bytes, key: bytes | None, headers: list[tuple[str, bytes]]) -> Any:
        producer = await self.producer()
        if not await self._reachable(producer):  # fail now, not after the whole timeout
            raise unavailable_error()
        return await producer.send_and_wait(topic, value, key=key, headers=headers)

    @staticmethod
    async def _reachable(producer: AIOKafkaProducer) -> bool:
        """Whether a connection to some broker is open or opens (no I/O while one is open)."""
        for broker in producer.client.cluster.brokers():
            if await producer.client.ready(broker.nodeId):
                return True
        return False

    async def probe(self) -> int:
        """The number of brokers the cluster reports (a metadata round trip)."""
        producer = await self.producer()
        metadata = await producer.client.fetch_all_metadata()
        return len(metadata.brokers())

    async def _start(self, *, reader: bool) -> None:
        if self._lock is None:
            self._lock = asyncio.Lock()
        # the client's own tasks (aiokafka's, the reader) start here and copy the context: not the request's
        token = forwarding.set(None)
        try:
            await self._start_locked(reader)
        finally:
            forwarding.reset(token)

    async def _start_locked(self, reader: bool) -> None:
        assert self._lock is not None
        async with self._lock:
            if (self._producer is not None) and (not reader or self._reader is not None):
                return  # another request started it meanwhile
            if time.monotonic() - self._failed_at < _RETRY_AFTER_FAILURE:
                raise unavailable_error()
            try:
                async with asyncio.timeout(self.timeouts.connect):
                    if self._producer is None:
                        self._producer = await self._started_producer()
                    if reader and self._reader is None:
                        await self._start_reader()
            except (KafkaError, OSError, TimeoutError) as exc:
                self._failed_at = time.monotonic()
                log.warning("kafka: cannot reach the brokers (%s)", type(exc).__name__)
                await self._close_consumer()
                raise unavailable_error() from None

    async def _started_producer(self) -> AIOKafkaProducer:
        producer = AIOKafkaProducer(
            **_client_options(self.settings),
            client_id=self._client_id,
            acks="all",
            max_request_size=self.settings.max_message_bytes + _FETCH_SLACK,
            request_timeout_ms=int(self.timeouts.total * 1000),
        )
        try:
            await producer.start()
        except BaseException:
            await producer.stop()
            raise
        return producer

    async def _start_reader(self) -> None:
        s = self.settings
        self._consumer = AIOKafkaConsumer(
            **_client_options(s),
            client_id=self._client_id,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="latest",
            fetch_max_wait_ms=_FETCH_WAIT_MS,
            max_partition_fetch_bytes=s.max_reply_bytes + _FETCH_SLACK,
            fetch_max_bytes=max(s.max_reply_bytes + _FETCH_SLACK, 50 * 1024 * 1024),
        )
        await self._consumer.start()
        partition = TopicPartition(s.reply_topic, s.reply_partition)
        self._consumer.assign([partition])
        await self._consumer.seek_to_end(partition)
        await self._consumer.position(partition)  # resolved now: replies from here on are read
        self._reader = asyncio.get_running_loop().create_task(self._read(self._consumer))

    async def _read(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            try:
                batches = await consumer.getmany(timeout_ms=1000, max_records=500)
            except asyncio.CancelledError:
                raise
            except KafkaError as exc:  # the client reconnects by itself; keep reading
                log.warning("kafka: reading replies failed (%s)", type(exc).__name__)
                await asyncio.sleep(_RETRY_AFTER_FAILURE)
                continue
            for records in batches.values():
                for record in records:
                    try:
                        self.on_reply(record)
                    except Exception:  # one bad reply never stops the reader
                        log.exception("kafka: a reply could not be handled")

    async def _close_consumer(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            self._reader = None
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            await _stopped(consumer)

    async def aclose(self) -> None:
        await self._close_consumer()
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await _stopped(producer)


async def _stopped(client: AIOKafkaProducer | AIOKafkaConsumer) -> None:
    """Stop a client; a broker that is already gone does not make the shutdown fail or hang."""
    try:
        async with asyncio.timeout(5):
            await client.stop()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise  # this shutdown itself is cancelled
        log.warning("kafka: closing a client failed (its fetch was cancelled while the broker was gone)")
    except (KafkaError, OSError, TimeoutError) as exc:
        log.warning("kafka: closing a client failed (%s)", type(exc).__name__)


def kafka_error(exc: KafkaError) -> GatewayError:
    """A Kafka client error as the answer a client gets (no broker address or topic detail)."""
    name = type(exc).__name__
    if name in ("KafkaTimeoutError", "RequestTimedOutError"):
        return GatewayError(504, "UPSTREAM_TIMEOUT", "The broker did not acknowledge the message in time.")
    if name in ("MessageSizeTooLargeError", "RecordTooLargeError", "RecordListTooLargeError"):
        return GatewayError(413, "PAYLOAD_TOO_LARGE", "The message is larger than the broker accepts.")
    if name in ("KafkaConnectionError", "NodeNotReadyError", "KafkaUnavailableError", "BrokerNotAvailableError"):
        return unavailable_error()
    return GatewayError(502, "UPSTREAM_ERROR", f"The broker refused the message ({name}).")


def _client_options(s: ClusterSettings) -> dict[str, Any]:
    """Keyword arguments shared by aiokafka's producer and consumer (security included)."""
    options: dict[str, Any] = {"bootstrap_servers": list(s.brokers), "security_protocol": s.security_protocol}
    if s.sasl_mechanism is not None:
        options |= {
            "sasl_mechanism": s.sasl_mechanism,
            "sasl_plain_username": s.sasl_username,
            "sasl_plain_password": s.sasl_password,
        }
    if s.security_protocol in ("SSL", "SASL_SSL"):
        context = ssl.create_default_context(cafile=s.ca_file)
        if s.cert_file:
            context.load_cert_chain(s.cert_file, s.key_file)
        options |= {"ssl_context": context}
    return options
