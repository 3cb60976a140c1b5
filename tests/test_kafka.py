"""``transport: kafka`` on a real Kafka-protocol broker (Tansu): request-reply, asynchronous results,
fire-and-forget, timeouts, a dead broker, bounds; the message headers checked where the service reads them."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from tests.kafka_server import Background, Broker, kafka_broker, tansu  # noqa: F401
from tests.servers import free_port

SECRET = "kafka-test-jwt-secret-0123456789abcdef"
REPLY_PARTITION = 1  # of a two-partition reply topic: proves the service honours `reply-partition`

GATEWAY = """
version: 1
plugins:
  - request_id
  - auth: {accept: [jwt, api_key]}
  - envelope
auth:
  api_keys: [{name: svc, key: "${SVC_KEY}", client_id: tenant-7, scopes: ["*"]}]
  jwt: {secret: "${JWT_SECRET}", algorithms: [HS256]}
"""

ROUTES = """
backend: orders
prefix: /orders
upstream:
  transport: kafka
  brokers: ${KAFKA_BROKER}
  timeout: ${TIMEOUT:-5s}
  health: {path: /}
  kafka:
    group: test-gateway
    reply: {topic: "${REPLY_TOPIC}", partition: REPLY_PARTITION, max_bytes: 2048, retention: 1m}
routes:
  - name: create
    method: POST
    path: /create
    kafka:
      topic: ${REQUEST_TOPIC}
      key: "{{ body.orderId }}"
      headers: {operation: create-order, shop: "{{ query.shop }}"}
  - name: notify
    method: POST
    path: /notify
    kafka: {topic: "${EVENT_TOPIC}", mode: fire-and-forget, key: "{{ identity.user_id }}"}
  - name: result
    method: GET
    path: /results/{id}
    kafka: {mode: result}
