"""Workflow steps as event sources, on a real Temporal dev server and a real Redis: a step's ``emit:`` reaches
the outbox the gateway shares and is delivered to a webhook receiver; its ``publish:`` reaches a WebSocket
client of a separate gateway process through the realtime backplane. A worker that cannot deliver fails the
step (retried by Temporal first), never drops the message."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import uuid
from pathlib import Path

import aiohttp
import httpx
import pytest

from gateway_engine import load_config
from gateway_engine.foundation import events
from gateway_engine.workflows.client import connect
from gateway_engine.workflows.worker import build_worker, connection_for
from tests.outbound_support import ADMIN_ROUTES, Receiver, wait_for
from tests.redis_server import redis_url  # noqa: F401  (the fixture)
from tests.servers import serve
from tests.test_kafka_shared_results import gateway_process
from tests.workflow_support import ADMIN, JWT_SECRET, ROOT, as_user, gateway_yaml, temporal_server

HEALTH = "/api/gateway/health"  # workflow_support's base_path
EVENTS = """events:
  - name: order.confirmed
    description: An order was confirmed by its workflow.
    schema: {type: object, required: [order], properties: {order: {type: string}}}
"""
CHANNELS = """server:
  websocket: /realtime/ws
  plugins: {auth: {accept: [jwt]}}
BACKPLANE
channels:
  - name: orders:{user}
    subscribe: {identity: {user: user_id}}
    sources:
      - publish: {topic: order-updates}
        params: {user: "{{ key }}"}
        event: order-update
"""
CONFIRM = """workflow: Confirm
task_queue: QUEUE
steps:
  - name: confirm
    retry: {attempts: 2, backoff: 100ms}
    emit: {event: order.confirmed, data: {order: "{{ input.data.order }}"}}
    publish: {topic: order-updates, key: "{{ input.userId }}", data: {order: "{{ input.data.order }}", status: confirmed}}
result: done
"""
OUTBOUND = """outbound_webhooks:
  schedule: [0, 0.2s]
  jitter: 0
  poll_interval: 50ms
  allow_cidrs: [127.0.0.1/32]
"""


@pytest.fixture(scope="module")
def temporal():
    with temporal_server() as address:
        yield address


def write_config(root: Path, queue: str, backplane: str) -> Path:
    for folder in ("routes.d", "events.d", "channels.d", "workflows.d"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    (root / "gateway.yaml").write_text(gateway_yaml() + OUTBOUND)
    (root / "routes.d" / "workflows.yaml").write_text((ROOT / "routes.d" / "workflows.yaml").read_text())
    (root / "routes.d" / "webhooks.yaml").write_text(ADMIN_ROUTES)
    (root / "events.d" / "orders.yaml").write_text(EVENTS)
    line = f"  backplane: {{url: {backplane}}}" if backplane else ""
    (root / "channels.d" / "orders.yaml").write_text(CHANNELS.replace("BACKPLANE", line))
    (root / "workflows.d" / "confirm.yaml").write_text(CONFIRM.replace("QUEUE", queue))
    return root


@contextlib.asynccontextmanager
async def worker(root: Path, env: dict[str, str], queue: str):
    """What ``gateway-engine worker`` runs: the config's features started, and the workflow worker."""
    config = load_config(root, env)
    client = await connect(connection_for(config))
    await config.startup()
    try:
        async with build_worker(client, config, queue):
            yield
    finally:
        await config.shutdown()


async def _status(base: str, workflow_id: str) -> dict:
    """The run's status once it is no longer running (bounded)."""
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        for _ in range(600):
            reply = await http.get(f"/api/gateway/workflows/{workflow_id}", headers=ADMIN)
            data = reply.json()["data"]
            if data["status"] != "running":
                return data
            await asyncio.sleep(0.1)
    raise AssertionError(f"workflow {workflow_id} still running")


async def _start(base: str, order: str) -> str:
    body = {"workflow": "Confirm", "input": {"action": "confirm", "userId": "ana", "data": {"order": order}}}
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        reply = await http.post("/api/gateway/workflows/start", json=body, headers=ADMIN)
    assert reply.status_code in (200, 201, 202), reply.text
    return reply.json()["data"]["workflowId"]


