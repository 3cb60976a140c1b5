"""The admin API (``transport: keys`` routes): tenant isolation, clear 400s for bad input, the logs, config checks."""

from __future__ import annotations

import pytest

from gateway_engine import ConfigErrors, load_config
from tests.keys_support import Admin, admin_routes, call, eventually, gateway_yaml, service_routes
from tests.servers import write_config


@pytest.fixture
def base(gateway, upstream, tmp_path):
    return gateway(
        gateway_yaml(None, tmp_path / "access.log"), {"admin": admin_routes(), "svc": service_routes(upstream)}
    )


def test_keys_admin_tenant_sees_only_its_own_clients_and_keys(base):
    ops = Admin(base)
    a, a_key = ops.platform("alpha", ["keys:admin", "orders:read"])
    b, b_key = ops.platform("beta", ["keys:admin"])
    b_client = ops.ok("POST", "/clients", {"platformId": b["id"], "code": "bc", "name": "B client"})["client"]
    alpha = Admin(base, a_key)
    mine = alpha.ok("POST", "/clients", {"code": "ac", "name": "A client", "externalId": "a-1"})  # under its platform
    assert mine["client"]["platformId"] == a["id"] and mine["key"]["key"].startswith("gk_")
    assert [c["id"] for c in alpha.ok("GET", "/clients")["items"]] == [mine["client"]["id"]]
    assert {k["owner"]["platformId"] for k in alpha.ok("GET", "/keys")["items"]} == {a["id"]}
    assert [p["code"] for p in alpha.ok("GET", "/platforms")["items"]] == ["alpha"]
    assert alpha.call("GET", f"/clients/{b_client['id']}").status_code == 404
    assert alpha.call("GET", f"/platforms/{b['id']}").status_code == 404
    assert alpha.call("GET", "/clients", platformId=b["id"]).json()["data"]["total"] == 1  # its own, whatever it asks
    b_keys = ops.ok("GET", "/keys", platformId=b["id"])["items"]
    for method, path in (("GET", ""), ("PUT", ""), ("DELETE", ""), ("POST", "/rotate"), ("GET", "/usage")):
        assert alpha.call(method, f"/keys/{b_keys[0]['id']}{path}", {} if method == "PUT" else None).status_code == 404
    assert alpha.call("POST", "/keys", {"name": "x", "platformId": b["id"]}).status_code == 404
    assert alpha.call("POST", "/keys", {"name": "x", "clientId": b_client["id"]}).status_code == 404
    assert alpha.call("POST", "/clients", {"platformId": b["id"], "code": "z", "name": "Z"}).status_code == 404
    beyond = alpha.call("POST", "/keys", {"name": "escalate", "scopes": ["*"]})
    assert beyond.status_code == 403 and beyond.json()["error"]["details"]["scopes"] == ["*"]
    assert alpha.call("POST", "/platforms", {"code": "gamma", "name": "G"}).status_code == 403
    assert alpha.call("DELETE", f"/platforms/{a['id']}").status_code == 403
    assert Admin(base, b_key).call("GET", "/keys").json()["data"]["total"] == 2  # beta's key and its client's
    plain, plain_key = ops.platform("plain", ["orders:read"])
    refused = Admin(base, plain_key).call("GET", "/keys")
    assert refused.status_code == 403 and refused.json()["error"]["details"]["required_scopes"] == ["keys:admin"]


def test_keys_admin_deactivating_a_platform_revokes_every_key(base):
    ops = Admin(base)
    platform, key = ops.platform("closing", ["orders:read"])
    client = ops.ok("POST", "/clients", {"platformId": platform["id"], "code": "c", "name": "C"})
    assert call(base, "/items", key, client["key"]["key"]).status_code == 200
    assert ops.ok("DELETE", f"/platforms/{platform['id']}")["active"] is False
    assert call(base, "/items", key).json()["error"]["code"] == "API_KEY_DISABLED"
    assert {k["status"] for k in ops.ok("GET", "/keys", platformId=platform["id"])["items"]} == {"revoked"}


@pytest.mark.parametrize(
    "method, path, body, params, status, code",
    [
        ("POST", "/keys", {"name": ""}, {}, 400, "INVALID_BODY"),
        ("POST", "/keys", {"name": "x", "scopes": "orders:read"}, {}, 400, "INVALID_BODY"),
        ("POST", "/keys", {"name": "x", "rateLimit": 0}, {}, 400, "INVALID_BODY"),
        ("POST", "/keys", {"name": "x", "expiresAt": "tomorrow"}, {}, 400, "INVALID_BODY"),
        ("POST", "/keys", {"name": "x", "expiresAt": "2001-01-01T00:00:00Z"}, {}, 400, "INVALID_BODY"),
        ("POST", "/keys", {"name": "x", "unknown": 1}, {}, 400, "INVALID_BODY"),
        ("POST", "/keys", [1, 2], {}, 400, "INVALID_BODY"),
        ("POST", "/platforms", {"code": "bad code!", "name": "x"}, {}, 400, "INVALID_BODY"),
        ("GET", "/keys", None, {"limit": "many"}, 400, "INVALID_PARAMETER"),
        ("GET", "/keys", None, {"limit": "100000"}, 400, "INVALID_PARAMETER"),
        ("GET", "/logs/requests", None, {"since": "yesterday"}, 400, "INVALID_PARAMETER"),
        ("GET", "/logs/requests", None, {"before": "x"}, 400, "INVALID_PARAMETER"),
        ("GET", "/logs/errors", None, {"status": "999"}, 400, "INVALID_PARAMETER"),
        ("GET", "/keys/key_missing", None, {}, 404, "NOT_FOUND"),
        ("GET", "/keys/key_missing/usage", None, {}, 404, "NOT_FOUND"),
        ("PATCH", "/keys", None, {}, 405, None),
        ("GET", "/nothing-here", None, {}, 404, "ROUTE_NOT_FOUND"),
    ],
)
def test_keys_admin_bad_input_gets_a_clear_error(base, method, path, body, params, status, code):
    answer = Admin(base).call(method, path, body, **params)
    assert answer.status_code == status, answer.text
    assert answer.json()["success"] is False
    if code:
        assert answer.json()["error"]["code"] == code