""".replace("REPLY_PARTITION", str(REPLY_PARTITION))


def token(sub: str) -> str:
    now = int(time.time())
    return jwt.encode({"sub": sub, "iat": now, "exp": now + 300}, SECRET, algorithm="HS256")


class Service:
    """A responder on the request topic that records what it got and answers as each body asks:
    ``{"status": 201, "headers": {...}, "size": N, "silent": true, "delay": s}``."""

    def __init__(self, broker: Broker, topic: str) -> None:
        self.broker, self.topic = broker, topic
        self.seen: list[dict[str, Any]] = []

    async def run(self, stop: asyncio.Event, ready: Any) -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.broker.address, group_id=None, fetch_max_wait_ms=20)
        producer = AIOKafkaProducer(bootstrap_servers=self.broker.address, max_request_size=4 * 1024 * 1024)
        await consumer.start()
        await producer.start()
        try:
            tp = TopicPartition(self.topic, 0)
            consumer.assign([tp])
            await consumer.seek_to_end(tp)
            await consumer.position(tp)
            ready.set()
            while not stop.is_set():
                for records in (await consumer.getmany(timeout_ms=100)).values():
                    for record in records:
                        await self.answer(producer, record)
        finally:
            await consumer.stop()
            await producer.stop()

    async def answer(self, producer: AIOKafkaProducer, record: Any) -> None:
        headers = {k: v.decode() for k, v in record.headers}
        body = json.loads(record.value)
        self.seen.append({"headers": headers, "key": record.key, "body": body})
        if body.get("silent"):
            return
        await asyncio.sleep(body.get("delay", 0))
        value = b"x" * body["size"] if "size" in body else json.dumps({"got": body}).encode()
        reply_headers = [("correlation-id", headers["correlation-id"].encode())]
        reply_headers += [("status", str(body.get("status", 200)).encode())]
        reply_headers += [(k, v.encode()) for k, v in body.get("headers", {}).items()]
        await producer.send_and_wait(
            headers["reply-to"], value, partition=int(headers["reply-partition"]), headers=reply_headers
        )


@pytest.fixture
def orders(kafka_broker: Broker, gateway) -> Iterator[tuple[str, Service, dict[str, str]]]:
    names = {n: kafka_broker.unique(n.lower()) for n in ("REQUEST_TOPIC", "EVENT_TOPIC")}
    names["REPLY_TOPIC"] = kafka_broker.unique("replies")
    kafka_broker.topics(names["REQUEST_TOPIC"], names["EVENT_TOPIC"])
    kafka_broker.topics(names["REPLY_TOPIC"], partitions=2)
    service = Service(kafka_broker, names["REQUEST_TOPIC"])
    env = {"KAFKA_BROKER": kafka_broker.address, "JWT_SECRET": SECRET, "SVC_KEY": "svc-key-123", **names}
    with Background(service.run):
        yield gateway(GATEWAY, {"orders": ROUTES}, env), service, names


def test_kafka_request_reply_round_trip_headers_at_the_service(orders):
    base, service, _ = orders
    r = httpx.post(
        f"{base}/orders/create?shop=berlin",
        json={"orderId": "o-1", "status": 201, "headers": {"x-order-state": "new"}},
        headers={"authorization": f"Bearer {token('u-42')}", "idempotency-key": "idem-1", "x-user-id": "forged"},
        timeout=20,
    )
    assert r.status_code == 201, r.text
    assert r.json()["data"] == {"got": {"orderId": "o-1", "status": 201, "headers": {"x-order-state": "new"}}}
    assert r.headers["x-order-state"] == "new"
    [got] = service.seen
    h = got["headers"]
    assert h["user-id"] == "u-42" and h["auth-method"] == "jwt"  # from the verified token, not the client's header
    assert h["request-id"] == r.headers["x-request-id"]
    assert h["idempotency-key"] == "idem-1" and len(h["correlation-id"]) == 32
    assert h["reply-to"] and h["reply-partition"] == str(REPLY_PARTITION)
    assert h["operation"] == "create-order" and h["shop"] == "berlin"
    assert "authorization" not in h and "x-user-id" not in h
    assert got["key"] == b"o-1"


def test_kafka_request_reply_key_tenant_and_idempotent_correlation(orders):
    base, service, _ = orders
    send = {"x-api-key": "svc-key-123", "idempotency-key": "same"}
    first = httpx.post(f"{base}/orders/create", json={"orderId": "a"}, headers=send, timeout=20)
    again = httpx.post(f"{base}/orders/create", json={"orderId": "a"}, headers=send, timeout=20)
    other = httpx.post(f"{base}/orders/create", json={"orderId": "b"}, headers={"x-api-key": "svc-key-123"}, timeout=20)
    assert first.status_code == again.status_code == other.status_code == 200
    assert first.json()["data"] == again.json()["data"]
    # the retry was answered from the first exchange: the service saw two messages, not three
    assert [s["body"]["orderId"] for s in service.seen] == ["a", "b"]
    assert service.seen[0]["headers"]["tenant-id"] == "tenant-7" and "user-id" not in service.seen[0]["headers"]
    assert service.seen[0]["headers"]["correlation-id"] != service.seen[1]["headers"]["correlation-id"]


def test_kafka_request_reply_timeout_is_504(orders, kafka_broker, gateway):
    base, _, names = orders
    env = {"KAFKA_BROKER": kafka_broker.address, "JWT_SECRET": SECRET, "SVC_KEY": "k", "TIMEOUT": "1s", **names}
    fast = gateway(GATEWAY, {"orders": ROUTES}, env)
    r = httpx.post(f"{fast}/orders/create", json={"silent": True}, headers=_user(), timeout=20)
    assert r.status_code == 504 and r.json()["error"]["code"] == "UPSTREAM_TIMEOUT"


def test_kafka_respond_async_202_then_result_at_location(orders):
    base, service, _ = orders
    r = httpx.post(
        f"{base}/orders/create",
        json={"orderId": "slow", "delay": 0.5, "status": 201},
        headers={**_user(), "prefer": "respond-async"},
        timeout=20,
    )
    assert r.status_code == 202, r.text
    assert r.headers["preference-applied"] == "respond-async"
    location = r.headers["location"]
    assert location.startswith("/orders/results/") and r.json()["data"]["status"] == "pending"
    result = httpx.get(f"{base}{location}", headers={**_user(), "prefer": "wait=10"}, timeout=20)
    assert result.status_code == 201 and result.json()["data"]["got"]["orderId"] == "slow"
    again = httpx.get(f"{base}{location}", headers=_user(), timeout=20)  # still there until the retention ends
    assert again.status_code == 201
    stranger = httpx.get(f"{base}{location}", headers=_user("someone-else"), timeout=20)
    assert stranger.status_code == 404 and stranger.json()["error"]["code"] == "RESULT_NOT_FOUND"


def test_kafka_result_pending_without_wait_then_prefer_wait_bounded(orders):
    base, _, _ = orders
    r = httpx.post(
        f"{base}/orders/create",
        json={"orderId": "later", "delay": 1.5},
        headers={**_user(), "prefer": "respond-async"},
        timeout=20,
    )
    location = r.headers["location"]
    pending = httpx.get(f"{base}{location}", headers=_user(), timeout=20)
    assert pending.status_code == 202 and pending.headers["location"] == location
    # wait=600 is capped by the upstream timeout (5s), and the reply comes well within it
    done = httpx.get(f"{base}{location}", headers={**_user(), "prefer": "wait=600"}, timeout=20)
    assert done.status_code == 200 and done.json()["data"]["got"]["orderId"] == "later"
    unknown = httpx.get(f"{base}/orders/results/0123456789abcdef", headers=_user(), timeout=20)
    assert unknown.status_code == 404


def test_kafka_fire_and_forget_202_with_the_message_on_the_topic(orders, kafka_broker):
    base, _, names = orders
    r = httpx.post(f"{base}/orders/notify", json={"event": "shipped"}, headers=_user("u-9"), timeout=20)
    assert r.status_code == 202 and r.json()["data"] == {"accepted": True}
    [record] = kafka_broker.read(names["EVENT_TOPIC"], 1)
    assert json.loads(record.value) == {"event": "shipped"} and record.key == b"u-9"
    headers = {k: v.decode() for k, v in record.headers}
    assert headers["user-id"] == "u-9" and headers["request-id"] == r.headers["x-request-id"]
    assert "correlation-id" not in headers and "reply-to" not in headers


def test_kafka_oversized_reply_is_bounded_502(orders):
    base, _, _ = orders
    r = httpx.post(f"{base}/orders/create", json={"size": 10_000}, headers=_user(), timeout=20)
    assert r.status_code == 502 and r.json()["error"]["code"] == "REPLY_TOO_LARGE"


def test_kafka_invalid_reply_status_is_502(orders):
    base, _, _ = orders
    r = httpx.post(f"{base}/orders/create", json={"status": 42}, headers=_user(), timeout=20)
    assert r.status_code == 502 and r.json()["error"]["code"] == "UPSTREAM_ERROR"


def test_kafka_oversized_request_is_413(orders):
    base, service, _ = orders
    r = httpx.post(f"{base}/orders/create", json={"pad": "x" * 2_000_000}, headers=_user(), timeout=20)
    assert r.status_code == 413 and r.json()["success"] is False
    assert service.seen == []


def test_kafka_health_probes_the_broker(orders):
    base, _, _ = orders
    r = httpx.get(f"{base}/health/backends", timeout=20)
    assert r.json()["systems"]["orders"]["status"] == "up", r.text


def test_kafka_broker_down_is_a_clear_502_never_500(gateway):
    env = {
        "KAFKA_BROKER": f"127.0.0.1:{free_port()}",
        "JWT_SECRET": SECRET,
        "SVC_KEY": "k",
        "REQUEST_TOPIC": "t",
        "EVENT_TOPIC": "e",
        "REPLY_TOPIC": "r",
    }
    base = gateway(GATEWAY, {"orders": ROUTES}, env)
    for path in ("/orders/create", "/orders/notify", "/orders/create"):  # the second try answers from memory
        r = httpx.post(f"{base}{path}", json={}, headers=_user(), timeout=20)
        assert r.status_code == 502, r.text
        assert r.json()["error"]["code"] == "UPSTREAM_UNAVAILABLE"
    health = httpx.get(f"{base}/health/backends", timeout=20).json()["systems"]["orders"]
    assert health["status"] == "down"


def _user(sub: str = "u-1") -> dict[str, str]:
    return {"authorization": f"Bearer {token(sub)}"}


def test_kafka_respond_async_with_wait_answers_a_fast_reply_directly(orders):
    base, _, _ = orders
    headers = {**_user(), "prefer": "respond-async, wait=10"}
    r = httpx.post(f"{base}/orders/create", json={"orderId": "quick", "status": 201}, headers=headers, timeout=20)
    assert r.status_code == 201 and r.json()["data"]["got"]["orderId"] == "quick"


def test_kafka_broker_gone_after_start_is_an_envelope_never_500(tmp_path, gateway):
    with tansu(tmp_path) as broker:
        names = {"REQUEST_TOPIC": "req", "EVENT_TOPIC": "evt", "REPLY_TOPIC": "rep"}
        broker.topics("req", "evt")
        broker.topics("rep", partitions=2)
        service = Service(broker, "req")
        env = {"KAFKA_BROKER": broker.address, "JWT_SECRET": SECRET, "SVC_KEY": "k", "TIMEOUT": "3s", **names}
        with Background(service.run):
            base = gateway(GATEWAY, {"orders": ROUTES}, env)
            assert httpx.post(f"{base}/orders/create", json={}, headers=_user(), timeout=20).status_code == 200
    # the broker is stopped now
    for path in ("/orders/create", "/orders/notify"):
        r = httpx.post(f"{base}{path}", json={}, headers=_user(), timeout=30)
        assert r.status_code == 502, r.text  # at once, not after the timeout
        assert r.json()["success"] is False and r.json()["error"]["code"] == "UPSTREAM_UNAVAILABLE"
