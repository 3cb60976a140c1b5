"""Redis stopped under running gateways: each place that consults it on the request path fails the way its
config says (open or closed), with the default stated in the schema. A real redis-server, stopped by its pid."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from gateway_engine import create_app
from tests.redis_server import stop_redis
from tests.servers import serve
from tests.test_plugin_rate_limit import backend, gateway_yaml
from tests.test_webhooks import ENV, GATEWAY, STRIPE_SECRET, post, stripe_event, stripe_signature, stripe_source
from tests.test_webhooks import write_webhooks as webhooks_config

WEBHOOKS = Path(__file__).resolve().parent.parent / "schemas" / "webhooks.schema.json"


def deliver(base: str, event_id: str) -> httpx.Response:
    body = stripe_event(event_id)
    return post(f"{base}/api/webhooks/stripe", body, {"stripe-signature": stripe_signature(STRIPE_SECRET, body)})


@pytest.mark.parametrize("mode", ["closed", "open", None])
def test_webhook_dedupe_when_redis_stops(tmp_path, upstream, recorder, redis_url, mode):
    """closed (and the default): 503, nothing runs, the sender retries. open: the event runs, unrecorded."""
    extra = f"dedupe: {{on_store_error: {mode}}}\n" if mode else ""
    root = webhooks_config(
        tmp_path / "c",
        {"stripe": stripe_source(upstream, extra=extra)},
        GATEWAY + f"webhooks: {{store: '{redis_url}'}}\n",
    )
    with serve(create_app(str(root), ENV)) as base:
        assert deliver(base, "evt_before").json()["data"]["duplicate"] is False
        assert deliver(base, "evt_before").json()["data"]["duplicate"] is True  # Redis remembers it
        assert len(recorder.requests) == 1
        stop_redis(redis_url, tmp_path)
        during = deliver(base, "evt_during")
        again = deliver(base, "evt_during")  # the sender's retry, still during the outage
    if mode == "open":
        assert during.status_code == 200 and during.json()["data"]["duplicate"] is False
        assert again.status_code == 200 and len(recorder.requests) == 3  # accepted: the duplicate ran too
    else:
        assert during.status_code == 503 and during.json()["error"]["code"] == "WEBHOOK_STORE_UNAVAILABLE"
        assert again.status_code == 503 and len(recorder.requests) == 1  # nothing ran: exactly once is kept


@pytest.mark.parametrize("mode", ["open", "closed"])
def test_rate_limit_when_redis_stops(gateway, upstream, tmp_path, redis_url, mode):
    """Counting works on the real Redis, then it stops: open lets requests through uncounted, closed is a 503."""
    config = gateway_yaml({"limit": "3/minute", "key": "ip", "on_storage_error": mode}, storage=redis_url)
    base = gateway(config, {"svc": backend(upstream)})
    with httpx.Client() as c:
        assert [c.get(f"{base}/api/svc/items").status_code for _ in range(4)] == [200, 200, 200, 429]
        stop_redis(redis_url, tmp_path)
        during = [c.get(f"{base}/api/svc/items") for _ in range(3)]
    if mode == "open":
        assert [r.status_code for r in during] == [200, 200, 200]
        assert "ratelimit-limit" not in during[0].headers
    else:
        assert [r.status_code for r in during] == [503, 503, 503]
        assert during[0].json()["error"]["code"] == "RATE_LIMIT_UNAVAILABLE"


def test_the_defaults_are_stated_in_the_schemas():
    from gateway_engine_plugins.rate_limit import RateLimitPlugin

    dedupe = json.loads(WEBHOOKS.read_text())["properties"]["dedupe"]["properties"]["on_store_error"]
    assert dedupe["default"] == "closed"
    assert RateLimitPlugin.options_schema["properties"]["on_storage_error"]["default"] == "open"


def test_realtime_tickets_when_redis_stops(tmp_path, redis_url):
    """The backplane's Redis holds the tickets: without it one can be neither issued nor redeemed (a 503)."""
    from tests.realtime_support import ENV as REALTIME_ENV
    from tests.realtime_support import bearer, write_realtime_config

    root = write_realtime_config(tmp_path / "rt", backplane=redis_url)
    with serve(create_app(str(root), REALTIME_ENV)) as base:
        issued = httpx.post(f"{base}/api/realtime/tickets", headers=bearer("olga"))
        assert issued.status_code == 201
        stop_redis(redis_url, tmp_path)
        refused = httpx.post(f"{base}/api/realtime/tickets", headers=bearer("olga"))
        redeemed = httpx.get(
            f"{base}/api/realtime/events",
            params={"channel": "payments:olga", "ticket": issued.json()["data"]["ticket"]},
        )
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "REALTIME_STORE_UNAVAILABLE"
    assert redeemed.status_code == 503 and redeemed.json()["error"]["code"] == "REALTIME_STORE_UNAVAILABLE"
