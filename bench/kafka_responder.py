"""The bench's Kafka service: answers every request on its topic at once with its body (``python -m bench.kafka``).

Replies are sent without waiting for each acknowledgement (all of a fetched batch, then one flush),
so the service is not what limits the gateway's figures.
"""

from __future__ import annotations

import asyncio
import os
import signal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition


async def main() -> None:
    brokers, topic = os.environ["BENCH_KAFKA_BROKER"], os.environ["BENCH_KAFKA_REQUEST_TOPIC"]
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    consumer = AIOKafkaConsumer(bootstrap_servers=brokers, group_id=None, fetch_max_wait_ms=5)
    producer = AIOKafkaProducer(bootstrap_servers=brokers, linger_ms=0)
    await consumer.start()
    await producer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_end(tp)
        await consumer.position(tp)
        print("ready", flush=True)
        while not stop.is_set():
            for records in (await consumer.getmany(timeout_ms=100, max_records=1000)).values():
                for record in records:
                    headers = dict(record.headers)
                    await producer.send(
                        headers["reply-to"].decode(),
                        record.value,
                        partition=int(headers["reply-partition"]),
                        headers=[("correlation-id", headers["correlation-id"]), ("status", b"200")],
                    )
            await producer.flush()
    finally:
        await consumer.stop()
        await producer.stop()


if __name__ == "__main__":
    asyncio.run(main())
