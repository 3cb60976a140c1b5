"""Outbound delivery policies and sources: auto-disable, exhaustion, fair queues, inbound webhook emit, OpenAPI."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import sqlite3
import time

import httpx
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway_engine import create_app
from tests.outbound_support import KEYS, Receiver, api, gateway_yaml, wait_for, write_outbound_config
from tests.servers import serve

MEDUSA_SECRET = "whsec_" + base64.b64encode(b"outbound-emit-test-key-32-bytes!").decode()
MEDUSA = """\
source: medusa
verify: {scheme: standard-webhooks, secrets: ["${MEDUSA_SECRET}"]}
actions:
  - emit:
      event: order.created
      data: {order: "{{ body.data.id }}"}
      tenant: acme
"""


def _events(receiver: Receiver) -> list[dict]:
    return [orjson.loads(r["body"]) for r in receiver.received]


def test_outbound_continuous_failure_disables_and_exhaustion_is_emitted(tmp_path, upstream):
    failing, watcher = Receiver([(500, {})] * 10), Receiver()
    extra = "  disable_after: 600ms\n"  # reached by the third attempt (≥ 1.1 s after the first), not the second
    root = write_outbound_config(tmp_path / "cfg", gateway_yaml(None, "[0, 0.1s, 1s]", extra), upstream)
    with serve(failing) as failing_url, serve(watcher) as watcher_url:
        with serve(create_app(str(root), KEYS)) as base, api(base, KEYS["ACME_KEY"]) as client:
            ep = client.post("/webhooks/endpoints", json={"url": failing_url, "events": ["order.*"]}).json()
            client.post(
                "/webhooks/endpoints", json={"url": watcher_url, "events": ["endpoint.disabled", "message.attempt.*"]}
            )
            client.put("/orders/1/status")
            wait_for(
                lambda: {e["type"] for e in _events(watcher)} >= {"endpoint.disabled", "message.attempt.exhausted"}
            )
            state = client.get(f"/webhooks/endpoints/{ep['id']}").json()
            assert state["enabled"] is False and "failing continuously" in state["disabledReason"]
            exposed = httpx.get(base + "/metrics").text
            assert 'gateway_outbound_attempts_total{outcome="failed"}' in exposed
            assert "gateway_outbound_delivery_duration_seconds_bucket" in exposed
            assert "gateway_outbound_backlog" in exposed
            exhausted = next(e for e in _events(watcher) if e["type"] == "message.attempt.exhausted")
            assert exhausted["data"]["endpointId"] == ep["id"] and exhausted["data"]["attempts"] == 3
            assert len(failing.received) == 3  # the whole schedule, then nothing more
            enabled = client.patch(f"/webhooks/endpoints/{ep['id']}", json={"enabled": True}).json()
            assert enabled["enabled"] is True and enabled["disabledReason"] is None


def test_outbound_a_slow_endpoint_does_not_hold_the_others_up(tmp_path, upstream):
    slow, fast = Receiver(delay=3.0), Receiver()
    extra = "  per_endpoint: 1\n  concurrency: 4\n  timeout: 5s\n"
    root = write_outbound_config(tmp_path / "cfg", gateway_yaml(None, "[0]", extra), upstream)
    with serve(slow) as slow_url, serve(fast) as fast_url:
        with serve(create_app(str(root), KEYS)) as base:
            with api(base, KEYS["ACME_KEY"]) as acme, api(base, KEYS["GLOBEX_KEY"]) as globex:
                acme.post("/webhooks/endpoints", json={"url": slow_url, "events": ["order.*"]})
                globex.post("/webhooks/endpoints", json={"url": fast_url, "events": ["order.*"]})
                for i in range(5):
                    acme.put(f"/orders/{i}/status")
                for i in range(5):
                    globex.put(f"/orders/{i}/status")
                wait_for(lambda: len(fast.received) == 5)
                # the slow endpoint takes one attempt at a time, 3 s each: its five need 12 s or more
                assert len(slow.received) < 5


def test_outbound_inbound_webhook_emit_action_reaches_subscribers(tmp_path, upstream):
    receiver = Receiver()
    root = write_outbound_config(tmp_path / "cfg", gateway_yaml(None), upstream)
    (root / "webhooks.d").mkdir()
    (root / "webhooks.d" / "medusa.yaml").write_text(MEDUSA)
    with serve(receiver) as hook_url:
        with serve(create_app(str(root), {**KEYS, "MEDUSA_SECRET": MEDUSA_SECRET})) as base:
            with api(base, KEYS["ACME_KEY"]) as client:
                client.post("/webhooks/endpoints", json={"url": hook_url, "events": ["order.created"]})
                body = json.dumps({"type": "order.placed", "data": {"id": "order_9"}}).encode()
                stamp = str(int(time.time()))
                key = base64.b64decode(MEDUSA_SECRET.removeprefix("whsec_"))
                sig = base64.b64encode(
                    hmac.new(key, b"msg_in." + stamp.encode() + b"." + body, hashlib.sha256).digest()
                )
                headers = {
                    "webhook-id": "msg_in",
                    "webhook-timestamp": stamp,
                    "webhook-signature": "v1," + sig.decode(),
                }
                answer = httpx.post(base + "/api/webhooks/medusa", content=body, headers=headers)
                assert answer.status_code == 200, answer.text
                assert answer.json()["data"]["actions"] == [
                    {"action": "emit", "event": "order.created", "status": "emitted"}
                ]
                wait_for(lambda: receiver.received)
    event = _events(receiver)[0]
    assert event["type"] == "order.created" and event["data"] == {"order": "order_9"}


def _medusa_post(base: str, event_id: str, order: str) -> httpx.Response:
    body = json.dumps({"type": "order.placed", "data": {"id": order}}).encode()
    stamp = str(int(time.time()))
    key = base64.b64decode(MEDUSA_SECRET.removeprefix("whsec_"))
    signed = event_id.encode() + b"." + stamp.encode() + b"." + body
    signature = "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    headers = {"webhook-id": event_id, "webhook-timestamp": stamp, "webhook-signature": signature}
    return httpx.post(base + "/api/webhooks/medusa", content=body, headers=headers, timeout=30)


def test_outbound_inbound_emit_is_answered_2xx_only_once_in_the_outbox_and_retries_emit_once(tmp_path, upstream):
    """A webhook whose emit cannot reach the outbox (the store is locked) is not acknowledged; the sender's
    retry then emits, and a further retry of the same event emits nothing new: one delivery in all."""
    receiver = Receiver()
    database = tmp_path / "outbox.db"
    root = write_outbound_config(tmp_path / "cfg", gateway_yaml(f"sqlite:///{database}"), upstream)
    (root / "webhooks.d").mkdir()
    (root / "webhooks.d" / "medusa.yaml").write_text(MEDUSA)
    with serve(receiver) as hook_url:
        with serve(create_app(str(root), {**KEYS, "MEDUSA_SECRET": MEDUSA_SECRET})) as base:
            with api(base, KEYS["ACME_KEY"]) as client:
                client.post("/webhooks/endpoints", json={"url": hook_url, "events": ["order.created"]})
            locker = sqlite3.connect(database, isolation_level=None)
            locker.execute("BEGIN EXCLUSIVE")  # another process holds the write lock past the emit's timeout
            try:
                refused = _medusa_post(base, "msg_locked", "order_1")
            finally:
                locker.execute("ROLLBACK")
                locker.close()
            assert refused.status_code == 502, refused.text
            assert refused.json()["error"]["code"] == "WEBHOOK_ACTION_FAILED"
            accepted = _medusa_post(base, "msg_locked", "order_1")
            assert accepted.status_code == 200, accepted.text
            assert accepted.json()["data"]["actions"] == [
                {"action": "emit", "event": "order.created", "status": "emitted"}
            ]
            again = _medusa_post(base, "msg_locked", "order_1")
            assert again.status_code == 200 and again.json()["data"]["duplicate"] is True
            wait_for(lambda: receiver.received)
            time.sleep(0.5)  # a second delivery, if any, would have arrived by now
    assert [e["data"] for e in _events(receiver)] == [{"order": "order_1"}]
    with sqlite3.connect(database) as db:
        assert db.execute("SELECT count(*) FROM outbound_messages WHERE event_type = 'order.created'").fetchone() == (
            1,
        )


async def test_outbound_a_keyed_write_is_written_once(tmp_path):
    """The same key (an inbound event retried after its outbox write succeeded) is the same message, once."""
    from gateway_engine import load_config
    from gateway_engine.outbound.service import OUTBOUND

    root = write_outbound_config(tmp_path / "cfg", gateway_yaml(f"sqlite:///{tmp_path / 'o.db'}"), "http://127.0.0.1:9")
    config = load_config(root, KEYS)
    service = config.state(OUTBOUND)
    await config.startup(workers=False)
    try:
        first = await service.write("acme", "order.created", {"order": "a"}, key="medusa:evt_1")
        second = await service.write("acme", "order.created", {"order": "a"}, key="medusa:evt_1")
        other = await service.write("acme", "order.created", {"order": "a"}, key="medusa:evt_2")
    finally:
        await config.shutdown()
    assert first == second != other
    with sqlite3.connect(tmp_path / "o.db") as db:
        assert db.execute("SELECT count(*) FROM outbound_messages").fetchone() == (2,)


def test_outbound_event_types_are_in_the_openapi_webhooks_section(tmp_path, upstream):
    root = write_outbound_config(tmp_path / "cfg", gateway_yaml(None), upstream)
    with serve(create_app(str(root), KEYS)) as base:
        spec = httpx.get(base + "/openapi.json").json()
    assert {"order.status_changed", "order.created", "endpoint.disabled", "webhook.test"} <= set(spec["webhooks"])
    operation = spec["webhooks"]["order.status_changed"]["post"]
    data = operation["requestBody"]["content"]["application/json"]["schema"]["properties"]["data"]
    assert data["required"] == ["id", "status"] and operation["summary"] == "An order moved to another status."
    from openapi_spec_validator import validate

    validate(spec)


def _config_errors(root) -> str:
    from gateway_engine import ConfigErrors, load_config

    try:
        load_config(root, KEYS)
    except ConfigErrors as exc:
        return str(exc)
    raise AssertionError("the config loaded")


def test_outbound_bad_config_is_located(tmp_path, upstream):
    root = write_outbound_config(tmp_path / "cfg", gateway_yaml(None), upstream)
    (root / "routes.d" / "orders.yaml").write_text(
        (root / "routes.d" / "orders.yaml").read_text().replace("order.status_changed", "order.unknown")
    )
    (root / "routes.d" / "webhooks.yaml").write_text(
        (root / "routes.d" / "webhooks.yaml").read_text().replace("platform: X-Platform-Id, ", "")
    )
    text = _config_errors(root)
    assert "event type 'order.unknown' is not declared in events.d" in text
    assert "a webhooks-admin route needs the auth plugin" in text


def test_outbound_in_process_calls_emit_too(tmp_path, upstream):
    """A route invoked in-process (a webhook action's or a workflow step's call) emits as a client's call does."""
    import asyncio

    from gateway_engine import load_config
    from gateway_engine.outbound.admin import Admin
    from gateway_engine.outbound.service import OUTBOUND
    from gateway_engine.runtime.invoke import invoke

    receiver = Receiver()
    root = write_outbound_config(tmp_path / "cfg", gateway_yaml(None), upstream)

    async def scenario(hook_url: str) -> int:
        config = load_config(root, KEYS)
        await config.startup()
        try:
            await Admin(config.state(OUTBOUND)).register("acme", {"url": hook_url, "events": ["order.*"]})
            answer = await invoke(config, "orders.set-status", params={"id": "77"}, identity={"platform": "acme"})
            for _ in range(400):
                if receiver.received:
                    break
                await asyncio.sleep(0.05)
            return answer.status
        finally:
            await config.shutdown()

    with serve(receiver) as hook_url:
        assert asyncio.run(scenario(hook_url)) == 200
    event = _events(receiver)[0]
    assert event["type"] == "order.status_changed" and event["data"] == {"id": "77", "status": "PUT"}


