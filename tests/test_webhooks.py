"""Inbound webhooks over real HTTP: each scheme signed exactly as its sender documents it,
refusals that run nothing, exactly-once delivery, forward and log actions, located config errors."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import io
import json
import logging
import time
from pathlib import Path

import httpx
import pytest

from gateway_engine import create_app, load_config
from gateway_engine.cli.main import run
from gateway_engine.webhooks.feature import WEBHOOKS
from tests.servers import serve, write_config

GATEWAY = "version: 1\nbase_path: /api/gateway\nplugins: [request_id, envelope]\n"
STRIPE_SECRET = "whsec_test_stripe_0123456789"
STANDARD_SECRET = "whsec_" + base64.b64encode(b"standard-webhooks-test-key-32by").decode()


# -- signing, as each sender documents it ---------------------------------------------------
def stripe_signature(secret: str, body: bytes, t: int | None = None) -> str:
    """https://docs.stripe.com/webhooks#verify-manually: HMAC-SHA256(secret, "{t}.{payload}") hex in v1."""
    t = int(time.time()) if t is None else t
    return f"t={t},v1={hmac.new(secret.encode(), f'{t}.'.encode() + body, hashlib.sha256).hexdigest()}"


def standard_headers(secret: str, msg_id: str, body: bytes, t: int | None = None) -> dict[str, str]:
    """https://www.standardwebhooks.com: base64(HMAC-SHA256(b64decode(secret sans whsec_), "{id}.{ts}.{body}"))."""
    t = int(time.time()) if t is None else t
    key = base64.b64decode(secret.removeprefix("whsec_"))
    sig = base64.b64encode(hmac.new(key, f"{msg_id}.{t}.".encode() + body, hashlib.sha256).digest()).decode()
    return {"webhook-id": msg_id, "webhook-timestamp": str(t), "webhook-signature": f"v1,{sig}"}


def frappe_signature(secret: str, body: bytes) -> str:
    """Frappe's webhook.py: base64(HMAC-SHA256(webhook_secret, json.dumps(data))) in X-Frappe-Webhook-Signature."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def stripe_event(event_id: str = "evt_1", kind: str = "payment_intent.succeeded", **obj) -> bytes:
    payload = {
        "id": event_id,
        "object": "event",
        "type": kind,
        "data": {"object": {"id": "pi_1", "object": "payment_intent", "amount": 2000, **obj}},
    }
    return json.dumps(payload, separators=(",", ":")).encode()


@pytest.fixture
def hooks(tmp_path: Path):
    """``hooks({file: yaml}, env=..., gateway_yaml=..., backends=...)`` → base URL of a gateway serving them."""
    stack = contextlib.ExitStack()

    def start(
        webhooks: dict[str, str],
        *,
        env: dict[str, str] | None = None,
        gateway_yaml: str = GATEWAY,
        backends: dict[str, str] | None = None,
    ) -> str:
        root = write_webhooks(tmp_path / f"config{len(stack._exit_callbacks)}", webhooks, gateway_yaml, backends)
        return stack.enter_context(serve(create_app(str(root), env or {})))

    with stack:
        yield start


def write_webhooks(
    root: Path, webhooks: dict[str, str], gateway_yaml: str = GATEWAY, backends: dict[str, str] | None = None
) -> Path:
    write_config(root, gateway_yaml, backends or {})
    (root / "webhooks.d").mkdir(exist_ok=True)
    for name, text in webhooks.items():
        (root / "webhooks.d" / f"{name}.yaml").write_text(text)
    return root


def stripe_source(target: str, *, secrets: str = '["${STRIPE_WEBHOOK_SECRET}"]', extra: str = "") -> str:
    return f"""
