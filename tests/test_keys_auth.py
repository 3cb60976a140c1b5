"""Stored keys through the auth plugin, on SQLite and PostgreSQL: create, use, revoke, expire, rotate,
tenant keys with scope intersection, per-key limits, usage; nothing ever shows a key again."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from gateway_engine.foundation.metrics import REGISTRY
from tests.keys_support import Admin, admin_routes, call, eventually, gateway_yaml, service_routes


@pytest.fixture
def keys_gw(gateway, upstream, any_store, tmp_path):
    log_file = tmp_path / "access.log"
    base = gateway(gateway_yaml(any_store, log_file), {"admin": admin_routes(), "svc": service_routes(upstream)})
    base_url = base
    return base_url, log_file


def _clear_of_a_minute_boundary(margin: float = 20.0) -> None:
    """Wait for the next minute when fewer than ``margin`` seconds of this one are left: the service
    routes' ``rate_limit`` is 1000/minute in fixed windows, and a run that crossed one (CI at 02:54:59)
    read the new window's count."""
    left = 60.0 - time.time() % 60.0
    if left < margin:
        time.sleep(left + 0.2)


def _iso(seconds_from_now: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds_from_now)).isoformat()


def test_keys_create_use_revoke(keys_gw, recorder):
    base, _ = keys_gw
    admin = Admin(base)
    platform, key = admin.platform("bookmaster", ["orders:read"])
    assert key.startswith("gk_") and len(key) == 3 + 49
    used = call(base, "/items", key)
    assert used.status_code == 200, used.text
    assert recorder.last["headers"]["x-platform-id"] == "bookmaster"
    assert recorder.last["headers"]["x-tenant-id"] == platform["id"]
    assert "x-api-key" not in recorder.last["headers"]
    keys = admin.ok("GET", "/keys", platformId=platform["id"])["items"]
    assert len(keys) == 1 and keys[0]["start"] == key[:7] and "key" not in keys[0]
    revoked = admin.ok("DELETE", f"/keys/{keys[0]['id']}")
    assert revoked["status"] == "revoked"
    refused = call(base, "/items", key)
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "API_KEY_DISABLED"
    assert key not in refused.text


def test_keys_expired_key_answers_401(keys_gw):
    base, _ = keys_gw
    admin = Admin(base)
    ends = time.monotonic() + 4
    created = admin.ok("POST", "/keys", {"name": "short-lived", "scopes": ["orders:read"], "expiresAt": _iso(4)})
    assert call(base, "/items", created["key"]).status_code == 200
    time.sleep(max(0.0, ends - time.monotonic()) + 0.5)  # the expiry is checked on every request, cached or not
    refused = call(base, "/items", created["key"])
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "API_KEY_EXPIRED"


def test_keys_rotation_keeps_the_old_key_for_the_grace_period(keys_gw):
    base, _ = keys_gw
    admin = Admin(base)
    old = admin.ok("POST", "/keys", {"name": "rotating", "scopes": ["orders:read"]})
    assert call(base, "/items", old["key"]).status_code == 200
    default = admin.ok("POST", f"/keys/{old['id']}/rotate")
    valid_until = datetime.fromisoformat(default["previous"]["validUntil"].replace("Z", "+00:00"))
    assert timedelta(hours=23) < valid_until - datetime.now(UTC) <= timedelta(hours=24)
    newest = admin.ok("POST", f"/keys/{default['id']}/rotate", graceSeconds=4)
    ends = time.monotonic() + 4  # the grace started before this answer arrived
    assert newest["key"] != default["key"] and newest["scopes"] == ["orders:read"]
    assert call(base, "/items", newest["key"]).status_code == 200
    assert call(base, "/items", default["key"]).status_code == 200  # in its grace period
    time.sleep(max(0.0, ends - time.monotonic()) + 0.5)
    refused = call(base, "/items", default["key"])
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "API_KEY_EXPIRED"
    assert call(base, "/items", newest["key"]).status_code == 200
    assert call(base, "/items", old["key"]).status_code == 200  # its own 24 h grace still runs
    assert admin.ok("GET", f"/keys/{default['id']}")["replacedBy"] == newest["id"]


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_keys_bad_checksum_is_refused_without_a_store_lookup(keys_gw):
    base, _ = keys_gw
    created = Admin(base).ok("POST", "/keys", {"name": "typo", "scopes": []})
    key = created["key"]
    flipped = key[:-1] + ("A" if key[-1] != "A" else "B")
    malformed, lookups = (
        _sample("gateway_keys_malformed_total"),
        sum(
            _sample("gateway_keys_verifications_total", result=r, source="store")
            for r in ("VALID", "NOT_FOUND", "DISABLED")
        ),
    )
    for presented in (flipped, "gk_short", "gk_" + "x" * 49):
        refused = call(base, "/items", presented)
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "INVALID_API_KEY"
    assert _sample("gateway_keys_malformed_total") == malformed + 3
    after = sum(
        _sample("gateway_keys_verifications_total", result=r, source="store")
        for r in ("VALID", "NOT_FOUND", "DISABLED")
    )
    assert after == lookups  # not one store round trip