def test_outbound_survives_a_config_reload(tmp_path, upstream):
    receiver = Receiver()
    root = write_outbound_config(tmp_path / "cfg", gateway_yaml(None), upstream)
    with serve(receiver) as hook_url:
        with serve(create_app(str(root), KEYS, watch=True)) as base, api(base, KEYS["ACME_KEY"]) as client:
            ep = client.post("/webhooks/endpoints", json={"url": hook_url, "events": ["order.*"]}).json()
            version = client.get("/health").json()["version"]
            events = root / "events.d" / "orders.yaml"
            events.write_text(events.read_text() + "  - {name: order.shipped, description: Shipped., schema: {}}\n")
            wait_for(lambda: client.get("/health").json()["version"] != version)
            assert client.get(f"/webhooks/endpoints/{ep['id']}").status_code == 200  # the new config's API
            assert (
                client.patch(f"/webhooks/endpoints/{ep['id']}", json={"events": ["order.shipped"]}).status_code == 200
            )
            assert client.patch(f"/webhooks/endpoints/{ep['id']}", json={"events": ["order.*"]}).status_code == 200
            assert client.put("/orders/4/status").status_code == 200
            wait_for(lambda: receiver.received)
    assert _events(receiver)[0]["data"] == {"id": "4", "status": "PUT"}