source: stripe
aliases: [/payments/webhooks]
max_body: 4096
verify: {{scheme: stripe, secrets: {secrets}}}
actions:
  - when: "{{{{ event.type == 'payment_intent.succeeded' }}}}"
    forward:
      url: "{target}/orders/paid"
      auth: {{style: bearer, token: "${{ORDERS_TOKEN}}"}}
      body: {{payment: "{{{{ body.data.object.id }}}}", amount: "{{{{ body.data.object.amount }}}}", event: "{{{{ event.id }}}}"}}
{extra}"""


ENV = {"STRIPE_WEBHOOK_SECRET": STRIPE_SECRET, "ORDERS_TOKEN": "orders-token"}


def post(url: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(url, content=body, headers={"content-type": "application/json", **headers})


# -- stripe ---------------------------------------------------------------------------------
def test_webhooks_stripe_valid_signature_runs_the_forward(hooks, upstream, recorder):
    base = hooks({"stripe": stripe_source(upstream)}, env=ENV)
    body = stripe_event()
    res = post(f"{base}/api/webhooks/stripe", body, {"stripe-signature": stripe_signature(STRIPE_SECRET, body)})
    assert res.status_code == 200, res.text
    assert res.json()["data"] == {
        "received": True,
        "duplicate": False,
        "event": {"id": "evt_1", "type": "payment_intent.succeeded"},
        "actions": [{"action": "forward", "status": "delivered"}],
    }
    assert res.json()["meta"]["source"] == "stripe"
    sent = recorder.last
    assert sent["path"] == "/orders/paid" and json.loads(sent["body"]) == {
        "payment": "pi_1",
        "amount": 2000,
        "event": "evt_1",
    }
    assert sent["headers"]["authorization"] == "Bearer orders-token"
    assert sent["headers"]["idempotency-key"] == "stripe:evt_1" and sent["headers"]["x-webhook-event-id"] == "evt_1"
    assert "stripe-signature" not in sent["headers"]


@pytest.mark.parametrize(
    "case",
    ["tampered body", "wrong secret", "stale timestamp", "future timestamp", "missing header", "no v1", "garbage"],
)
def test_webhooks_stripe_refusals_are_401_and_run_nothing(hooks, upstream, recorder, case):
    base = hooks({"stripe": stripe_source(upstream)}, env=ENV)
    body = stripe_event()
    headers = {"stripe-signature": stripe_signature(STRIPE_SECRET, body)}
    if case == "tampered body":
        body = body.replace(b"2000", b"9000")
    elif case == "wrong secret":
        headers["stripe-signature"] = stripe_signature("whsec_someone_else", body)
    elif case in ("stale timestamp", "future timestamp"):
        # 330 s: past the 300 s tolerance however far int(time.time()) truncated and however long the request took
        headers["stripe-signature"] = stripe_signature(
            STRIPE_SECRET, body, int(time.time()) + (-330 if "stale" in case else 330)
        )
    elif case == "missing header":
        headers = {}
    elif case == "no v1":
        headers["stripe-signature"] = headers["stripe-signature"].replace("v1=", "v0=")
    else:
        headers["stripe-signature"] = "t=abc,v1=zz"
    res = post(f"{base}/api/webhooks/stripe", body, headers)
    assert res.status_code == 401
    assert res.json()["error"]["code"] == "INVALID_WEBHOOK_SIGNATURE"
    assert STRIPE_SECRET not in res.text
    assert recorder.requests == []


def test_webhooks_stripe_accepts_any_of_several_v1_signatures(hooks, upstream, recorder):
    base = hooks({"stripe": stripe_source(upstream)}, env=ENV)
    body = stripe_event()
    good = stripe_signature(STRIPE_SECRET, body)
    t, v1 = good.split(",")
    bogus = "v1=" + "0" * 64
    res = post(f"{base}/api/webhooks/stripe", body, {"stripe-signature": f"{t},{bogus},{v1},v0=abc"})
    assert res.status_code == 200 and len(recorder.requests) == 1


def test_webhooks_replayed_event_runs_no_second_action(hooks, upstream, recorder, caplog):
    caplog.set_level(logging.INFO, logger="gateway_engine.webhooks")
    base = hooks({"stripe": stripe_source(upstream)}, env=ENV)
    body = stripe_event("evt_replay")
    signature = stripe_signature(STRIPE_SECRET, body)
    first = post(f"{base}/api/webhooks/stripe", body, {"stripe-signature": signature})
    replay = post(f"{base}/api/webhooks/stripe", body, {"stripe-signature": signature})
    resent = post(
        f"{base}/api/webhooks/stripe",
        body,
        {"stripe-signature": stripe_signature(STRIPE_SECRET, body, int(time.time()) - 5)},
    )
    assert first.json()["data"]["duplicate"] is False
    for res in (replay, resent):  # a captured replay, and Stripe's own retry of the event (new t, same id)
        assert res.status_code == 200 and res.json()["data"] == {
            "received": True,
            "duplicate": True,
            "event": {"id": "evt_replay", "type": "payment_intent.succeeded"},
        }
    assert len(recorder.requests) == 1
    outcomes = [
        json.loads(r.getMessage())["outcome"] for r in caplog.records if r.getMessage().startswith('{"webhook"')
    ]
    assert outcomes == ["accepted", "duplicate", "duplicate"]


def test_webhooks_rotation_accepts_both_secrets(hooks, upstream, recorder):
    source = stripe_source(upstream, secrets='["${STRIPE_WEBHOOK_SECRET}", "${STRIPE_WEBHOOK_SECRET_OLD}"]')
    base = hooks({"stripe": source}, env={**ENV, "STRIPE_WEBHOOK_SECRET_OLD": "whsec_old_one"})
    statuses = []
    for i, secret in enumerate([STRIPE_SECRET, "whsec_old_one", "whsec_never_configured"]):
        body = stripe_event(f"evt_rot_{i}")
        statuses.append(
            post(f"{base}/api/webhooks/stripe", body, {"stripe-signature": stripe_signature(secret, body)}).status_code
        )
    assert statuses == [200, 200, 401]
    assert [json.loads(r["body"])["event"] for r in recorder.requests] == ["evt_rot_0", "evt_rot_1"]


def test_webhooks_oversized_body_is_413_before_verification(hooks, upstream, recorder):
    base = hooks({"stripe": stripe_source(upstream)}, env=ENV)
    body = stripe_event(padding="x" * 5000)
    declared = post(f"{base}/api/webhooks/stripe", body, {"stripe-signature": stripe_signature(STRIPE_SECRET, body)})
    streamed = httpx.post(
        f"{base}/api/webhooks/stripe",
        content=iter([body[:3000], body[3000:]]),
        headers={"stripe-signature": stripe_signature(STRIPE_SECRET, body)},
    )  # chunked: no length
    for res in (declared, streamed):
        assert res.status_code == 413 and res.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert recorder.requests == []


def test_webhooks_payments_alias_and_method(hooks, upstream, recorder):
    base = hooks({"stripe": stripe_source(upstream)}, env=ENV)
    body = stripe_event("evt_alias")
    res = post(
        f"{base}/api/gateway/payments/webhooks", body, {"stripe-signature": stripe_signature(STRIPE_SECRET, body)}
    )
    assert res.status_code == 200 and res.json()["data"]["event"]["id"] == "evt_alias"
    wrong = httpx.get(f"{base}/api/webhooks/stripe")
    assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"
    assert httpx.post(f"{base}/api/webhooks/nobody", content=b"{}").status_code == 404


def test_webhooks_when_false_skips_the_action(hooks, upstream, recorder):
    base = hooks({"stripe": stripe_source(upstream)}, env=ENV)
    body = stripe_event("evt_other", kind="customer.created")
    res = post(f"{base}/api/webhooks/stripe", body, {"stripe-signature": stripe_signature(STRIPE_SECRET, body)})
    assert res.status_code == 200 and res.json()["data"]["actions"] == [{"action": "forward", "status": "skipped"}]
    assert recorder.requests == []


def test_webhooks_unset_secret_is_503_naming_the_variable(hooks, upstream, recorder):
    base = hooks({"stripe": stripe_source(upstream)}, env={"ORDERS_TOKEN": "t"})
    body = stripe_event()
    res = post(f"{base}/api/webhooks/stripe", body, {"stripe-signature": stripe_signature(STRIPE_SECRET, body)})
    assert res.status_code == 503 and res.json()["error"]["code"] == "WEBHOOK_NOT_CONFIGURED"
    assert "STRIPE_WEBHOOK_SECRET" in res.json()["error"]["message"]
    assert recorder.requests == []


def test_webhooks_verified_invalid_json_is_400(hooks, upstream, recorder):
    base = hooks({"stripe": stripe_source(upstream)}, env=ENV)
    body = b'{"id": "evt_1", '
    res = post(f"{base}/api/webhooks/stripe", body, {"stripe-signature": stripe_signature(STRIPE_SECRET, body)})
    assert res.status_code == 400 and res.json()["error"]["code"] == "INVALID_JSON"
    assert recorder.requests == []


# -- failures and retries -------------------------------------------------------------------
def test_webhooks_failed_forward_is_5xx_and_the_retry_runs_only_what_did_not_run(hooks, upstream, recorder, caplog):
    caplog.set_level(logging.INFO, logger="gateway_engine.webhooks")
    extra = f"""  - log: {{message: payment seen, fields: {{payment: "{{{{ body.data.object.id }}}}"}}}}
  - forward: {{url: "{upstream}/flaky?key=wh&fail=1&status=503"}}