def test_keys_tenant_request_checks_both_keys_and_intersects_scopes(keys_gw, recorder):
    base, _ = keys_gw
    admin = Admin(base)
    platform, platform_key = admin.platform("shop", ["orders:read", "orders:write"])
    registered = admin.ok(
        "POST",
        "/clients",
        {
            "platformId": platform["id"],
            "code": "acme",
            "name": "Acme",
            "externalId": "ext-42",
            "scopes": ["orders:read", "logs:read"],
        },
    )
    client_key = registered["key"]["key"]
    read = call(base, "/orders", platform_key, client_key)
    assert read.status_code == 200, read.text
    sent = recorder.last["headers"]
    assert sent["x-auth-scopes"] == "orders:read"  # the intersection
    assert (sent["x-platform-id"], sent["x-client-id"], sent["x-client-external-id"]) == (
        "shop",
        registered["client"]["id"],
        "ext-42",
    )
    write = call(base, "/orders", platform_key, client_key, method="POST")
    assert write.status_code == 403
    assert write.json()["error"]["details"]["required_scopes"] == ["orders:write"]
    assert call(base, "/orders", platform_key, method="POST").status_code == 200  # the platform key alone may write
    assert call(base, "/tenant", platform_key).json()["error"]["code"] == "CLIENT_KEY_REQUIRED"
    other, other_key = admin.platform("other", ["*"])
    foreign = call(base, "/orders", other_key, client_key)
    assert foreign.status_code == 401 and foreign.json()["error"]["code"] == "INVALID_CLIENT_KEY"
    lone = call(base, "/items", client_key)
    assert lone.status_code == 401 and lone.json()["error"]["code"] == "INVALID_API_KEY"
    admin.ok("DELETE", f"/clients/{registered['client']['id']}")  # deactivating revokes its keys
    gone = call(base, "/orders", platform_key, client_key)
    assert gone.status_code == 401 and gone.json()["error"]["code"] == "CLIENT_KEY_DISABLED"


def test_keys_spoofed_identity_headers_never_reach_the_upstream(keys_gw, recorder):
    base, _ = keys_gw
    _, key = Admin(base).platform("honest", ["orders:read"])
    import httpx

    httpx.get(
        f"{base}/api/svc/items",
        headers={"x-api-key": key, "X-Tenant-Id": "plt_evil", "X-Client-External-Id": "evil", "X-Platform-Id": "evil"},
    )
    sent = recorder.last["headers"]
    assert sent["x-platform-id"] == "honest" and sent["x-tenant-id"] != "plt_evil"
    assert "x-client-external-id" not in sent


def test_keys_per_key_rate_limit_answers_429(keys_gw):
    base, _ = keys_gw
    created = Admin(base).ok("POST", "/keys", {"name": "tight", "scopes": [], "rateLimit": 2})
    statuses = [call(base, "/items", created["key"]).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    refused = call(base, "/items", created["key"])
    error = refused.json()["error"]
    assert error["code"] == "RATE_LIMITED" and 1 <= error["details"]["retryAfter"] <= 60
    assert refused.headers["retry-after"] == str(error["details"]["retryAfter"])
    other = Admin(base).ok("POST", "/keys", {"name": "roomy", "scopes": []})
    assert call(base, "/items", other["key"]).status_code == 200  # a limit per key, not per route


def test_keys_usage_totals_per_day_and_last_used(keys_gw):
    base, _ = keys_gw
    admin = Admin(base)
    created = admin.ok("POST", "/keys", {"name": "counted", "scopes": []})
    assert admin.ok("GET", f"/keys/{created['id']}/usage")["total"] == 0
    _clear_of_a_minute_boundary()  # the limit's window below counts these five only if it holds them all
    for _ in range(5):
        assert call(base, "/items", created["key"]).status_code == 200
    usage = eventually(lambda: (u := admin.ok("GET", f"/keys/{created['id']}/usage"))["total"] == 5 and u)
    assert usage, "usage is flushed within the flush interval"
    assert usage["perDay"] == [{"day": datetime.now(UTC).strftime("%Y-%m-%d"), "count": 5}]
    assert usage["lastUsedAt"] is not None
    limits = admin.ok("GET", "/rate-limits")
    assert {"keyId": created["id"], "used": 5}.items() <= next(
        i for i in limits["items"] if i["keyId"] == created["id"]
    ).items()


def test_keys_no_key_in_any_log_listing_or_metric(keys_gw):
    base, log_file = keys_gw
    admin = Admin(base)
    platform, platform_key = admin.platform("quiet", ["orders:read"])
    registered = admin.ok("POST", "/clients", {"platformId": platform["id"], "code": "c1", "name": "C1"})
    client_key = registered["key"]["key"]
    call(base, "/orders", platform_key, client_key)
    call(base, "/orders", platform_key[:-2] + "zz")
    rotated = admin.ok("POST", f"/keys/{registered['key']['id']}/rotate")
    secrets = [platform_key, client_key, rotated["key"]]
    logged = eventually(
        lambda: (rows := admin.ok("GET", "/logs/requests", limit=500)["items"]) and len(rows) >= 5 and rows
    )
    texts = [
        str(logged),
        str(admin.ok("GET", "/keys", limit=500)),
        str(admin.ok("GET", "/clients")),
        str(admin.ok("GET", f"/keys/{registered['key']['id']}")),
        __import__("prometheus_client").generate_latest(REGISTRY).decode(),
        log_file.read_text() if log_file.exists() else "",
    ]
    for secret in secrets:
        for text in texts:
            assert secret not in text and secret[3:20] not in text