def _emit_route(data: str, name: str = "constant", path: str = "/constant", event: str = "order.status_changed") -> str:
    return f"""\
  - name: {name}
    method: POST
    path: {path}
    upstream_path: /anything
    emit: {{event: {event}, tenant: acme{data}}}
"""


def test_outbound_constant_data_is_checked_against_the_event_schema_at_load(tmp_path, upstream):
    """Data with no template is the same every time: a mismatch with the event's schema is a config error."""
    from gateway_engine import load_config

    root = write_outbound_config(tmp_path / "cfg", gateway_yaml(None), upstream)
    orders = root / "routes.d" / "orders.yaml"
    orders.write_text(orders.read_text() + _emit_route(", data: {id: 7}"))
    text = _config_errors(root)
    assert "emit[0].data" in text and "'status' is a required property" in text

    orders.write_text(orders.read_text().replace("data: {id: 7}", 'data: {id: "7", status: new}'))
    config = load_config(root, KEYS)
    [hook] = next(r for r in config.routes if r.name == "constant").after_answer
    assert hook.emissions[0].data_json is not None and not hook.needs_body  # a constant, checked at load


def test_outbound_the_answer_is_copied_only_for_templates_that_read_its_body(tmp_path, upstream):
    from gateway_engine import load_config

    root = write_outbound_config(tmp_path / "cfg", gateway_yaml(None), upstream)
    orders = root / "routes.d" / "orders.yaml"
    data = ', data: {id: "{{ request.params.id }}", status: "{{ response.status }}"}'
    routes = _emit_route(data, path='"/{id}/constant"') + _emit_route("", "whole", "/whole", "order.created")
    orders.write_text(orders.read_text() + routes)
    config = load_config(root, KEYS)
    hooks = {r.name: r.after_answer[0] for r in config.routes if r.after_answer}
    assert hooks["set-status"].needs_body  # reads response.body.method
    assert not hooks["constant"].needs_body and hooks["constant"].reads.names == {"request", "response"}
    assert hooks["whole"].needs_body  # no data: the event is the answer's body
    assert hooks["set-status"].emissions[0].data_json is None  # rendered and checked per answer


