"""Replays never run an action twice: not by relabelling the Content-Type of a signed delivery (D13), not by
filling the memory dedupe store until it forgets an id still inside its window (D14)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import httpx
import pytest

from gateway_engine.foundation.metrics import REGISTRY
from tests.test_webhooks import (
    GATEWAY,
    STANDARD_SECRET,
    STRIPE_SECRET,
    hooks,  # noqa: F401  (the fixture)
    standard_headers,
    stripe_event,
    stripe_signature,
)

FLEET_SECRET = "fleet-secret"
ENV = {"STRIPE_WEBHOOK_SECRET": STRIPE_SECRET, "STANDARD_SECRET": STANDARD_SECRET, "FLEET_SECRET": FLEET_SECRET}
RELABELS = ["text/plain", "application/x-www-form-urlencoded", "application/octet-stream", None, "application/json"]


def source(name: str, verify: str, target: str, extra: str = "") -> str:
    return (
        f"source: {name}\nverify: {verify}\n{extra}"
        f'actions:\n  - forward: {{url: "{target}/{name}", body: {{event: "{{{{ event.id }}}}"}}}}\n'
    )


def sources(target: str) -> dict[str, str]:
    return {
        "stripe": source("stripe", '{scheme: stripe, secrets: ["${STRIPE_WEBHOOK_SECRET}"]}', target),
        "medusa": source("medusa", '{scheme: standard-webhooks, secrets: ["${STANDARD_SECRET}"]}', target),
        # no timestamp is signed: the id in the body is the only thing that stops a replay, forever
        "fleet": source(
            "fleet",
            '{scheme: hmac, header: Signature, secrets: ["${FLEET_SECRET}"]}',
            target,
            'event: {id: "{{ body.id }}"}\n',
        ),
        "plain": source("plain", '{scheme: hmac, header: Signature, secrets: ["${FLEET_SECRET}"]}', target),
    }


def signed(name: str, body: bytes) -> dict[str, str]:
    if name == "stripe":
        return {"stripe-signature": stripe_signature(STRIPE_SECRET, body)}
    if name == "medusa":
        return standard_headers(STANDARD_SECRET, "msg_1", body)
    return {"signature": hmac.new(FLEET_SECRET.encode(), body, hashlib.sha256).hexdigest()}


def send(url: str, body: bytes, headers: dict[str, str], content_type: str | None) -> httpx.Response:
    return httpx.post(
        url, content=body, headers={**headers, **({"content-type": content_type} if content_type else {})}
    )


@pytest.mark.parametrize("name", ["stripe", "medusa", "fleet", "plain"])
def test_the_same_signed_delivery_under_another_content_type_runs_once(hooks, upstream, recorder, name):
    base = hooks(sources(upstream), env=ENV)
    body = stripe_event("evt_once") if name == "stripe" else json.dumps({"id": "evt_once", "type": "t"}).encode()
    headers = signed(name, body)
    url = f"{base}/api/webhooks/{name}"
    first = send(url, body, headers, "application/json")
    assert first.status_code == 200 and first.json()["data"]["duplicate"] is False, first.text
    replays = [send(url, body, headers, kind) for kind in RELABELS]
    for kind, r in zip(RELABELS, replays):
        assert r.status_code in (200, 415), (kind, r.text)
        if r.status_code == 200:
            assert r.json()["data"]["duplicate"] is True, (kind, r.text)
            assert r.json()["data"]["event"]["id"] == first.json()["data"]["event"]["id"]
        else:
            assert r.json()["error"]["code"] == "UNSUPPORTED_MEDIA_TYPE"
    assert [r.status_code for r in replays[-2:]] == [200, 200]  # no Content-Type, or JSON: the duplicate is told
    assert len(recorder.requests) == 1


def test_a_form_source_parses_its_form_whatever_the_label(hooks, upstream, recorder):
    legacy = source(
        "legacy",
        '{scheme: hmac, header: Signature, secrets: ["${FLEET_SECRET}"]}',
        upstream,
        'body_format: form\nevent: {id: "{{ body.ref }}"}\n',
    )
    base = hooks({"legacy": legacy}, env=ENV)
    body = b"ref=r1&amount=12"
    url = f"{base}/api/webhooks/legacy"
    first = send(url, body, signed("legacy", body), "application/x-www-form-urlencoded")
    as_json = send(url, body, signed("legacy", body), "application/json")
    unlabelled = send(url, body, signed("legacy", body), None)
    assert first.json()["data"]["event"]["id"] == "r1"
    assert as_json.status_code == 415
    assert unlabelled.json()["data"] == {"received": True, "duplicate": True, "event": {"id": "r1", "type": None}}
    assert len(recorder.requests) == 1


def store_full_count(source_name: str) -> float:
    return REGISTRY.get_sample_value("gateway_webhook_store_full_total", {"source": source_name}) or 0.0


def test_a_full_memory_store_refuses_new_events_instead_of_forgetting_handled_ones(hooks, upstream, recorder):
    gateway_yaml = GATEWAY + "webhooks: {memory_capacity: 4}\n"
    base = hooks({"fleet": sources(upstream)["fleet"]}, env=ENV, gateway_yaml=gateway_yaml)
    url = f"{base}/api/webhooks/fleet"

    def deliver(event_id: str) -> httpx.Response:
        body = json.dumps({"id": event_id}).encode()
        return send(url, body, signed("fleet", body), "application/json")

    before = store_full_count("fleet")
    handled = [deliver(f"evt_{i}") for i in range(2)]  # each event holds its id and its one action's mark: 4 entries
    refused = deliver("evt_2")
    replays = [deliver("evt_0"), deliver("evt_1")]
    assert [r.status_code for r in handled] == [200, 200]
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "WEBHOOK_STORE_FULL"
    assert int(refused.headers["retry-after"]) > 0
    assert [r.json()["data"]["duplicate"] for r in replays] == [True, True]
    assert [json.loads(r["body"])["event"] for r in recorder.requests] == ["evt_0", "evt_1"]
    assert store_full_count("fleet") == before + 1


def test_a_full_memory_store_takes_new_events_once_ids_leave_their_window(hooks, upstream, recorder):
    fleet = source(
        "fleet",
        '{scheme: hmac, header: Signature, tolerance: 0.05, secrets: ["${FLEET_SECRET}"]}',
        upstream,
        'event: {id: "{{ body.id }}"}\ndedupe: {window: 0.2}\n',
    )
    base = hooks({"fleet": fleet}, env=ENV, gateway_yaml=GATEWAY + "webhooks: {memory_capacity: 2}\n")
    url = f"{base}/api/webhooks/fleet"
    first = json.dumps({"id": "evt_a"}).encode()
    second = json.dumps({"id": "evt_b"}).encode()
    assert send(url, first, signed("fleet", first), "application/json").status_code == 200
    deadline = time.monotonic() + 10  # only keeps a broken store from hanging the test
    while (r := send(url, second, signed("fleet", second), "application/json")).status_code == 503:
        assert time.monotonic() < deadline, "the expired ids were never purged"
        time.sleep(0.05)
    assert r.status_code == 200 and r.json()["data"]["duplicate"] is False
    assert [json.loads(x["body"])["event"] for x in recorder.requests] == ["evt_a", "evt_b"]