"""
    base = hooks({"stripe": stripe_source(upstream, extra=extra)}, env=ENV)
    body = stripe_event("evt_retry")
    first = post(f"{base}/api/webhooks/stripe", body, {"stripe-signature": stripe_signature(STRIPE_SECRET, body)})
    assert first.status_code == 502
    assert first.json()["error"]["code"] == "WEBHOOK_ACTION_FAILED" and first.json()["error"]["details"] == {
        "action": 2,
        "kind": "forward",
    }
    retry = post(f"{base}/api/webhooks/stripe", body, {"stripe-signature": stripe_signature(STRIPE_SECRET, body)})
    assert retry.status_code == 200
    assert [a["status"] for a in retry.json()["data"]["actions"]] == ["already-done", "already-done", "delivered"]
    assert [r["path"] for r in recorder.requests] == ["/orders/paid", "/flaky", "/flaky"]
    logged = [json.loads(r.getMessage()) for r in caplog.records if r.getMessage().startswith('{"message"')]
    assert logged == [
        {
            "message": "payment seen",
            "source": "stripe",
            "event_id": "evt_retry",
            "event_type": "payment_intent.succeeded",
            "payment": "pi_1",
        }
    ]
    assert STRIPE_SECRET not in caplog.text and "orders-token" not in caplog.text


def test_webhooks_unreachable_forward_target_is_502(hooks, recorder):
    source = stripe_source("http://127.0.0.1:9")  # the discard port: nothing listens
    base = hooks({"stripe": source}, env=ENV)
    body = stripe_event()
    res = post(f"{base}/api/webhooks/stripe", body, {"stripe-signature": stripe_signature(STRIPE_SECRET, body)})
    assert res.status_code == 502 and "UPSTREAM_UNAVAILABLE" in res.json()["error"]["message"]
    assert "orders-token" not in res.text


# -- the other schemes ----------------------------------------------------------------------
def standard_source(target: str) -> str:
    return f"""