async def test_outbound_a_burst_of_emits_is_written_whole_in_creation_order(tmp_path):
    """More emits at once than one transaction takes (``writer.MAX_BATCH``): every one lands, once."""
    import asyncio

    from gateway_engine import load_config
    from gateway_engine.outbound.service import OUTBOUND
    from gateway_engine.outbound.writer import MAX_BATCH

    root = write_outbound_config(tmp_path / "cfg", gateway_yaml(f"sqlite:///{tmp_path / 'o.db'}"), "http://127.0.0.1:9")
    config = load_config(root, KEYS)
    service = config.state(OUTBOUND)
    count = 2 * MAX_BATCH + 7
    await config.startup(workers=False)
    try:
        ids = await asyncio.gather(*(service.emit("acme", "order.created", {"n": n}) for n in range(count)))
    finally:
        await config.shutdown()
    assert None not in ids and len(set(ids)) == count
    with sqlite3.connect(tmp_path / "o.db") as db:
        rows = db.execute("SELECT id, payload, enveloped FROM outbound_messages ORDER BY id").fetchall()
    assert [(orjson.loads(payload)["n"], enveloped) for _, payload, enveloped in rows] == [(n, 0) for n in range(count)]
    assert [row_id for row_id, _, _ in rows] == ids


def test_the_payload_timestamp_is_the_events_utc_time_to_the_millisecond():
    """The body's timestamp is formatted from a per-second cache: every second, and each millisecond in it,
    must still read as its own UTC time (also after the cache has moved on and come back)."""
    import datetime

    import orjson

    from gateway_engine.outbound.payload import body_of

    moments = [1_796_278_509.123, 1_796_278_509.999, 1_796_278_510.0, 1_700_000_000.5, 1_796_278_509.9999996]
    moments += [1_796_278_000 + n * 0.7 for n in range(20)]  # more seconds than the cache holds
    for at in moments:
        moment = datetime.datetime.fromtimestamp(at, datetime.UTC)  # the reference, rounded to the microsecond
        expected = moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
        body = orjson.loads(body_of("msg_1", "order.created", {"n": 1}, at))
        assert body == {"id": "msg_1", "type": "order.created", "timestamp": expected, "data": {"n": 1}}
    assert orjson.loads(body_of("msg_1", "t", None, 1_796_278_509.123))["timestamp"] == "2026-12-03T06:15:09.123Z"


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(
    events=st.lists(
        st.tuples(st.text(min_size=1, max_size=30), _JSON, st.floats(1_000_000_000, 4_000_000_000)),
        min_size=1,
        max_size=8,
    )
)
def test_a_batchs_rows_carry_the_body_orjson_writes_and_its_size_was_known_before(events):
    """A route's emit is serialised in pieces (its data's JSON in the request, its row with its batch, its
    body when it is sent): the body composed from each row must be what ``orjson.dumps`` of the whole body
    gives, and the size checked in the request must be that body's, to the byte (one more refuses
    nothing, one less refuses it)."""
    import datetime
    import re

    from gateway_engine.outbound.payload import TooLarge, compose, outgoing, rows

    items = [outgoing("acme", event_type, data, limit=None) for event_type, data, _ in events]
    for item, (_, _, at) in zip(items, events, strict=True):
        item.at = at
    made = rows(items)
    assert len({row[0] for row in made}) == len(made)
    for row, item, (event_type, data, at) in zip(made, items, events, strict=True):
        message_id, tenant, kind, payload, created_at, fanned, enveloped = row
        assert (message_id, tenant, kind, created_at, fanned) == (item.id, "acme", event_type, at, True)
        assert (payload.encode(), enveloped) == (orjson.dumps(data), False)  # the data only
        assert re.fullmatch(r"msg_[0-9a-f]{30}", message_id)
        assert int(message_id[4:18], 16) == round(at * 1_000_000)  # sorts by the emit's time
        moment = datetime.datetime.fromtimestamp(round(at * 1_000_000) / 1_000_000, datetime.UTC)
        stamp = moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
        body = orjson.dumps({"id": message_id, "type": event_type, "timestamp": stamp, "data": data})
        assert compose(message_id, kind, payload, created_at) == body
        assert outgoing("acme", event_type, data, limit=len(body)).data_json == orjson.dumps(data).decode()
        with pytest.raises(TooLarge, match=f"the event is {len(body)} bytes, more than {len(body) - 1}"):
            outgoing("acme", event_type, data, limit=len(body) - 1)


