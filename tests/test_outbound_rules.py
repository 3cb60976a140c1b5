"""Outbound webhook rules: SSRF refusals, signatures, the schedule's clamps, 410, tenants, a failing store."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import httpx
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway_engine import create_app
from gateway_engine.outbound import metrics
from gateway_engine.outbound.schedule import next_delay
from gateway_engine.outbound.sender import Outcome, Sender
from gateway_engine.outbound.settings import DeliverySettings, delivery_settings
from gateway_engine.outbound.signing import new_secret, secret_problem, signed_headers
from tests.outbound_support import KEYS, Receiver, api, gateway_yaml, verify, wait_for, write_outbound_config
from tests.servers import serve


@settings(max_examples=50, deadline=None)
@given(body=st.binary(max_size=2048), key=st.binary(min_size=24, max_size=64), msg=st.text("abc_0123", min_size=1))
def test_outbound_signatures_verify_with_the_standard_webhooks_algorithm(body, key, msg):
    import base64

    secret = "whsec_" + base64.b64encode(key).decode()
    assert secret_problem(secret) is None
    headers = dict(signed_headers([secret], msg, 1_700_000_000, body))
    assert verify(secret, headers, body)
    assert not verify(new_secret(), headers, body)  # another key never verifies


def test_outbound_rotation_signs_with_both_secrets():
    old, new = new_secret(), new_secret()
    headers = dict(signed_headers([new, old], "msg_1", 1, b"{}"))
    assert headers["webhook-signature"].count("v1,") == 2
    assert verify(old, headers, b"{}") and verify(new, headers, b"{}")


@pytest.mark.parametrize("bad", ["whsec_", "secret", "whsec_!!!", "whsec_" + "QUJD", 7])
def test_outbound_bad_secrets_are_explained(bad):
    assert secret_problem(bad)


def _outcome(kind="failed", status=500, retry_after=None) -> Outcome:
    return Outcome(kind, status, 0.01, "", "x", retry_after)


def test_outbound_schedule_retry_after_is_clamped_and_throttles_wait():
    plan = DeliverySettings(schedule=(0, 10, 100), jitter=0, throttle_min=60)
    assert next_delay(plan, 1, None, _outcome()) == 10
    assert next_delay(plan, 1, None, _outcome(retry_after=1)) == 10  # never sooner than scheduled
    assert next_delay(plan, 1, None, _outcome(retry_after=15)) == 15
    assert next_delay(plan, 1, None, _outcome(retry_after=500)) == 20  # at most twice the schedule
    assert next_delay(plan, 1, None, _outcome(status=429)) == 60  # a 429 waits at least throttle_min
    assert next_delay(plan, 1, None, _outcome(kind="timeout", status=None)) == 60
    assert next_delay(plan, 2, None, _outcome()) == 100
    assert next_delay(plan, 3, None, _outcome()) is None  # every scheduled attempt made
    assert next_delay(plan, 1, 0, _outcome()) is None  # maxRetries 0: one attempt only


def test_outbound_schedule_jitter_stays_within_twenty_percent():
    plan = DeliverySettings(schedule=(0, 100), jitter=0.2)
    delays = {next_delay(plan, 1, None, _outcome()) for _ in range(200)}
    assert all(80 <= d <= 120 for d in delays) and len(delays) > 1


def test_outbound_settings_defaults_are_svix():
    plan = delivery_settings({})
    assert plan.schedule == (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
    assert (plan.timeout, plan.throttle_min, plan.disable_after) == (15, 60, 5 * 86400)
    assert plan.write_linger == 0.02
    assert [delivery_settings({"write_linger": v}).write_linger for v in ("5ms", 0, "0.1s")] == [0.005, 0.0, 0.1]
    with pytest.raises(ValueError):
        delivery_settings({"allow_cidrs": ["not-a-network"]})


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "10.1.2.3", "169.254.169.254", "[::1]", "[::ffff:10.0.0.1]", "localhost"]
)
def test_outbound_sender_refuses_private_addresses_and_connects_nowhere(host):
    receiver = Receiver()
    with serve(receiver) as url:
        port = url.rsplit(":", 1)[1]
        outcome = asyncio.run(_send(DeliverySettings(), f"http://{host}:{port}/hook"))
    assert outcome.kind == "refused" and receiver.received == []


def test_outbound_sender_delivers_to_an_allowlisted_address_without_following_redirects():
    receiver = Receiver([(302, {"location": "http://example.com/"})])
    with serve(receiver) as url:
        allowed = delivery_settings({"allow_cidrs": ["127.0.0.1/32"]})
        moved = asyncio.run(_send(allowed, url + "/hook"))
        ok = asyncio.run(_send(allowed, url + "/hook"))
    assert moved.kind == "failed" and moved.status == 302  # 3xx is a failure, never followed
    assert ok.kind == "succeeded" and ok.response == "ok" and len(receiver.received) == 2


async def _send(plan: DeliverySettings, url: str) -> Outcome:
    sender = Sender(plan)
    try:
        return await sender.send(url, [("content-type", "application/json")], b"{}")
    finally:
        await sender.aclose()


def _config(tmp_path: Path, upstream: str, extra: str = "", schedule: str = "[0, 0.2s, 0.4s, 0.6s]") -> Path:
    return write_outbound_config(tmp_path / "cfg", gateway_yaml(None, schedule, extra), upstream)


@pytest.mark.parametrize("url", ["http://10.0.0.7/hook", "http://169.254.169.254/latest", "http://127.0.0.1:9/x"])
def test_outbound_registration_refuses_private_targets_unless_allowlisted(tmp_path, upstream, url):
    extra = "  https_only: false\n"
    root = write_outbound_config(
        tmp_path / "cfg", gateway_yaml(None, extra=extra).replace("  allow_cidrs: [127.0.0.1/32]\n", ""), upstream
    )
    with serve(create_app(str(root), KEYS)) as base, api(base, KEYS["ACME_KEY"]) as client:
        refused = client.post("/webhooks/endpoints", json={"url": url, "events": ["order.*"]})
        assert refused.status_code == 422 and refused.json()["error"]["code"] == "URL_NOT_ALLOWED"


@pytest.mark.parametrize(
    "body, field",
    [
        ({"url": "ftp://x.example/", "events": ["order.*"]}, "url"),
        ({"url": "http://127.0.0.1:9/", "events": ["nothing.*"]}, "events"),
        ({"url": "http://127.0.0.1:9/", "events": []}, "events"),
        ({"url": "http://127.0.0.1:9/", "events": ["order.*"], "headers": {"webhook-id": "x"}}, "headers"),
        ({"url": "http://127.0.0.1:9/", "events": ["order.*"], "headers": {"x-a": "1\r\nx: 2"}}, "headers"),
        ({"url": "http://127.0.0.1:9/", "events": ["order.*"], "secret": "whsec_short"}, "secret"),
        ({"url": "http://127.0.0.1:9/", "events": ["order.*"], "maxRetries": -1}, "maxRetries"),
        ({"url": "http://127.0.0.1:9/", "events": ["order.*"], "colour": "red"}, "colour"),
    ],
)
def test_outbound_bad_registrations_get_a_clear_error(tmp_path, upstream, body, field):
    with serve(create_app(str(_config(tmp_path, upstream)), KEYS)) as base, api(base, KEYS["ACME_KEY"]) as client:
        answer = client.post("/webhooks/endpoints", json=body)
        assert answer.status_code == 422, answer.text
        assert answer.json()["error"]["details"][0]["field"] == field
        assert client.post("/webhooks/endpoints", content=b"{nope").status_code == 400
        assert client.get("/webhooks/endpoints", params={"limit": "0"}).status_code == 422


def test_outbound_410_disables_the_endpoint_and_emits_endpoint_disabled(tmp_path, upstream):
    gone, watcher = Receiver([(410, {})]), Receiver()
    with serve(gone) as gone_url, serve(watcher) as watcher_url:
        with serve(create_app(str(_config(tmp_path, upstream)), KEYS)) as base, api(base, KEYS["ACME_KEY"]) as client:
            ep = client.post("/webhooks/endpoints", json={"url": gone_url, "events": ["order.*"]}).json()
            client.post("/webhooks/endpoints", json={"url": watcher_url, "events": ["endpoint.disabled"]})
            assert client.put("/orders/7/status").status_code == 200
            state = wait_for(
                lambda: (e := client.get(f"/webhooks/endpoints/{ep['id']}").json()) and not e["enabled"] and e
            )
            assert "410" in state["disabledReason"]
            wait_for(lambda: watcher.received)
            import orjson

            event = orjson.loads(watcher.received[0]["body"])
            assert event["type"] == "endpoint.disabled" and event["data"]["endpointId"] == ep["id"]
            assert len(gone.received) == 1  # never retried


def test_outbound_retry_after_is_honoured_by_the_dispatcher(tmp_path, upstream):
    receiver = Receiver([(503, {"retry-after": "1"})])  # asks for 1 s where the schedule says 0.8 s
    with serve(receiver) as hook_url:
        root = _config(tmp_path, upstream, schedule="[0, 0.8s]")
        with serve(create_app(str(root), KEYS)) as base, api(base, KEYS["ACME_KEY"]) as client:
            client.post("/webhooks/endpoints", json={"url": hook_url, "events": ["order.*"]})
            client.put("/orders/1/status")
            wait_for(lambda: len(receiver.received) >= 2)
    assert receiver.received[1]["at"] - receiver.received[0]["at"] >= 0.95


def test_outbound_tenants_never_see_each_other(tmp_path, upstream):
    acme_hook, globex_hook = Receiver(), Receiver()
    with serve(acme_hook) as acme_url, serve(globex_hook) as globex_url:
        with serve(create_app(str(_config(tmp_path, upstream)), KEYS)) as base:
            with api(base, KEYS["ACME_KEY"]) as acme, api(base, KEYS["GLOBEX_KEY"]) as globex:
                mine = acme.post("/webhooks/endpoints", json={"url": acme_url, "events": ["*"]}).json()
                globex.post("/webhooks/endpoints", json={"url": globex_url, "events": ["*"]})
                assert [e["id"] for e in globex.get("/webhooks/endpoints").json()["items"]] != [mine["id"]]
                for call in (
                    lambda: globex.get(f"/webhooks/endpoints/{mine['id']}"),
                    lambda: globex.patch(f"/webhooks/endpoints/{mine['id']}", json={"enabled": False}),
                    lambda: globex.delete(f"/webhooks/endpoints/{mine['id']}"),
                    lambda: globex.post(f"/webhooks/endpoints/{mine['id']}/test"),
                    lambda: globex.post(f"/webhooks/endpoints/{mine['id']}/rotate-secret"),
                ):
                    answer = call()
                    assert answer.status_code == 404 and answer.json()["error"]["code"] == "ENDPOINT_NOT_FOUND"
                assert acme.put("/orders/5/status").status_code == 200
                wait_for(lambda: acme_hook.received)
                assert globex.get("/webhooks/deliveries").json()["items"] == []
                assert acme.get(f"/webhooks/endpoints/{mine['id']}").json()["enabled"] is True
    assert globex_hook.received == []


def test_outbound_test_rotate_update_replay_and_delete(tmp_path, upstream):
    receiver = Receiver()
    with serve(receiver) as hook_url:
        with serve(create_app(str(_config(tmp_path, upstream)), KEYS)) as base, api(base, KEYS["ACME_KEY"]) as client:
            ep = client.post(
                "/webhooks/endpoints",
                json={"url": hook_url, "events": ["order.created"], "headers": {"X-Partner": "p1"}, "description": "d"},
            ).json()
            assert "secret" not in client.get(f"/webhooks/endpoints/{ep['id']}").json()  # shown once
            attempt = client.post(f"/webhooks/endpoints/{ep['id']}/test").json()
            assert (
                attempt["outcome"] == "succeeded"
                and attempt["status"] == 200
                and attempt["eventType"] == "webhook.test"
            )
            assert receiver.received[-1]["headers"]["x-partner"] == "p1"
            assert verify(ep["secret"], receiver.received[-1]["headers"], receiver.received[-1]["body"])
            rotated = client.post(f"/webhooks/endpoints/{ep['id']}/rotate-secret").json()
            client.post(f"/webhooks/endpoints/{ep['id']}/test")
            last = receiver.received[-1]
            assert verify(rotated["secret"], last["headers"], last["body"]) and verify(
                ep["secret"], last["headers"], last["body"]
            )
            updated = client.patch(f"/webhooks/endpoints/{ep['id']}", json={"events": ["order.*"], "maxRetries": 2})
            assert updated.json()["events"] == ["order.*"] and updated.json()["maxRetries"] == 2
            client.put("/orders/9/status")
            wait_for(lambda: len(receiver.received) == 3)
            message = receiver.received[-1]["headers"]["webhook-id"]
            assert client.post(f"/webhooks/messages/{message}/replay").json()["deliveries"] == 1
            wait_for(lambda: len(receiver.received) == 4)
            assert receiver.received[-1]["headers"]["webhook-id"] == message
            # each attempt is logged just after its receiver answered
            wait_for(lambda: len(client.get("/webhooks/deliveries").json()["items"]) == 4)
            page = client.get("/webhooks/deliveries", params={"limit": "2"}).json()
            assert len(page["items"]) == 2 and page["nextCursor"]
            rest = client.get("/webhooks/deliveries", params={"limit": "100", "cursor": page["nextCursor"]}).json()
            assert len(rest["items"]) == 2 and rest["nextCursor"] is None
            assert client.get("/webhooks/deliveries", params={"outcome": "failed"}).json()["items"] == []
            assert client.delete(f"/webhooks/endpoints/{ep['id']}").json()["deleted"] is True
            assert client.get(f"/webhooks/endpoints/{ep['id']}").status_code == 404


def test_outbound_emit_never_fails_the_answer_when_the_store_fails(tmp_path, upstream):
    root = _config(tmp_path, upstream)
    failed = metrics.EMITTED.labels("failed")._value.get()
    with serve(create_app(str(root), KEYS)) as base, api(base, KEYS["ACME_KEY"]) as client:
        assert client.get("/webhooks/endpoints").status_code == 200  # the store is open
        with sqlite3.connect(root / "data" / "gateway.db") as db:
            db.execute("DROP TABLE outbound_messages")  # the outbox is gone: every insert fails
        answer = client.put("/orders/3/status")
        assert answer.status_code == 200 and answer.json()["method"] == "PUT"
        wait_for(lambda: metrics.EMITTED.labels("failed")._value.get() > failed)
        assert client.put("/orders/3/plain").status_code == 200


@pytest.mark.parametrize(
    "address, refused",
    [
        ("8.8.8.8", False),
        ("2606:4700:4700::1111", False),
        ("100.64.0.1", True),  # carrier-grade NAT
        ("64:ff9b::a00:1", True),  # NAT64 of 10.0.0.1
        ("2002:a00:1::1", True),  # 6to4 of 10.0.0.1
        ("fd00::1", True),  # unique local
        ("ff02::1", True),
        ("224.0.0.1", True),
        ("0.0.0.0", True),
    ],
)
def test_outbound_forbidden_addresses(address, refused):
    import ipaddress

    from gateway_engine.outbound.ssrf import forbidden

    assert (forbidden(ipaddress.ip_address(address)) is not None) is refused


def test_outbound_oversized_events_are_not_emitted_and_old_rows_are_pruned(tmp_path):
    import sqlalchemy as sa

    from gateway_engine.foundation.plugin import GatewayInfo
    from gateway_engine.outbound.catalog import compile_catalog
    from gateway_engine.outbound.service import Outbound
    from gateway_engine.outbound.tables import messages
    from gateway_engine.outbound.upkeep import prune

    async def scenario() -> tuple[str | None, str | None, list[str]]:
        gateway = GatewayInfo(base_path="", settings={}, config_dir=str(tmp_path))
        service = Outbound(compile_catalog([], []), DeliverySettings(max_payload=1024), gateway)
        try:
            big = await service.emit("acme", "webhook.test", {"x": "a" * 5000})
            small = await service.write("acme", "webhook.test", {"x": "a"}, key="source:1")  # keyed: fanned out later
            delivered = await service.emit("acme", "webhook.test", {"x": "b"})  # fanned out as it is written
            engine = (await service.store()).engine
            async with engine.connect() as conn:
                fanned = dict((await conn.execute(sa.select(messages.c.id, messages.c.fanned))).all())
            assert fanned == {small: False, delivered: True}
            await prune(engine, older_than=0)  # nothing is that old
            async with engine.connect() as conn:
                assert len((await conn.execute(messages.select())).all()) == 2
            await prune(engine, older_than=10**12)  # everything is
            async with engine.connect() as conn:
                left = [r.id for r in await conn.execute(messages.select())]
            return big, small, left
        finally:
            await service.stop()

    too_large = metrics.EMITTED.labels("too_large")._value.get()
    big, small, left = asyncio.run(scenario())
    assert big is None and small is not None
    assert metrics.EMITTED.labels("too_large")._value.get() == too_large + 1
    assert left == [small]  # not fanned out yet: pruning never drops a message the dispatcher has not seen


def test_outbound_api_bad_requests_get_envelope_errors(tmp_path, upstream):
    with serve(create_app(str(_config(tmp_path, upstream)), KEYS)) as base, api(base, KEYS["ACME_KEY"]) as client:
        ep = client.post("/webhooks/endpoints", json={"url": "http://127.0.0.1:9/", "events": ["order.*"]}).json()
        cases = [
            (client.post("/webhooks/endpoints", json=[1, 2]), 400, "INVALID_BODY"),
            (client.patch(f"/webhooks/endpoints/{ep['id']}", json={"secret": "x"}), 422, "VALIDATION_ERROR"),
            (client.patch(f"/webhooks/endpoints/{ep['id']}", json={"enabled": "yes"}), 422, "VALIDATION_ERROR"),
            (client.get("/webhooks/deliveries", params={"cursor": "abc"}), 422, "VALIDATION_ERROR"),
            (client.get("/webhooks/deliveries", params={"endpoint": "ep_nope"}), 404, "ENDPOINT_NOT_FOUND"),
            (client.post("/webhooks/messages/msg_nope/replay"), 404, "MESSAGE_NOT_FOUND"),
            (
                client.post(f"/webhooks/endpoints/{ep['id']}/rotate-secret", json={"secret": "whsec_x"}),
                422,
                "VALIDATION_ERROR",
            ),
            (client.post("/webhooks/endpoints", content=b"[" * 5000), 400, None),
        ]
        for answer, status, code in cases:
            assert answer.status_code == status, answer.text
            assert answer.json()["error"]["code"] == code or code is None
        anonymous = httpx.get(base + "/webhooks/endpoints")
        assert anonymous.status_code == 401  # the subscriptions API needs a tenant's credential
        disabled = client.patch(f"/webhooks/endpoints/{ep['id']}", json={"enabled": False})
        assert client.post(f"/webhooks/endpoints/{ep['id']}/test").json()["error"]["code"] == "ENDPOINT_DISABLED"
        assert disabled.json()["enabled"] is False


def test_outbound_store_down_at_start_leaves_the_gateway_serving(tmp_path, upstream):
    from tests.servers import free_port

    down = f"postgresql://gw@127.0.0.1:{free_port()}/nothing"  # nothing listens there
    root = write_outbound_config(tmp_path / "cfg", gateway_yaml(down), upstream)
    failed = metrics.EMITTED.labels("failed")._value.get()
    with serve(create_app(str(root), KEYS), timeout=60) as base, api(base, KEYS["ACME_KEY"]) as client:
        answer = client.put("/orders/3/status")
        assert answer.status_code == 200 and answer.json()["method"] == "PUT"
        wait_for(lambda: metrics.EMITTED.labels("failed")._value.get() > failed)
        listed = client.get("/webhooks/endpoints")
        assert listed.status_code == 503 and listed.json()["error"]["code"] == "STORE_UNAVAILABLE"


def test_outbound_refusals_never_tell_the_resolved_address(tmp_path, upstream):
    root = write_outbound_config(
        tmp_path / "cfg", gateway_yaml(None).replace("  allow_cidrs: [127.0.0.1/32]\n", ""), upstream
    )
    with serve(create_app(str(root), KEYS)) as base, api(base, KEYS["ACME_KEY"]) as client:
        refused = client.post("/webhooks/endpoints", json={"url": "http://localhost:9/", "events": ["order.*"]})
    assert refused.status_code == 422 and "loopback" in refused.text and "127.0.0.1" not in refused.text


def test_a_lying_upstream_body_fails_only_its_emit_never_the_answer(tmp_path):
    """What an upstream answers reaches the emit through ``response.body``. A body nested too deep to
    serialise (orjson stops at 255 levels), one that is not JSON although it says so, and a plain one:
    every client gets the upstream's answer as it is; only the plain one is written, the others are
    counted as failed or written with no data."""
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    deep = "{" + '"a":{' * 299 + '"a":1' + "}" * 300
    bodies = {"deep": deep.encode(), "broken": b'{"id": "1", "status": ', "plain": b'{"id": "1", "status": "ok"}'}

    async def answer(request):
        return Response(bodies[request.path_params["kind"]], media_type="application/json")

    with serve(Starlette(routes=[Route("/{kind}", answer, methods=["PUT"])])) as upstream:
        root = write_outbound_config(tmp_path / "cfg", gateway_yaml(None), upstream)
        (root / "routes.d" / "orders.yaml").write_text(f"""\