source: medusa
verify: {{scheme: standard-webhooks, secrets: ["${{MEDUSA_WEBHOOK_SECRET}}"], tolerance: 60}}
actions:
  - forward: {{url: "{target}/medusa", body: {{order: "{{{{ body.data.id }}}}", type: "{{{{ event.type }}}}"}}}}
"""


@pytest.mark.parametrize(
    "case, status",
    [
        ("valid", 200),
        ("wrong secret", 401),
        ("stale", 401),
        ("tampered", 401),
        ("missing id", 401),
        ("other version only", 401),
    ],
)
def test_webhooks_standard_webhooks_scheme(hooks, upstream, recorder, case, status):
    base = hooks({"medusa": standard_source(upstream)}, env={"MEDUSA_WEBHOOK_SECRET": STANDARD_SECRET})
    body = json.dumps({"type": "order.placed", "data": {"id": "order_1"}}).encode()
    secret = "whsec_" + base64.b64encode(b"not-the-key").decode() if case == "wrong secret" else STANDARD_SECRET
    headers = standard_headers(secret, "msg_1", body, int(time.time()) - (61 if case == "stale" else 0))
    if case == "tampered":
        body = body.replace(b"order_1", b"order_2")
    elif case == "missing id":
        del headers["webhook-id"]
    elif case == "other version only":
        headers["webhook-signature"] = headers["webhook-signature"].replace("v1,", "v1a,")
    res = post(f"{base}/api/webhooks/medusa", body, headers)
    assert res.status_code == status, res.text
    if status == 200:
        assert res.json()["data"]["event"] == {"id": "msg_1", "type": "order.placed"}
        assert json.loads(recorder.last["body"]) == {"order": "order_1", "type": "order.placed"}
        again = post(f"{base}/api/webhooks/medusa", body, standard_headers(STANDARD_SECRET, "msg_1", body))
        assert again.json()["data"]["duplicate"] is True
    assert len(recorder.requests) == (1 if status == 200 else 0)


def test_webhooks_hmac_frappe_signature(hooks, upstream, recorder):
    source = f"""
