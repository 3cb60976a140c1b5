"""The integration-api example's webhook parts on their own config dir: its subscriptions routes, its events,
and the `emit:` of `PUT /orders/{id}/status` (examples/integration-api/routes.d/orders.yaml)."""

from __future__ import annotations

import shutil
from pathlib import Path

import orjson
import yaml

from gateway_engine import create_app
from tests.outbound_support import Receiver, api, verify, wait_for
from tests.servers import serve

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "integration-api"
GATEWAY = """\
version: 1
plugins: [request_id, auth, envelope]
auth:
  api_keys:
    - {name: acme-delivery, key: "${PARTNER_KEY}", scopes: ["webhooks:manage", "orders:write"]}
    - {name: other-partner, key: "${OTHER_KEY}", scopes: ["orders:write"]}
outbound_webhooks: {schedule: [0, 0.2s], jitter: 0, poll_interval: 50ms, allow_cidrs: [127.0.0.1/32]}
"""
ENV = {"PARTNER_KEY": "partner-key-0123456789", "OTHER_KEY": "other-key-0123456789"}


def _example_routes() -> list[dict]:
    return yaml.safe_load((EXAMPLE / "routes.d" / "orders.yaml").read_text())["routes"]


def _orders(upstream: str) -> str:
    """The orders backend's status route as the example has it, with the example's emit block."""
    route = {
        "name": "update-status",
        "method": "PUT",
        "path": "/{id}/status",
        "upstream_path": "/orders/{id}/status",
        "auth": {"scopes": ["orders:write"]},
        "request": {
            "schema": {
                "type": "object",
                "required": ["status"],
                "properties": {"status": {"enum": ["picked_up", "in_transit", "delivered", "failed"]}},
            }
        },
        "emit": next(r for r in _example_routes() if r["name"] == "update-status")["emit"],
    }
    return yaml.safe_dump({"backend": "orders", "prefix": "/orders", "upstream": {"url": upstream}, "routes": [route]})


def _config(root: Path, upstream: str) -> Path:
    shutil.copytree(EXAMPLE / "events.d", root / "events.d")
    (root / "routes.d").mkdir(parents=True)
    shutil.copy(EXAMPLE / "routes.d" / "webhooks.yaml", root / "routes.d" / "webhooks.yaml")
    (root / "routes.d" / "orders.yaml").write_text(_orders(upstream))
    (root / "gateway.yaml").write_text(GATEWAY)
    return root


def test_integration_api_webhooks_example(tmp_path, upstream):
    receiver = Receiver()
    with serve(receiver) as hook_url:
        with serve(create_app(str(_config(tmp_path / "cfg", upstream)), ENV)) as base:
            with api(base, ENV["PARTNER_KEY"]) as partner, api(base, ENV["OTHER_KEY"]) as other:
                made = partner.post("/webhooks/endpoints", json={"url": hook_url, "events": ["order.*"]})
                assert made.status_code == 201, made.text
                endpoint = made.json()["data"]
                assert other.get("/webhooks/endpoints").status_code == 403  # no webhooks:manage scope
                listed = partner.get("/webhooks/endpoints").json()["data"]["items"]
                assert [e["id"] for e in listed] == [endpoint["id"]]
                assert partner.get(f"/webhooks/endpoints/{endpoint['id']}").json()["data"]["url"] == hook_url
                patched = partner.patch(f"/webhooks/endpoints/{endpoint['id']}", json={"description": "ops"})
                assert patched.json()["data"]["description"] == "ops"
                tested = partner.post(f"/webhooks/endpoints/{endpoint['id']}/test").json()["data"]
                assert tested["outcome"] == "succeeded"
                assert partner.put("/orders/42/status", json={"status": "delivered"}).status_code == 200
                assert partner.put("/orders/42/status", json={"status": "lost"}).status_code == 400  # no event
                wait_for(lambda: len(receiver.received) == 3)
                delivered = {"event": "order.delivered"}  # the attempt is logged just after the receiver answered
                log = wait_for(lambda: partner.get("/webhooks/deliveries", params=delivered).json()["data"]["items"])
                assert [i["outcome"] for i in log] == ["succeeded"]
                assert partner.delete(f"/webhooks/endpoints/{endpoint['id']}").status_code == 200
                health = partner.get("/health/backends").json()["systems"]
                assert health["webhooks"]["status"] == "up"
    events = {orjson.loads(r["body"])["type"]: orjson.loads(r["body"])["data"] for r in receiver.received}
    assert events["order.status_changed"] == {"id": "42", "status": "delivered", "note": None}
    assert events["order.delivered"] == {"id": "42"}
    assert all(verify(endpoint["secret"], r["headers"], r["body"]) for r in receiver.received)