async def test_a_dispatcher_stops_even_where_a_round_loses_its_cancellation():
    """On Python 3.11 ``asyncio.wait_for`` returns normally when a cancellation lands as its inner wait
    completes; a dispatcher whose loop only ended by cancellation then ran for ever after SIGTERM (a
    ``gateway-engine worker`` seen in CI still dispatching 25 minutes later). A round that swallows
    the cancellation stands in for that race here: ``stop`` must still return."""
    import asyncio

    from gateway_engine.outbound.dispatcher import Dispatcher
    from gateway_engine.outbound.settings import DeliverySettings

    rounds: list[str] = []

    class LosesItsCancellation(Dispatcher):
        async def step(self, look: bool = True) -> bool:
            rounds.append("round")
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                if len(rounds) > 1:
                    raise  # only the first is lost: a failing run ends when the test's loop closes
            return True  # "more may be waiting": the loop goes straight into the next round

    async def transact(work):
        raise AssertionError("no round here touches the store")

    async def no_events(*_args, **_kwargs):
        return None

    dispatcher = LosesItsCancellation(None, DeliverySettings(), no_events, transact)
    dispatcher.start()
    await asyncio.sleep(0.05)
    await asyncio.wait_for(dispatcher.stop(), 5)
    assert rounds == ["round"]


