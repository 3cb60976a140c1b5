"""The shipped `order-overview` route (routes.d/overview.yaml) on the shipped gateway.yaml and routes.d, its
three backends faked in their own wire formats: Medusa's publishable key, Fleetbase's bearer key, ERPNext's
`token key:secret` and its JSON-in-the-query filters."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl

import httpx
import pytest

from gateway_engine import create_app, load_config
from tests.aggregation_support import Backend
from tests.servers import serve

ROOT = Path(__file__).resolve().parent.parent
SERVICE_KEY = "svc-key-for-overview-tests"
ORDER = {
    "id": "order_01JCITY",
    "display_id": 1042,
    "status": "pending",
    "email": "ana@example.com",
    "currency_code": "eur",
    "total": 4200,
    "items": [{"title": "Olive oil", "quantity": 2}],
    "metadata": {"fleetbase_order_id": "order_d7Hq", "internal_note": "not for the page"},
    "customer_id": "cus_1",
}
TRACKER = {"status": "dispatched", "progress": 40, "eta": "2026-12-02T12:00:00Z", "driver": {"name": "Sam"}}
INVOICE = {"name": "ACC-SINV-2026-00001", "status": "Unpaid", "grand_total": 42.0, "outstanding_amount": 42.0}


@pytest.fixture(scope="module")
def fakes() -> Iterator[dict[str, tuple[Backend, str]]]:
    made = {name: Backend() for name in ("medusa", "fleetbase", "erpnext")}
    with serve(made["medusa"].app()) as m, serve(made["fleetbase"].app()) as f, serve(made["erpnext"].app()) as e:
        yield {"medusa": (made["medusa"], m), "fleetbase": (made["fleetbase"], f), "erpnext": (made["erpnext"], e)}


def _env(fakes, *, unset: tuple[str, ...] = ()) -> dict[str, str]:
    env = {
        "PAYLOAD_API_KEY": SERVICE_KEY,
        "MEDUSA_API_URL": fakes["medusa"][1],
        "MEDUSA_API_KEY": "pk_overview_test",
        "FLEETBASE_URL": fakes["fleetbase"][1],
        "FLEETBASE_API_KEY": "flb_test_overview",
        "ERPNEXT_URL": fakes["erpnext"][1],
        "ERPNEXT_API_KEY": "erp-key",
        "ERPNEXT_API_SECRET": "erp-secret",
    }
    return {k: v for k, v in env.items() if not k.startswith(unset)}


@pytest.fixture
def shipped(tmp_path, fakes) -> Path:
    for backend, _ in fakes.values():
        backend.reset()
    root = tmp_path / "deploy"
    root.mkdir()
    shutil.copy(ROOT / "gateway.yaml", root / "gateway.yaml")
    shutil.copytree(ROOT / "routes.d", root / "routes.d")
    medusa, fleetbase, erpnext = (fakes[n][0] for n in ("medusa", "fleetbase", "erpnext"))
    medusa.answer("/store/orders/order_01JCITY", {"order": ORDER})
    fleetbase.answer("/v1/orders/order_d7Hq/tracker", TRACKER)
    erpnext.answer("/api/resource/Sales Invoice", {"data": [INVOICE]})
    return root


def _get(root: Path, env: dict[str, str], order: str = "order_01JCITY") -> httpx.Response:
    with serve(create_app(str(root), env)) as url:
        return httpx.get(f"{url}/api/gateway/overview/orders/{order}", headers={"x-api-key": SERVICE_KEY})


def test_aggregation_shipped_order_overview(shipped, fakes):
    answer = _get(shipped, _env(fakes))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    data = body["data"]
    assert data["id"] == "order_01JCITY" and data["number"] == 1042 and "display_id" not in data
    assert "metadata" not in data and "customer_id" not in data  # only the keys the route allows
    assert data["tracking"] == TRACKER and data["invoice"] == INVOICE
    assert [(b["name"], b["backend"], b["status"]) for b in body["meta"]["backends"]] == [
        ("order", "medusa", 200),
        ("tracking", "fleetbase", 200),
        ("invoice", "erpnext", 200),
    ]
    medusa, fleetbase, erpnext = (fakes[n][0].requests for n in ("medusa", "fleetbase", "erpnext"))
    assert medusa[0]["headers"]["x-publishable-api-key"] == "pk_overview_test"
    assert fleetbase[0]["headers"]["authorization"] == "Bearer flb_test_overview"
    assert erpnext[0]["headers"]["authorization"] == "token erp-key:erp-secret"
    query = dict(parse_qsl(erpnext[0]["query"]))
    assert json.loads(query["filters"]) == [["po_no", "=", "order_01JCITY"]] and query["limit_page_length"] == "1"
    assert "grand_total" in json.loads(query["fields"])
    for request in (*medusa, *fleetbase, *erpnext):  # the client's key reaches no backend
        assert SERVICE_KEY not in json.dumps(request["headers"])
    # both lookups read the order's fields: they started once it had answered
    assert fleetbase[0]["started"] >= medusa[0]["finished"] and erpnext[0]["started"] >= medusa[0]["finished"]


def test_aggregation_shipped_order_without_delivery_or_invoice_yet(shipped, fakes):
    fakes["medusa"][0].answer("/store/orders/order_02", {"order": {**ORDER, "id": "order_02", "metadata": {}}})
    fakes["erpnext"][0].answer("/api/resource/Sales Invoice", {"data": []})
    answer = _get(shipped, _env(fakes), "order_02")
    assert answer.status_code == 200 and answer.headers["cache-control"] == "no-store"
    body = answer.json()
    assert body["data"]["tracking"] is None and body["data"]["invoice"] is None
    tracking, invoice = body["meta"]["backends"][1:]
    assert tracking["fallback"] and tracking["error"] == "INVALID_PARAMETER" and tracking["status"] == 400
    assert invoice["fallback"] and invoice["error"] == "UNEXPECTED_ANSWER" and invoice["status"] == 200
    assert fakes["fleetbase"][0].requests == []  # no delivery id: no call


def test_aggregation_shipped_order_not_found_is_a_502(shipped, fakes):
    answer = _get(shipped, _env(fakes), "order_missing")
    assert answer.status_code == 502
    assert answer.json()["error"]["details"] == [{"backend": "order", "status": 404, "code": "BACKEND_REJECTED"}]


def test_aggregation_shipped_with_unset_backends(shipped, fakes):
    answer = _get(shipped, _env(fakes, unset=("FLEETBASE_", "ERPNEXT_")))
    assert answer.status_code == 200
    body = answer.json()
    assert body["data"]["id"] == "order_01JCITY" and body["data"]["tracking"] is None
    assert [b.get("error") for b in body["meta"]["backends"]] == [
        None,
        "BACKEND_NOT_CONFIGURED",
        "BACKEND_NOT_CONFIGURED",
    ]
    answer = _get(shipped, _env(fakes, unset=("MEDUSA_",)))
    assert answer.status_code == 503 and answer.json()["error"]["code"] == "BACKEND_NOT_CONFIGURED"
    assert set(answer.json()["error"]["details"]["missing"]) == {"MEDUSA_API_URL", "MEDUSA_API_KEY"}


def test_aggregation_shipped_loads_with_no_env():
    route = next(r for r in load_config(ROOT, {}).routes if r.qualified_name == "overview.order-overview")
    assert not route.configured and set(route.missing_env) == {"MEDUSA_API_URL", "MEDUSA_API_KEY"}
    assert [name for name, _ in route.handler.calls()] == ["order", "tracking", "invoice"]