source: erpnext
verify: {{scheme: hmac, header: X-Frappe-Webhook-Signature, encoding: base64, secrets: ["${{ERPNEXT_WEBHOOK_SECRET}}"]}}
event: {{id: "{{{{ body.doctype }}}}:{{{{ body.name }}}}:{{{{ body.modified }}}}", type: "{{{{ body.event }}}}"}}
actions:
  - forward: {{url: "{upstream}/erp"}}
"""
    base = hooks({"erpnext": source}, env={"ERPNEXT_WEBHOOK_SECRET": "frappe-secret"})
    data = {"doctype": "Sales Invoice", "name": "SINV-0001", "modified": "2026-01-02 10:00:00", "event": "on_submit"}
    body = json.dumps(data).encode()  # what Frappe sends: requests' json= is json.dumps(data)
    ok = post(
        f"{base}/api/webhooks/erpnext", body, {"x-frappe-webhook-signature": frappe_signature("frappe-secret", body)}
    )
    assert ok.status_code == 200
    assert ok.json()["data"]["event"] == {"id": "Sales Invoice:SINV-0001:2026-01-02 10:00:00", "type": "on_submit"}
    assert json.loads(recorder.last["body"]) == data  # the default forward body is the whole event
    tampered = body.replace(b"SINV-0001", b"SINV-0002")
    bad = post(
        f"{base}/api/webhooks/erpnext",
        tampered,
        {"x-frappe-webhook-signature": frappe_signature("frappe-secret", body)},
    )
    assert bad.status_code == 401 and len(recorder.requests) == 1


@pytest.mark.parametrize(
    "case, status", [("valid", 200), ("stale", 401), ("no timestamp", 401), ("no prefix", 401), ("sha1 instead", 401)]
)
def test_webhooks_hmac_prefix_timestamp_and_signed_content(hooks, upstream, recorder, case, status):
    source = f"""
source: temporal
verify:
  scheme: hmac
  header: X-Signature
  prefix: "sha256="
  timestamp_header: X-Timestamp
  signed_content: "{{timestamp}}.{{body}}"
  secrets: ["${{TEMPORAL_WEBHOOK_SECRET}}"]
actions:
  - forward: {{url: "{upstream}/temporal"}}
