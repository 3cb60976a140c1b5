"""A small payments service behind the gateway: Kafka request-reply, in memory (for the example and its tests).

It reads every partition of the request topic by direct assignment (no consumer group: on a
real cluster a group is fine too), runs the message's ``operation`` for the user named by the
``user-id`` header (set by the gateway from the verified JWT, never by a client), and answers on
the ``reply-to`` topic and ``reply-partition`` with the request's ``correlation-id`` and a
``status`` header. A repeated ``idempotency-key`` gets the first answer again.

    KAFKA_BROKER=127.0.0.1:9092 python examples/finance-payments/responder.py
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

Answer = tuple[int, Any]


class Payments:
    """Payment intents, refunds and payment methods, each visible only to the user who made it."""

    def __init__(self) -> None:
        self.intents: dict[str, dict[str, Any]] = {}
        self.refunds: dict[str, dict[str, Any]] = {}
        self.methods: dict[str, dict[str, Any]] = {}
        self.operations: dict[str, Callable[[str, dict[str, Any]], Answer]] = {
            "create-payment-intent": self.create_intent,
            "get-payment-intent": lambda user, body: self._own(self.intents, user, body),
            "track-payment-intent": self.track_intent,
            "confirm-payment-intent": self.confirm_intent,
            "create-refund": self.create_refund,
            "get-refund": lambda user, body: self._own(self.refunds, user, body),
            "create-payment-method": self.create_method,
            "get-payment-method": lambda user, body: self._own(self.methods, user, body),
            "delete-payment-method": self.delete_method,
        }

    def handle(self, operation: str, user: str, body: Any) -> Answer:
        if operation not in self.operations:
            return 400, {"error": f"unknown operation {operation!r}"}
        if not user:
            return 401, {"error": "no user-id header"}
        if not isinstance(body, dict):
            return 400, {"error": "the body must be a JSON object"}
        return self.operations[operation](user, body)

    def create_intent(self, user: str, body: dict[str, Any]) -> Answer:
        amount, currency = body.get("amount"), body.get("currency")
        if not isinstance(amount, int) or amount <= 0 or not isinstance(currency, str) or len(currency) != 3:
            return 400, {"error": "amount (a positive integer) and currency (3 letters) are required"}
        intent = {
            "id": _id("pi"),
            "amount": amount,
            "currency": currency.lower(),
            "status": "requires_confirmation",
            "userId": user,
            "history": ["requires_confirmation"],
        }
        self.intents[intent["id"]] = intent
        return 201, _public(intent)

    def track_intent(self, user: str, body: dict[str, Any]) -> Answer:
        status, intent = self._own(self.intents, user, body, public=False)
        if status != 200:
            return status, intent
        return 200, {"id": intent["id"], "status": intent["status"], "history": intent["history"]}

    def confirm_intent(self, user: str, body: dict[str, Any]) -> Answer:
        status, intent = self._own(self.intents, user, body, public=False)
        if status != 200:
            return status, intent
        method = self.methods.get(str(body.get("paymentMethodId")))
        if method is None or method["userId"] != user:
            return 400, {"error": "paymentMethodId must name one of your payment methods"}
        if intent["status"] != "requires_confirmation":
            return 409, {"error": f"the payment intent is {intent['status']}"}
        intent["status"] = "succeeded"
        intent["paymentMethodId"] = method["id"]
        intent["history"].append("succeeded")
        return 200, _public(intent)

    def create_refund(self, user: str, body: dict[str, Any]) -> Answer:
        status, intent = self._own(self.intents, user, {"id": body.get("paymentIntentId")}, public=False)
        if status != 200:
            return status, intent
        if intent["status"] != "succeeded":
            return 409, {"error": "only a succeeded payment intent can be refunded"}
        amount = body.get("amount", intent["amount"])
        if not isinstance(amount, int) or not 0 < amount <= intent["amount"]:
            return 400, {"error": "amount must be positive and at most the payment's amount"}
        refund = {"id": _id("re"), "paymentIntentId": intent["id"], "amount": amount, "status": "succeeded"}
        self.refunds[refund["id"]] = {**refund, "userId": user}
        intent["history"].append("refunded")
        return 201, refund

    def create_method(self, user: str, body: dict[str, Any]) -> Answer:
        card = body.get("card")
        if body.get("type") != "card" or not isinstance(card, dict) or not str(card.get("last4", "")).isdigit():
            return 400, {"error": "type card with card.last4 is required"}
        method = {"id": _id("pm"), "type": "card", "card": {"last4": str(card["last4"])[-4:]}, "userId": user}
        self.methods[method["id"]] = method
        return 201, _public(method)

    def delete_method(self, user: str, body: dict[str, Any]) -> Answer:
        status, method = self._own(self.methods, user, body, public=False)
        if status != 200:
            return status, method
        del self.methods[method["id"]]
        return 200, {"id": method["id"], "deleted": True}

    @staticmethod
    def _own(store: dict[str, dict[str, Any]], user: str, body: dict[str, Any], public: bool = True) -> Answer:
        item = store.get(str(body.get("id")))
        if item is None or item["userId"] != user:  # another user's item does not exist for this one
            return 404, {"error": "not found"}
        return 200, _public(item) if public else item


def _id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(8)}"


def _public(item: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in item.items() if k not in ("userId", "history")}


async def serve(
    brokers: str, topic: str, stop: asyncio.Event, ready: Any = None, payments: Payments | None = None
) -> None:
    """Answer requests on every partition of ``topic`` until ``stop`` is set; ``ready.set()`` once reading."""
    payments = payments or Payments()
    answered: dict[tuple[str, str], tuple[int, bytes]] = {}  # (user, idempotency key) -> first answer
    consumer = AIOKafkaConsumer(
        bootstrap_servers=brokers, group_id=None, enable_auto_commit=False, fetch_max_wait_ms=20
    )
    producer = AIOKafkaProducer(bootstrap_servers=brokers, acks="all")
    await consumer.start()
    await producer.start()
    try:
        await consumer.topics()  # fetches the cluster's metadata
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or {0})]
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        for tp in partitions:
            await consumer.position(tp)
        if ready is not None:
            ready.set()
        while not stop.is_set():
            for records in (await consumer.getmany(timeout_ms=100)).values():
                for record in records:
                    headers = {k: (v or b"").decode() for k, v in record.headers}
                    if "reply-to" not in headers or "correlation-id" not in headers:
                        continue  # fire-and-forget: nothing to answer
                    memo = (headers.get("user-id", ""), headers.get("idempotency-key", ""))
                    if memo[1] and memo in answered:
                        status, value = answered[memo]
                    else:
                        try:
                            body = json.loads(record.value or b"null")
                        except ValueError:
                            body = None
                        status, answer = payments.handle(headers.get("operation", ""), memo[0], body)
                        value = json.dumps(answer).encode()
                        if memo[1]:
                            answered[memo] = (status, value)
                    await producer.send_and_wait(
                        headers["reply-to"],
                        value,
                        partition=int(headers.get("reply-partition", "0")),
                        headers=[
                            ("correlation-id", headers["correlation-id"].encode()),
                            ("status", str(status).encode()),
                            ("content-type", b"application/json"),
                        ],
                    )
    finally:
        await consumer.stop()
        await producer.stop()


async def _main() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await serve(os.environ["KAFKA_BROKER"], os.environ.get("KAFKA_REQUEST_TOPIC", "finance-payments.requests"), stop)


if __name__ == "__main__":
    asyncio.run(_main())