async def test_workflow_step_emit_reaches_a_webhook_and_publish_reaches_a_socket_of_another_process(
    tmp_path: Path, temporal: str, redis_url: str
):
    queue = f"tq-{uuid.uuid4().hex[:10]}"
    env = {"JWT_SECRET": JWT_SECRET, "TEMPORAL_ADDRESS": temporal}
    root = write_config(tmp_path / "c", queue, redis_url)
    receiver = Receiver()
    with serve(receiver, lifespan="off") as hook_url, gateway_process(root, env, tmp_path / "gw.log", HEALTH) as base:
        made = httpx.post(
            f"{base}/api/gateway/webhooks/endpoints",
            json={"url": hook_url + "/hook", "events": ["order.*"]},
            headers=as_user("ana"),
            timeout=30,
        )
        assert made.status_code == 201, made.text
        async with aiohttp.ClientSession() as session:
            url = base.replace("http://", "ws://") + "/api/gateway/realtime/ws"
            async with session.ws_connect(url, headers=as_user("ana")) as ws:
                await ws.send_json({"type": "subscribe", "channel": "orders:ana"})
                assert json.loads((await ws.receive(timeout=10)).data)["type"] == "subscribed"
                async with worker(root, env, queue):
                    workflow_id = await _start(base, "o-17")
                    frame = json.loads((await ws.receive(timeout=30)).data)
                    assert frame["type"] == "message" and frame["channel"] == "orders:ana"
                    assert frame["event"] == "order-update"
                    assert frame["data"] == {"order": "o-17", "status": "confirmed"}
                    assert (await _status(base, workflow_id))["status"] == "completed"
        hooks = wait_for(lambda: [r for r in receiver.received if b"order.confirmed" in r["body"]], timeout=30)
        delivered = json.loads(hooks[0]["body"])
        assert delivered["type"] == "order.confirmed" and delivered["data"] == {"order": "o-17"}
        assert hooks[0]["path"] == "/hook" and hooks[0]["headers"]["webhook-id"]


async def test_workflow_step_publish_without_a_backplane_fails_the_step_never_drops(tmp_path: Path, temporal: str):
    queue = f"tq-{uuid.uuid4().hex[:10]}"
    env = {"JWT_SECRET": JWT_SECRET, "TEMPORAL_ADDRESS": temporal}
    root = write_config(tmp_path / "c", queue, backplane="")
    with gateway_process(root, env, tmp_path / "gw.log", HEALTH) as base:
        async with worker(root, env, queue):
            workflow_id = await _start(base, "o-18")
            status = await _status(base, workflow_id)
    assert status["status"] == "failed", status
    error = status["result"]["error"]
    assert error["step"] == "confirm" and error["code"] == "EVENT_NOT_DELIVERED"
    assert "backplane" in error["message"]


async def test_deliver_raises_when_nothing_takes_the_topic_or_a_subscriber_fails():
    with pytest.raises(events.NotDelivered):
        await events.deliver(events.Message("nobody-listens", {}))
    taken: list[events.Message] = []

    async def take(message: events.Message) -> None:
        taken.append(message)

    async def fail(message: events.Message) -> None:
        raise RuntimeError("store down")

    stop = events.subscribe_durable("t", take)
    assert await events.deliver(events.Message("t", 1)) == 1 and taken[0].value == 1
    stop_failing = events.subscribe_durable("t", fail)
    with pytest.raises(events.NotDelivered, match="store down"):
        await events.deliver(events.Message("t", 2))
    stop()
    stop_failing()
    with pytest.raises(events.NotDelivered):
        await events.deliver(events.Message("t", 3))


async def test_a_retried_step_emit_carries_the_same_key_so_the_outbox_writes_it_once():
    """Temporal retries an activity with the same ids: the emit's key is the run's and the activity's."""
    from temporalio.testing import ActivityEnvironment

    from gateway_engine.workflows.activities import RouteActivities

    seen: list[events.Message] = []

    async def take(message: events.Message) -> None:
        seen.append(message)

    stop = events.subscribe_durable("ks.retried", take)
    try:
        request = {"emit": {"event": "ks.retried", "data": {"id": 1}}, "owner": "ann"}
        activities = RouteActivities(None)  # type: ignore[arg-type]  # deliver_event reads no config
        env = ActivityEnvironment()
        env.info = dataclasses.replace(env.info, workflow_id="wf-1", workflow_run_id="run-1", activity_id="7")
        await env.run(activities.deliver_event, request)
        env.info = dataclasses.replace(env.info, attempt=2)  # the same activity, retried
        await env.run(activities.deliver_event, request)
        env.info = dataclasses.replace(env.info, activity_id="8")  # another step
        await env.run(activities.deliver_event, request)
    finally:
        stop()
    assert [m.key for m in seen] == ["wf-1/run-1/7", "wf-1/run-1/7", "wf-1/run-1/8"]
    assert all(m.headers[events.TENANT_HEADER] == "user:ann" for m in seen)
