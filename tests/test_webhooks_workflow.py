"""The `workflow` action against a real Temporal dev server: a verified event starts a workflow
(once, even when a retried delivery reaches an instance that forgot the event) or signals the one
waiting for it; a signal nobody can receive is a 5xx so the sender retries."""

from __future__ import annotations

import contextlib
import json
import uuid
from pathlib import Path

import httpx
import pytest

from gateway_engine import ConfigErrors, create_app, load_config
from gateway_engine.workflows.client import connect
from gateway_engine.workflows.worker import build_worker, connection_for
from tests.servers import serve
from tests.test_webhooks import (
    STANDARD_SECRET,
    STRIPE_SECRET,
    standard_headers,
    stripe_event,
    stripe_signature,
    write_webhooks,
)
from tests.workflow_support import (
    ADMIN,
    JWT_SECRET,
    ROOT,
    FakeBackends,
    as_user,
    gateway_yaml,
    temporal_server,
    wait_for,
)

SHOP = """backend: shop
prefix: /shop
upstream: {{url: "{url}", timeout: 5s}}
routes:
  - {{name: step, method: POST, path: "/steps/{{kind}}", upstream_path: "/steps/{{kind}}"}}
"""
FULFIL = """workflow: Fulfil
task_queue: QUEUE
input: {type: object, required: [data], properties: {data: {type: object, required: [order]}}}
steps:
  - name: ship
    call: shop.step
    with: {params: {kind: ship}, body: {order: "{{ input.data.order }}"}}
result: "{{ steps.ship.result.id }}"
"""
CHECKOUT = """workflow: Checkout
task_queue: QUEUE
steps:
  - name: paid
    wait: {signal: payment_succeeded, timeout: 60s}
  - name: capture
    call: shop.step
    with: {params: {kind: capture}, body: {payment: "{{ steps.paid.result.payment }}", amount: "{{ steps.paid.result.amount }}"}}
result: "{{ steps.capture.result.id }}"
"""
MEDUSA = """source: medusa
verify: {scheme: standard-webhooks, secrets: ["${MEDUSA_WEBHOOK_SECRET}"]}
actions:
  - when: "{{ event.type == 'order.placed' }}"
    workflow:
      start: Fulfil
      input: {action: fulfil, userId: "{{ body.data.customer_id }}", data: {order: "{{ body.data.id }}"}}
"""
STRIPE = """source: stripe
verify: {scheme: stripe, secrets: ["${STRIPE_WEBHOOK_SECRET}"]}
actions:
  - when: "{{ event.type == 'payment_intent.succeeded' }}"
    workflow:
      signal: payment_succeeded
      id: "{{ body.data.object.metadata.workflow_id }}"
      args: [{payment: "{{ body.data.object.id }}", amount: "{{ body.data.object.amount }}"}]
  - when: "{{ event.type == 'payment_intent.canceled' }}"
    workflow: {signal: payment_canceled, id: "{{ body.data.object.metadata.workflow_id }}", unreceived: skip}
"""


def shop_answer(method: str, path: str, body):
    return 200, {"id": f"{path.rsplit('/', 1)[-1]}-1", "received": body}, {}


@pytest.fixture(scope="module")
def temporal():
    with temporal_server() as address:
        yield address


@pytest.fixture
def setup(tmp_path, temporal):
    """A config with the workflows backend, two sagas and two webhook sources; its task queue and fake shop."""
    fake = FakeBackends(shop_answer)
    queue = f"tq-{uuid.uuid4().hex[:10]}"
    env = {
        "JWT_SECRET": JWT_SECRET,
        "TEMPORAL_ADDRESS": temporal,
        "MEDUSA_WEBHOOK_SECRET": STANDARD_SECRET,
        "STRIPE_WEBHOOK_SECRET": STRIPE_SECRET,
    }
    with serve(fake, lifespan="off") as fake_url:

        def config_dir(name: str) -> Path:
            root = write_webhooks(
                tmp_path / name,
                {"medusa": MEDUSA, "stripe": STRIPE},
                gateway_yaml(),
                {"shop": SHOP.format(url=fake_url), "workflows": (ROOT / "routes.d" / "workflows.yaml").read_text()},
            )
            (root / "workflows.d").mkdir(exist_ok=True)
            for saga in (FULFIL, CHECKOUT):
                (root / "workflows.d" / f"{saga.split()[1].lower()}.yaml").write_text(saga.replace("QUEUE", queue))
            return root

        yield config_dir, env, queue, fake


@contextlib.asynccontextmanager
async def worker(root: Path, env: dict[str, str], queue: str):
    config = load_config(root, env)
    client = await connect(connection_for(config))
    try:
        async with build_worker(client, config, queue):
            yield
    finally:
        await config.shutdown()