"""
    base = hooks({"temporal": source}, env={"TEMPORAL_WEBHOOK_SECRET": "tw-secret"})
    body = b'{"workflowId": "order-1", "status": "COMPLETED"}'
    t = str(int(time.time()) - (400 if case == "stale" else 0))
    algorithm = hashlib.sha1 if case == "sha1 instead" else hashlib.sha256
    headers = {
        "x-signature": "sha256=" + hmac.new(b"tw-secret", t.encode() + b"." + body, algorithm).hexdigest(),
        "x-timestamp": t,
    }
    if case == "no timestamp":
        del headers["x-timestamp"]
    elif case == "no prefix":
        headers["x-signature"] = headers["x-signature"].removeprefix("sha256=")
    res = post(f"{base}/api/webhooks/temporal", body, headers)
    assert res.status_code == status, res.text
    assert len(recorder.requests) == (1 if status == 200 else 0)


def test_webhooks_shared_secret_and_form_bodies(hooks, upstream, recorder):
    source = f"""
source: legacy
body_format: form
verify: {{scheme: shared_secret, header: Authorization, prefix: "Bearer ", secrets: ["${{LEGACY_TOKEN}}"]}}
event: {{id: "{{{{ body.ref }}}}"}}
actions:
  - forward: {{url: "{upstream}/legacy", body: {{ref: "{{{{ body.ref }}}}", amount: "{{{{ body.amount | int }}}}"}}}}
"""
    base = hooks({"legacy": source}, env={"LEGACY_TOKEN": "legacy-token"})
    form = {"content-type": "application/x-www-form-urlencoded"}
    ok = httpx.post(
        f"{base}/api/webhooks/legacy",
        content=b"ref=r1&amount=12",
        headers={**form, "authorization": "Bearer legacy-token"},
    )
    bad = httpx.post(
        f"{base}/api/webhooks/legacy",
        content=b"ref=r2&amount=1",
        headers={**form, "authorization": "Bearer legacy-tokem"},
    )
    assert ok.status_code == 200 and bad.status_code == 401
    assert [json.loads(r["body"]) for r in recorder.requests] == [{"ref": "r1", "amount": 12}]


def test_webhooks_without_an_id_use_the_body_hash(hooks, upstream, recorder):
    source = f"""
source: fleetbase
verify: {{scheme: hmac, header: Signature, secrets: ["${{FLEETBASE_WEBHOOK_SECRET}}"]}}
actions:
  - forward: {{url: "{upstream}/fleet"}}
"""
    base = hooks({"fleetbase": source}, env={"FLEETBASE_WEBHOOK_SECRET": "fb"})
    body = b'{"event": "order.dispatched", "data": {"id": "order_x"}}'
    signature = {"signature": hmac.new(b"fb", body, hashlib.sha256).hexdigest()}
    first, second = (post(f"{base}/api/webhooks/fleetbase", body, signature) for _ in range(2))
    assert first.json()["data"]["event"]["id"] == hashlib.sha256(body).hexdigest()
    assert second.json()["data"]["duplicate"] is True and len(recorder.requests) == 1


# -- config ---------------------------------------------------------------------------------
def test_webhooks_validate_reports_located_errors(tmp_path, upstream):
    backend = f"""
backend: shop
prefix: /payments
upstream: {{url: "{upstream}"}}
routes:
  - {{name: hook, method: POST, path: /webhooks}}
"""
    bad = """source: stripe
aliases: [/payments/webhooks]
verify:
  scheme: hmac
  secrets: ["${X_SECRET}"]
  header: X-Sig
  signed_content: "{timestamp}.{body}"
dedupe: {window: 10s}
event: {id: "{{ body.id | nosuchfilter }}"}
actions:
  - workflow: {start: Anything}
  - forward: {url: "ftp://example.com/x"}
  - log: {fields: {who: "{{ secrets }}"}}
  - log: {}
    forward: {url: "http://127.0.0.1:9"}
