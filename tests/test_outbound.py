"""Outbound webhooks end to end: register, emit from a route, signed delivery with the exact retry schedule."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway_engine import create_app
from gateway_engine.store import async_url
from tests.outbound_support import KEYS, Receiver, api, gateway_yaml, verify, wait_for, write_outbound_config
from tests.postgres_server import postgres_server, postgres_url  # noqa: F401
from tests.servers import serve


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path: Path) -> str | None:
    if request.param == "sqlite":
        return None  # the embedded default, in the config's data directory
    return async_url(request.getfixturevalue("postgres_url"))


def test_route_emit_is_delivered_signed_on_the_exact_schedule(tmp_path, upstream, store_url):
    receiver = Receiver([(500, {}), (503, {}), (502, {})])  # fails three times, then succeeds
    with serve(receiver) as hook_url:
        root = write_outbound_config(tmp_path / "cfg", gateway_yaml(store_url), upstream)
        with serve(create_app(str(root), KEYS)) as base, api(base, KEYS["ACME_KEY"]) as client:
            made = client.post("/webhooks/endpoints", json={"url": hook_url + "/hook", "events": ["order.*"]})
            assert made.status_code == 201, made.text
            endpoint = made.json()
            secret = endpoint["secret"]
            assert secret.startswith("whsec_")
            answer = client.put("/orders/42/status", json={"status": "ready"})
            assert answer.status_code == 200
            wait_for(lambda: len(receiver.received) >= 4)
            gaps = [b["at"] - a["at"] for a, b in zip(receiver.received, receiver.received[1:])]
            # the compressed schedule 0.2 s, 0.4 s, 0.6 s (no jitter): each gap at least its delay
            assert [round(g, 1) >= d for g, d in zip(gaps, (0.2, 0.4, 0.6))] == [True, True, True]
            ids = {r["headers"]["webhook-id"] for r in receiver.received}
            assert len(ids) == 1  # one message, retried
            for request in receiver.received:
                assert verify(secret, request["headers"], request["body"])
            log = wait_for(
                lambda: (
                    (r := client.get("/webhooks/deliveries", params={"endpoint": endpoint["id"]}).json())["items"]
                    and len(r["items"]) == 4
                    and r
                )
            )
            outcomes = [i["outcome"] for i in reversed(log["items"])]
            assert outcomes == ["failed", "failed", "failed", "succeeded"]
            assert [i["status"] for i in reversed(log["items"])] == [500, 503, 502, 200]
            assert log["items"][1]["nextRetry"] is not None and log["items"][0]["nextRetry"] is None