def order_placed(msg_id: str, order: str) -> tuple[bytes, dict[str, str]]:
    body = json.dumps({"type": "order.placed", "data": {"id": order, "customer_id": "cus_ana"}}).encode()
    return body, {"content-type": "application/json", **standard_headers(STANDARD_SECRET, msg_id, body)}


async def test_webhooks_workflow_start_runs_once_even_when_a_retry_reaches_a_fresh_instance(setup):
    config_dir, env, queue, fake = setup
    first_root, second_root = config_dir("first"), config_dir("second")  # separate memory stores
    body, headers = order_placed("msg_order_1", "order_1")
    with serve(create_app(str(first_root), env)) as first, serve(create_app(str(second_root), env)) as second:
        async with (
            worker(first_root, env, queue),
            httpx.AsyncClient(base_url=first) as http,
            httpx.AsyncClient(base_url=second) as other,
        ):
            started = await http.post("/api/webhooks/medusa", content=body, headers=headers)
            assert started.status_code == 200, started.text
            assert started.json()["data"]["actions"] == [
                {"action": "workflow", "workflowId": "medusa-msg_order_1", "status": "started"}
            ]
            done = await wait_for(http, "medusa-msg_order_1", ADMIN)
            replay = await http.post("/api/webhooks/medusa", content=body, headers=headers)
            retried = await other.post("/api/webhooks/medusa", content=body, headers=headers)  # its memory never saw it
    assert done["status"] == "completed" and done["result"]["result"] == "ship-1" and done["workflow"] == "Fulfil"
    assert replay.json()["data"]["duplicate"] is True
    assert retried.status_code == 200 and retried.json()["data"]["actions"] == [
        {"action": "workflow", "workflowId": "medusa-msg_order_1", "status": "already-started"}
    ]
    assert fake.bodies("/steps/ship") == [{"order": "order_1"}]  # one run, one shipment


async def test_webhooks_workflow_signal_reaches_the_waiting_workflow(setup):
    config_dir, env, queue, fake = setup
    root = config_dir("signal")
    with serve(create_app(str(root), env)) as url:
        async with worker(root, env, queue), httpx.AsyncClient(base_url=url) as http:
            started = await http.post(
                "/api/gateway/workflows/start",
                headers=as_user("ana"),
                json={"workflow": "Checkout", "id": "checkout-42", "input": {"action": "pay"}},
            )
            assert started.status_code == 201, started.text
            body = stripe_event("evt_paid_42", metadata={"workflow_id": "checkout-42"})
            signed = {"content-type": "application/json", "stripe-signature": stripe_signature(STRIPE_SECRET, body)}
            paid = await http.post("/api/webhooks/stripe", content=body, headers=signed)
            assert paid.status_code == 200, paid.text
            done = await wait_for(http, "checkout-42", as_user("ana"))
            replay = await http.post("/api/webhooks/stripe", content=body, headers=signed)
            orphan = stripe_event("evt_orphan", metadata={"workflow_id": "checkout-nobody"})
            lost = await http.post(
                "/api/webhooks/stripe",
                content=orphan,
                headers={
                    "content-type": "application/json",
                    "stripe-signature": stripe_signature(STRIPE_SECRET, orphan),
                },
            )
            late = stripe_event(
                "evt_cancel_42", kind="payment_intent.canceled", metadata={"workflow_id": "checkout-42"}
            )
            skipped = await http.post(
                "/api/webhooks/stripe",
                content=late,  # the run is closed: configured to skip
                headers={"content-type": "application/json", "stripe-signature": stripe_signature(STRIPE_SECRET, late)},
            )
    assert paid.json()["data"]["actions"] == [
        {"action": "workflow", "workflowId": "checkout-42", "status": "signalled"},
        {"action": "workflow", "status": "skipped"},
    ]
    assert done["status"] == "completed" and done["result"]["result"] == "capture-1"
    assert fake.bodies("/steps/capture") == [{"payment": "pi_1", "amount": 2000}]
    assert replay.json()["data"]["duplicate"] is True
    assert lost.status_code == 502 and lost.json()["error"]["code"] == "WEBHOOK_ACTION_FAILED"
    assert "404 WORKFLOW_NOT_FOUND" in lost.json()["error"]["message"]
    assert skipped.status_code == 200 and skipped.json()["data"]["actions"][1] == {
        "action": "workflow",
        "workflowId": "checkout-42",
        "status": "unreceived",
    }


def test_webhooks_a_start_action_naming_no_workflow_is_a_config_error(setup):
    config_dir, env, _, _ = setup
    root = config_dir("typo")
    (root / "webhooks.d" / "medusa.yaml").write_text(MEDUSA.replace("start: Fulfil", "start: Fulfill"))
    with pytest.raises(ConfigErrors) as caught:
        load_config(root, env)
    assert (
        "webhooks.d/medusa.yaml:6:7: actions[0].workflow.start: no workflow named 'Fulfill' (did you mean 'Fulfil'?) (known: Checkout, Fulfil)"
        in str(caught.value)
    ), str(caught.value)