"""
    root = write_webhooks(tmp_path, {"stripe": bad}, backends={"shop": backend})
    out = io.StringIO()
    assert run(["validate", "--config", str(root)], stdout=out) == 1
    text = out.getvalue()
    assert "webhooks.d/stripe.yaml:14:5: actions[3]: " in text and "is valid under each of" in text, (
        text
    )  # schema first
    root = write_webhooks(
        tmp_path / "second",
        {"stripe": bad.replace('    forward: {url: "http://127.0.0.1:9"}\n', "")},
        backends={"shop": backend},
    )
    out = io.StringIO()
    assert run(["validate", "--config", str(root)], stdout=out) == 1
    text = out.getvalue()
    for expected in [
        "webhooks.d/stripe.yaml:2:11: aliases[0]: /api/gateway/payments/webhooks is already served by route shop.hook",
        "webhooks.d/stripe.yaml:7:3: verify.signed_content: signed_content uses {timestamp} but no timestamp_header is set",
        "webhooks.d/stripe.yaml:8:10: dedupe.window: the window (10s) must be at least the tolerance (300s)",
        "webhooks.d/stripe.yaml:9:9: event.id: template syntax error",
        "webhooks.d/stripe.yaml:11:5: actions[0].workflow: the workflow action calls route ",
        "webhooks.d/stripe.yaml:12:15: actions[1].forward.url: the forward url must start with http:// or https://",
        "webhooks.d/stripe.yaml:13:11: actions[2].log.fields: unknown name(s) secrets in template",
    ]:
        assert expected in text, text


def test_webhooks_event_being_handled_elsewhere_is_409(tmp_path, upstream, recorder):
    root = write_webhooks(tmp_path, {"stripe": stripe_source(upstream)})
    app = create_app(str(root), ENV)
    assert asyncio.run(app.config.state(WEBHOOKS).store.claim("stripe:evt_busy", "another-delivery", 60)) == "claimed"
    body = stripe_event("evt_busy")
    with serve(app) as base:
        res = post(f"{base}/api/webhooks/stripe", body, {"stripe-signature": stripe_signature(STRIPE_SECRET, body)})
    assert res.status_code == 409 and res.json()["error"]["code"] == "WEBHOOK_IN_PROGRESS"
    assert res.headers["retry-after"] == "5" and recorder.requests == []


def test_webhooks_memory_store_survives_a_reload(tmp_path, upstream):
    root = write_webhooks(tmp_path, {"stripe": stripe_source(upstream)})
    before, after = load_config(root, ENV), load_config(root, ENV)
    assert (
        before.state(WEBHOOKS).store is after.state(WEBHOOKS).store
    )  # a replay after a hot reload is still a duplicate
    assert (
        load_config(write_webhooks(tmp_path / "other", {"stripe": stripe_source(upstream)}), ENV).state(WEBHOOKS).store
        is not before.state(WEBHOOKS).store
    )


ROOT = Path(__file__).resolve().parent.parent


def _shipped_delivery(source: str, secret: str) -> tuple[bytes, dict[str, str]]:
    """A delivery to a shipped source, signed as that sender documents it (see the comments in webhooks.d/)."""
    now = str(int(time.time()))
    if source == "stripe":
        body = stripe_event("evt_shipped", kind="customer.created")
        return body, {"stripe-signature": stripe_signature(secret, body)}
    if source == "medusa":
        body = b'{"type": "order.placed", "data": {"id": "order_01"}}'
        return body, standard_headers(secret, "msg_shipped", body)
    if source == "fleetbase":  # spatie/laravel-webhook-server's signer: hex HMAC-SHA256 of the JSON body
        body = b'{"id": "event_65f", "api_version": "v1", "event": "order.completed", "data": {"id": "order_f", "status": "completed"}}'
        return body, {"signature": hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()}
    if source == "erpnext":
        body = json.dumps(
            {"doctype": "Sales Invoice", "name": "SINV-1", "modified": "2026-11-23", "event": "on_submit"}
        ).encode()
        return body, {"x-frappe-webhook-signature": frappe_signature(secret, body)}
    body = b'{"id": "n1", "type": "workflow.completed", "workflowId": "w1", "workflow": "RideBooking"}'
    return body, {
        "x-gateway-timestamp": now,
        "x-gateway-signature": "sha256="
        + hmac.new(secret.encode(), now.encode() + b"." + body, hashlib.sha256).hexdigest(),
    }


@pytest.mark.parametrize(
    "source, secret",
    [
        ("stripe", STRIPE_SECRET),
        ("medusa", STANDARD_SECRET),
        ("fleetbase", "fb-api-secret"),
        ("erpnext", "frappe-webhook-secret"),
        ("temporal", "temporal-notify-secret"),
    ],
)
def test_webhooks_shipped_sources_accept_their_senders_signatures(source, secret, caplog):
    caplog.set_level(logging.INFO, logger="gateway_engine.webhooks")
    body, headers = _shipped_delivery(source, secret)
    with serve(create_app(str(ROOT), {f"{source.upper()}_WEBHOOK_SECRET": secret})) as base:
        ok = post(f"{base}/api/webhooks/{source}", body, headers)
        forged = post(f"{base}/api/webhooks/{source}", body.replace(b"}", b', "x": 1}', 1), headers)
    assert ok.status_code == 200, ok.text
    assert ok.json()["data"]["actions"][-1] == {"action": "log", "status": "logged"}
    assert forged.status_code == 401
    assert secret not in caplog.text


def test_webhooks_failing_template_is_500_and_frees_the_event(hooks, upstream, recorder):
    extra = """  - log: {fields: {ratio: "{{ body.data.object.amount // 0 }}"}}
