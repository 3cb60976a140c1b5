"""The shipped payments gateway (examples/finance-payments) against its responder on a real broker:
the nine POST routes, identity from the JWT only, CORS from ALLOWED_ORIGINS, timeout from REST_TIMEOUT."""

from __future__ import annotations

import importlib.util
import shutil
import time
from pathlib import Path

import httpx
import jwt
import pytest

from gateway_engine import create_app, load_config
from tests.kafka_server import Background, Broker, kafka_broker  # noqa: F401
from tests.servers import serve

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "finance-payments"
SECRET = "finance-payments-test-secret-0123456789"
ORIGIN = "https://pay.example"


def _responder():
    spec = importlib.util.spec_from_file_location("finance_payments_responder", EXAMPLE / "responder.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def payments(tmp_path, kafka_broker: Broker):
    requests, replies = kafka_broker.unique("payments.requests"), kafka_broker.unique("payments.replies")
    kafka_broker.topics(requests, partitions=2)
    kafka_broker.topics(replies)
    root = tmp_path / "finance-payments"
    shutil.copytree(EXAMPLE, root)
    env = {
        "KAFKA_BROKER": kafka_broker.address,
        "KAFKA_GROUP": "payments-test",
        "KAFKA_REQUEST_TOPIC": requests,
        "KAFKA_REPLY_TOPIC": replies,
        "REST_TIMEOUT": "8000",
        "ALLOWED_ORIGINS": f'["{ORIGIN}", "https://admin.pay.example"]',
        "JWT_SECRET": SECRET,
    }
    responder = _responder()
    with Background(lambda stop, ready: responder.serve(kafka_broker.address, requests, stop, ready)):
        with serve(create_app(str(root), env)) as url:
            yield url + "/api/vy-finance-payments", env, root


def _as(sub: str) -> dict[str, str]:
    now = int(time.time())
    return {"authorization": "Bearer " + jwt.encode({"sub": sub, "iat": now, "exp": now + 300}, SECRET, "HS256")}


def test_example_finance_payments_nine_routes_round_trip(payments):
    base, _, _ = payments
    ana = _as("ana")

    def call(path: str, body: dict, who: dict = ana) -> httpx.Response:
        return httpx.post(base + path, json=body, headers=who, timeout=20)

    intent = call("/payment-intents", {"amount": 1250, "currency": "EUR"})
    assert intent.status_code == 201, intent.text
    pi = intent.json()["data"]
    assert pi["status"] == "requires_confirmation" and pi["id"].startswith("pi_")
    assert call("/payment-intents/get", {"id": pi["id"]}).json()["data"] == pi
    method = call("/payment-methods", {"type": "card", "card": {"last4": "4242"}})
    assert method.status_code == 201
    pm = method.json()["data"]
    assert call("/payment-methods/get", {"id": pm["id"]}).json()["data"]["card"] == {"last4": "4242"}
    confirmed = call("/payment-intents/confirm", {"id": pi["id"], "paymentMethodId": pm["id"]})
    assert confirmed.status_code == 200 and confirmed.json()["data"]["status"] == "succeeded"
    refund = call("/refunds", {"paymentIntentId": pi["id"], "amount": 250})
    assert refund.status_code == 201
    re = refund.json()["data"]
    assert call("/payment-refunds/get", {"id": re["id"]}).json()["data"]["amount"] == 250
    tracking = call("/payment-intents/ztracking", {"id": pi["id"]}).json()["data"]
    assert tracking["history"] == ["requires_confirmation", "succeeded", "refunded"]
    deleted = call("/payment-methods/delete", {"id": pm["id"]})
    assert deleted.status_code == 200 and deleted.json()["data"] == {"id": pm["id"], "deleted": True}
    gone = call("/payment-methods/get", {"id": pm["id"]})
    assert gone.status_code == 404 and gone.json()["success"] is False


def test_example_finance_payments_identity_is_the_token_subject(payments):
    base, _, _ = payments
    mine = httpx.post(f"{base}/payment-intents", json={"amount": 5, "currency": "usd"}, headers=_as("ana"), timeout=20)
    pi = mine.json()["data"]["id"]
    # bob cannot read ana's payment, whatever he claims in headers or body
    forged = {**_as("bob"), "x-user-id": "ana", "user-id": "ana"}
    r = httpx.post(f"{base}/payment-intents/get", json={"id": pi, "userId": "ana"}, headers=forged, timeout=20)
    assert r.status_code == 404
    anonymous = httpx.post(f"{base}/payment-intents/get", json={"id": pi}, timeout=20)
    assert anonymous.status_code == 401
    invalid = httpx.post(f"{base}/payment-intents", json={"amount": -1}, headers=_as("ana"), timeout=20)
    assert invalid.status_code == 400 and invalid.json()["success"] is False


def test_example_finance_payments_respond_async_and_idempotency(payments):
    base, _, _ = payments
    headers = {**_as("ana"), "prefer": "respond-async", "idempotency-key": "order-77"}
    first = httpx.post(f"{base}/payment-intents", json={"amount": 9, "currency": "eur"}, headers=headers, timeout=20)
    assert first.status_code == 202
    location = first.headers["location"]
    assert location.startswith("/api/vy-finance-payments/results/")
    result = httpx.get(base.rsplit("/api/", 1)[0] + location, headers={**_as("ana"), "prefer": "wait=5"}, timeout=20)
    assert result.status_code == 201
    again = httpx.post(f"{base}/payment-intents", json={"amount": 9, "currency": "eur"}, headers=headers, timeout=20)
    # the same key: the same exchange, answered at once now that it is done; not a second payment
    assert again.status_code == 201 and again.json()["data"]["id"] == result.json()["data"]["id"]


def test_example_finance_payments_cors_from_allowed_origins(payments):
    base, _, _ = payments
    preflight = {"origin": ORIGIN, "access-control-request-method": "POST"}
    ok = httpx.options(f"{base}/payment-intents", headers=preflight, timeout=20)
    assert ok.headers.get("access-control-allow-origin") == ORIGIN
    other = httpx.options(
        f"{base}/payment-intents", headers={**preflight, "origin": "https://evil.example"}, timeout=20
    )
    assert "access-control-allow-origin" not in other.headers


def test_example_finance_payments_timeout_from_rest_timeout(payments):
    _, env, root = payments
    config = load_config(root, {**env, "REST_TIMEOUT": "2500"})
    route = next(r for r in config.routes if r.name == "create-payment-intent")
    assert route.upstream.timeouts.total == 2.5
    assert len([r for r in config.routes if r.methods == ("POST",)]) == 9


def test_example_finance_payments_health_probes_the_broker(payments):
    base, _, _ = payments
    health = httpx.get(base.rsplit("/vy-", 1)[0] + "/health/backends", timeout=20).json()
    assert health["systems"]["finance-payments"]["status"] == "up"