def test_keys_admin_invalid_json_and_conflicts(base):
    import httpx

    ops = Admin(base)
    raw = httpx.post(
        f"{base}/api/admin/keys",
        content=b"{not json",
        headers={"x-api-key": ops.key, "content-type": "application/json"},
    )
    assert raw.status_code == 400 and raw.json()["error"]["code"] in ("INVALID_JSON", "INVALID_BODY")
    ops.platform("dup", [])
    again = ops.call("POST", "/platforms", {"code": "dup", "name": "Dup"})
    assert again.status_code == 409 and again.json()["error"]["code"] == "CONFLICT"
    platform = ops.ok("GET", "/platforms/dup")
    ops.ok("POST", "/clients", {"platformId": platform["id"], "code": "c", "name": "C", "externalId": "e"})
    for clash in ({"code": "c", "name": "C2"}, {"code": "c3", "name": "C3", "externalId": "e"}):
        assert ops.call("POST", "/clients", {"platformId": platform["id"], **clash}).status_code == 409


def test_keys_admin_updates_reach_the_verifier_at_once(base):
    ops = Admin(base)
    created = ops.ok("POST", "/keys", {"name": "scoped", "scopes": ["orders:read"]})
    assert call(base, "/orders", created["key"]).status_code == 200
    updated = ops.ok("PUT", f"/keys/{created['id']}", {"scopes": ["orders:write"], "name": "renamed"})
    assert updated["scopes"] == ["orders:write"] and updated["name"] == "renamed"
    assert call(base, "/orders", created["key"]).status_code == 403  # the cached verification was dropped
    assert call(base, "/orders", created["key"], method="POST").status_code == 200


def test_keys_admin_request_and_error_logs_per_tenant(base):
    ops = Admin(base)
    a, a_key = ops.platform("loga", ["keys:admin", "logs:read"])
    _, b_key = ops.platform("logb", ["orders:read"])
    call(base, "/items", a_key)
    call(base, "/orders", a_key, method="POST")  # 403: a's error
    call(base, "/items", b_key)
    alpha = Admin(base, a_key)
    rows = eventually(lambda: (r := alpha.ok("GET", "/logs/requests")["items"]) and len(r) >= 3 and r)
    assert rows and {r["platformId"] for r in rows} == {a["id"]}
    errors = alpha.ok("GET", "/logs/errors")["items"]
    assert errors and all(r["status"] >= 400 for r in errors)
    assert any(r["errorCode"] == "FORBIDDEN" and r["route"] == "svc.write" for r in errors)
    first = ops.ok("GET", "/logs/requests", limit=2)
    assert len(first["items"]) == 2 and first["next"] is not None
    second = ops.ok("GET", "/logs/requests", limit=2, before=first["next"])
    assert second["items"][0]["id"] < first["items"][-1]["id"]
    assert all("?" not in r["path"] for r in rows)


def test_keys_admin_route_without_identity_forwarding_is_a_config_error(tmp_path):
    loose = admin_routes().replace("forward_identity: {enabled: true", "forward_identity: {enabled: false")
    root = write_config(tmp_path / "a", gateway_yaml(None, tmp_path / "log"), {"admin": loose})
    with pytest.raises(ConfigErrors, match="key admin route needs the auth plugin"):
        load_config(root, {})
    no_section = gateway_yaml(None, tmp_path / "log").split("\nkeys:")[0] + "\n"
    root = write_config(tmp_path / "b", no_section, {"admin": admin_routes()})
    with pytest.raises(ConfigErrors) as caught:
        load_config(root, {})
    assert "needs a `keys` section" in str(caught.value) and "names the `keys` verifier" in str(caught.value)
    bad = gateway_yaml(None, tmp_path / "log").replace("prefix: gk", "prefix: Not_A_Prefix")
    root = write_config(tmp_path / "c", bad, {})
    with pytest.raises(ConfigErrors, match="prefix"):
        load_config(root, {})


def test_keys_survive_a_config_reload(gateway, upstream, tmp_path):
    import httpx

    base = gateway(
        gateway_yaml(None, tmp_path / "access.log"),
        {"admin": admin_routes(), "svc": service_routes(upstream)},
        watch=True,
    )
    ops = Admin(base)
    created = ops.ok("POST", "/keys", {"name": "steady", "scopes": ["orders:read"]})
    assert call(base, "/orders", created["key"]).status_code == 200
    version = httpx.get(f"{base}/api/health").json()["version"]
    changed = service_routes(upstream) + "  - {name: extra, method: GET, path: /extra, upstream_path: /extra}\n"
    (gateway.root / "routes.d" / "svc.yaml").write_text(changed)
    assert eventually(lambda: httpx.get(f"{base}/api/health").json()["version"] != version)
    assert call(base, "/extra", created["key"]).status_code == 200  # the new config verifies it too
    ops.ok("DELETE", f"/keys/{created['id']}")
    assert call(base, "/orders", created["key"]).status_code == 401
    usage = eventually(lambda: (u := ops.ok("GET", f"/keys/{created['id']}/usage"))["total"] == 2 and u)
    assert usage, "counts from before and after the reload are all written"