async def test_a_constant_emit_is_queued_by_a_plain_call_and_published_as_its_data(tmp_path, upstream):
    """A constant ``tenant`` and ``data`` are rendered and serialised at load; the hook (a plain call, not a
    coroutine) only queues the event, and what the seam's other subscribers get is the data as an object."""
    import inspect

    from gateway_engine import load_config
    from gateway_engine.foundation import events
    from gateway_engine.foundation.context import RequestContext
    from gateway_engine.foundation.reply import Reply
    from gateway_engine.outbound.service import OUTBOUND

    root = write_outbound_config(tmp_path / "cfg", gateway_yaml(f"sqlite:///{tmp_path / 'o.db'}"), upstream)
    orders = root / "routes.d" / "orders.yaml"
    orders.write_text(orders.read_text() + _emit_route(', data: {id: "7", status: new, tags: [a, b]}'))
    config = load_config(root, KEYS)
    route = next(r for r in config.routes if r.name == "constant")
    [hook] = route.after_answer
    assert hook.emissions[0].tenant_text == "acme" and hook.emissions[0].data_json is not None
    service = config.state(OUTBOUND)
    got: list[events.Message] = []
    await config.startup(workers=False)
    stop = events.subscribe("order.status_changed", got.append)
    try:
        writer = service._writer_for(await service.store())
        ctx = RequestContext({"type": "http", "method": "POST", "path": "/x", "headers": []}, None, route, {}, "")
        assert hook(ctx, Reply(200, [], b"{}"), None) is None  # not a coroutine: nothing to await
        assert not inspect.iscoroutinefunction(type(hook).__call__)
        hook(ctx, Reply(500, [], b"{}"), None)  # not a 2xx: not emitted
        await writer.close()
    finally:
        stop()
        await config.shutdown()
    assert [(m.value, m.headers["tenant"]) for m in got] == [({"id": "7", "status": "new", "tags": ["a", "b"]}, "acme")]
    with sqlite3.connect(tmp_path / "o.db") as db:
        [(payload, enveloped)] = db.execute("SELECT payload, enveloped FROM outbound_messages").fetchall()
    assert (orjson.loads(payload), enveloped) == ({"id": "7", "status": "new", "tags": ["a", "b"]}, 0)


def test_a_constant_emit_larger_than_max_payload_is_refused_at_load(tmp_path, upstream):
    """A constant event's size never changes: one past ``max_payload`` is a config error (file:line), not a
    refusal logged on every answer; the same data under the limit loads, and its emit is not checked again."""
    from gateway_engine import load_config
    from gateway_engine.outbound.payload import event_size

    data = '{id: "7", status: "' + "n" * 1100 + '"}'
    size = event_size("order.status_changed", orjson.dumps({"id": "7", "status": "n" * 1100}))
    for limit, refused in ((size - 1, True), (size, False)):
        root = write_outbound_config(
            tmp_path / f"cfg{limit}", gateway_yaml(None, extra=f"  max_payload: {limit}\n"), upstream
        )
        orders = root / "routes.d" / "orders.yaml"
        orders.write_text(orders.read_text() + _emit_route(f", data: {data}"))
        if refused:
            text = _config_errors(root)
            assert "emit[0].data" in text and f"the event is {size} bytes, more than" in text and "orders.yaml" in text
        else:
            [hook] = next(r for r in load_config(root, KEYS).routes if r.name == "constant").after_answer
            assert hook.emissions[0].data_json == orjson.dumps({"id": "7", "status": "n" * 1100}).decode()
