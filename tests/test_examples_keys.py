"""The shipped key-store examples over real HTTP: examples/integration-api (a partner API with key,
log and monitoring endpoints) and examples/platforms (platform + client keys before shared services)."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import httpx
import orjson
import pytest

from gateway_engine import create_app
from gateway_engine.cli.main import run
from tests.keys_support import eventually
from tests.servers import serve

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
OPS = "integration-ops-key-for-tests-0123456789"


def _cli(root: Path, *argv: str) -> dict:
    out, err = io.StringIO(), io.StringIO()
    assert run([*argv, "--config", str(root)], out, err) == 0, err.getvalue()
    return orjson.loads(out.getvalue())


@pytest.fixture
def integration(tmp_path, upstream):
    root = tmp_path / "integration-api"
    shutil.copytree(EXAMPLES / "integration-api", root)
    partner = _cli(
        root, "platforms", "create", "--code", "acme-delivery", "--name", "Acme Delivery",
        "--scopes", "orders:read,orders:write,keys:manage,logs:read,metrics:read", "--rate-limit", "600",
    )  # fmt: skip
    with serve(create_app(str(root), {"INTEGRATION_OPS_KEY": OPS, "ORDERS_SERVICE_URL": upstream})) as base:
        yield base + "/v1", partner["key"]["key"]


def test_example_integration_api_partner_manages_its_keys(integration, recorder):
    base, partner_key = integration
    assert partner_key.startswith("rp_")
    as_partner = {"x-api-key": partner_key}
    created = httpx.post(
        f"{base}/api-keys",
        json={"name": "warehouse", "scopes": ["orders:read"], "rateLimit": 10, "expiresAt": "2099-01-01T00:00:00Z"},
        headers=as_partner,
    )
    assert created.status_code == 201, created.text
    new = created.json()["data"]
    key = new["key"]
    assert key.startswith("rp_") and new["start"] == key[:7] and new["rateLimit"] == 10
    listed = httpx.get(f"{base}/api-keys", headers=as_partner).json()["data"]
    assert listed["total"] == 2 and key not in str(listed)
    assert key not in httpx.get(f"{base}/api-keys/{new['id']}", headers=as_partner).text

    orders = httpx.get(f"{base}/orders", headers={"x-api-key": key})
    assert orders.status_code == 200 and recorder.last["headers"]["x-partner-id"] == "acme-delivery"
    assert recorder.last["path"] == "/orders"
    write = httpx.put(f"{base}/orders/7/status", json={"status": "delivered"}, headers={"x-api-key": key})
    assert write.status_code == 403 and write.json()["error"]["details"]["required_scopes"] == ["orders:write"]
    wrote = httpx.put(f"{base}/orders/7/status", json={"status": "delivered"}, headers=as_partner)
    assert wrote.status_code == 200 and recorder.last["path"] == "/orders/7/status"
    assert httpx.put(f"{base}/orders/7/status", json={"status": "lost"}, headers=as_partner).status_code == 400
    assert httpx.get(f"{base}/api-keys", headers={"x-api-key": key}).status_code == 403  # no keys:manage

    too_low = httpx.post(f"{base}/api-keys", json={"name": "x", "rateLimit": 5}, headers=as_partner)
    assert too_low.status_code == 400 and "between 10 and 1000" in too_low.json()["error"]["message"]
    escalate = httpx.post(f"{base}/api-keys", json={"name": "x", "scopes": ["*"]}, headers=as_partner)
    assert escalate.status_code == 403

    usage = eventually(
        lambda: (
            (u := httpx.get(f"{base}/api-keys/{new['id']}/usage", headers=as_partner).json()["data"])["total"] >= 3
            and u
        )
    )
    assert usage and usage["lastUsedAt"]
    windows = httpx.get(f"{base}/monitoring/rate-limits", headers=as_partner).json()["data"]
    assert {w["keyId"]: w["limit"] for w in windows["items"]}[new["id"]] == 10
    errors = eventually(lambda: httpx.get(f"{base}/logs/errors", headers=as_partner).json()["data"]["items"])
    assert errors and all(e["status"] >= 400 for e in errors)
    requests = httpx.get(f"{base}/logs/requests", params={"keyId": new["id"]}, headers=as_partner).json()["data"]
    assert requests["items"] and {r["keyId"] for r in requests["items"]} == {new["id"]}

    rotated = httpx.post(f"{base}/api-keys/{new['id']}/rotate", headers=as_partner).json()["data"]
    assert httpx.get(f"{base}/orders", headers={"x-api-key": rotated["key"]}).status_code == 200
    assert httpx.delete(f"{base}/api-keys/{rotated['id']}", headers=as_partner).json()["data"]["status"] == "revoked"
    assert httpx.get(f"{base}/orders", headers={"x-api-key": rotated["key"]}).status_code == 401
    assert httpx.get(f"{base}/orders", headers={"x-api-key": key}).status_code == 200  # in its grace period


def test_example_integration_api_operator_sees_every_partner(integration):
    base, partner_key = integration
    as_ops = {"x-api-key": OPS}
    other = httpx.post(f"{base}/api-keys", json={"name": "ops-own", "scopes": ["orders:read"]}, headers=as_ops)
    assert other.status_code == 201 and other.json()["data"]["owner"]["kind"] == "gateway"
    assert httpx.get(f"{base}/api-keys", headers=as_ops).json()["data"]["total"] == 2
    as_partner = httpx.get(f"{base}/api-keys", headers={"x-api-key": partner_key}).json()["data"]
    assert as_partner["total"] == 1  # the operator's key is not the partner's to see
    assert (
        httpx.get(f"{base}/api-keys/{other.json()['data']['id']}", headers={"x-api-key": partner_key}).status_code
        == 404
    )


def test_example_platforms_two_keys_in_front_of_a_shared_service(tmp_path, upstream, recorder):
    root = tmp_path / "platforms"
    shutil.copytree(EXAMPLES / "platforms", root)
    operator = _cli(root, "keys", "create", "--name", "operator", "--scopes", "*")["key"]
    with serve(create_app(str(root), {"BOOKINGS_SERVICE_URL": upstream})) as gw:
        base = gw + "/api"
        made = httpx.post(
            f"{base}/admin/platforms",
            json={
                "code": "bookmaster",
                "name": "BookMaster",
                "key": {"name": "bm", "scopes": ["tenants:admin", "bookings:read"]},
            },
            headers={"x-api-key": operator},
        )
        assert made.status_code == 201, made.text
        platform_key = made.json()["data"]["key"]["key"]
        client = httpx.post(
            f"{base}/admin/clients",
            json={"code": "spa-berlin", "name": "Spa Berlin", "externalId": "bm-1042", "scopes": ["bookings:read"]},
            headers={"x-api-key": platform_key},
        ).json()["data"]
        client_key = client["key"]["key"]
        both = {"x-api-key": platform_key, "client-x-api-key": client_key}
        listed = httpx.get(f"{base}/bookings", headers=both)
        assert listed.status_code == 200, listed.text
        sent = recorder.last["headers"]
        assert (sent["x-platform-id"], sent["x-client-id"], sent["x-client-external-id"], sent["x-scopes"]) == (
            "bookmaster",
            client["client"]["id"],
            "bm-1042",
            "bookings:read",
        )
        assert "client-x-api-key" not in sent and "x-api-key" not in sent
        alone = httpx.get(f"{base}/bookings", headers={"x-api-key": platform_key})
        assert alone.status_code == 401 and alone.json()["error"]["code"] == "CLIENT_KEY_REQUIRED"
        assert httpx.post(f"{base}/bookings", headers=both).status_code == 403
        assert (
            httpx.delete(
                f"{base}/admin/clients/{client['client']['id']}", headers={"x-api-key": platform_key}
            ).status_code
            == 200
        )
        gone = httpx.get(f"{base}/bookings", headers=both)
        assert gone.status_code == 401 and gone.json()["error"]["code"] == "CLIENT_KEY_DISABLED"