"""
    base = hooks({"stripe": stripe_source(upstream, extra=extra)}, env=ENV)
    body = stripe_event("evt_bad_template")
    answers = [
        post(f"{base}/api/webhooks/stripe", body, {"stripe-signature": stripe_signature(STRIPE_SECRET, body)})
        for _ in range(2)
    ]
    for res in answers:  # never remembered as handled: each retry tries again (and the forward ran once)
        assert res.status_code == 500 and res.json()["error"]["code"] == "MAPPING_ERROR"
        assert "ZeroDivisionError" in res.json()["error"]["message"]
    assert len(recorder.requests) == 1


def test_webhooks_endpoints_are_listed_by_routes_and_described_in_openapi(tmp_path, upstream):
    from openapi_spec_validator import validate

    root = write_webhooks(tmp_path, {"stripe": stripe_source(upstream)})
    out = io.StringIO()
    assert run(["routes", "--config", str(root), "--format", "json"], stdout=out) == 0
    rows = [r for r in json.loads(out.getvalue()) if r["backend"] == "webhooks"]
    assert [(r["methods"], r["path"], r["name"], r["upstream"]) for r in rows] == [
        (["POST"], "/api/webhooks/stripe", "stripe", "webhooks.d/stripe.yaml"),
        (["POST"], "/api/gateway/payments/webhooks", "stripe", "webhooks.d/stripe.yaml"),
    ]
    assert [r["configured"] for r in rows] == [False, False]  # STRIPE_WEBHOOK_SECRET is not set here
    doc = json.loads(_openapi_text(root))
    validate(doc)
    first, alias = doc["paths"]["/api/webhooks/stripe"]["post"], doc["paths"]["/api/gateway/payments/webhooks"]["post"]
    assert (first["operationId"], alias["operationId"]) == ("webhooks.stripe", "webhooks.stripe.1")
    assert first["security"] == [] and {"200", "401", "409", "413"} <= set(first["responses"])
    assert "4096 bytes" in first["requestBody"]["description"]


def _openapi_text(root: Path) -> str:
    out = io.StringIO()
    assert run(["openapi", "--config", str(root)], stdout=out) == 0
    return out.getvalue()