backend: orders
prefix: /orders
upstream: {{url: "{upstream}"}}
plugins:
  auth: {{}}
routes:
  - name: lying
    method: PUT
    path: "/{{kind}}"
    upstream_path: "/{{kind}}"
    emit: {{event: order.created, data: "{{{{ response.body }}}}"}}
""")
        failed, invalid = (metrics.EMITTED.labels(kind)._value.get() for kind in ("failed", "invalid"))
        with serve(create_app(str(root), KEYS)) as base, api(base, KEYS["ACME_KEY"]) as client:
            for kind, body in bodies.items():
                reply = client.put(f"/orders/{kind}")
                assert (reply.status_code, reply.content) == (200, body)
            wait_for(lambda: metrics.EMITTED.labels("failed")._value.get() > failed)
            engine_db = root / "data" / "gateway.db"
            wait_for(
                lambda: sqlite3.connect(engine_db).execute("SELECT count(*) FROM outbound_messages").fetchone()[0] >= 1
            )
            time.sleep(0.2)  # a batch after the plain one would have been written by now
            with sqlite3.connect(engine_db) as db:
                written = [orjson.loads(p) for (p,) in db.execute("SELECT payload FROM outbound_messages")]
    assert written == [{"id": "1", "status": "ok"}]  # the deep one failed; the broken one has no object to send
    assert metrics.EMITTED.labels("failed")._value.get() == failed + 1
    assert metrics.EMITTED.labels("invalid")._value.get() == invalid + 1  # None is not the schema's object
