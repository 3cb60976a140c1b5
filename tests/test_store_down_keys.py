"""PostgreSQL stopped under a running gateway: stored keys fail closed (503, never a 401 that blames the
client) unless a route says `on_store_error: last_known`, and the request log never fails a request."""

from __future__ import annotations

import time

import httpx

from gateway_engine.keys import keyformat
from tests.keys_support import Admin, admin_routes, eventually, gateway_yaml
from tests.postgres_server import create_database, stoppable_postgres  # noqa: F401

ROUTES = """backend: svc
prefix: /svc
upstream: {{url: "{url}"}}
routes:
  - {{name: closed, method: GET, path: /closed, upstream_path: /items}}
  - {{name: cached, method: GET, path: /cached, upstream_path: /items,
     plugins: {{auth: {{on_store_error: last_known, last_known_for: 1m}}}}}}
  - {{name: brief, method: GET, path: /brief, upstream_path: /items,
     plugins: {{auth: {{on_store_error: last_known, last_known_for: 1s}}}}}}
"""


def get(base: str, path: str, key: str) -> httpx.Response:
    return httpx.get(f"{base}/api/svc{path}", headers={"x-api-key": key}, timeout=10)


def test_stored_keys_when_postgresql_stops_closed_or_last_known(gateway, upstream, stoppable_postgres, tmp_path):
    url = create_database(stoppable_postgres.url)
    config = gateway_yaml(url, tmp_path / "access.log", extra=", cache: {ttl: 1s, negative_ttl: 1s}")
    base = gateway(config, {"admin": admin_routes(), "svc": ROUTES.format(url=upstream)})
    _, key = Admin(base).platform("acme", ["*"])
    _, revoked_key = Admin(base).platform("gone", ["*"])
    unknown = keyformat.generate("gk")  # well formed, never issued
    for path in ("/closed", "/cached", "/brief"):
        assert get(base, path, key).status_code == 200, path
    assert get(base, "/cached", revoked_key).status_code == 200
    [gone] = [k for k in Admin(base).ok("GET", "/keys")["items"] if k["name"] == "gone"]
    Admin(base).ok("DELETE", f"/keys/{gone['id']}")
    assert get(base, "/cached", revoked_key).status_code == 401
    assert get(base, "/cached", unknown).status_code == 401
    time.sleep(1.5)  # past the cache ttl (every answer now needs the store) and past /brief's last_known_for

    stoppable_postgres.stop()
    closed = get(base, "/closed", key)
    assert closed.status_code == 503 and closed.json()["error"]["code"] == "KEY_STORE_UNAVAILABLE"
    assert get(base, "/cached", key).status_code == 200  # the store's last answer, 1.5 s old
    revoked = get(base, "/cached", revoked_key)
    assert revoked.status_code == 401 and revoked.json()["error"]["code"] == "API_KEY_DISABLED"
    never = get(base, "/cached", unknown)  # "unknown" was the store's answer, but it does not blame the client now
    assert never.status_code == 503 and never.json()["error"]["code"] == "KEY_STORE_UNAVAILABLE"
    too_old = get(base, "/brief", key)
    assert too_old.status_code == 503 and too_old.json()["error"]["code"] == "KEY_STORE_UNAVAILABLE"
    assert all(get(base, "/cached", key).status_code == 200 for _ in range(5))  # request_log never fails one
    admin = Admin(base).call("GET", "/keys")  # the admin API needs the store: a 503, never a 500
    assert admin.status_code == 503 and admin.json()["error"]["code"] == "KEY_STORE_UNAVAILABLE"

    stoppable_postgres.start()
    deadline = time.monotonic() + 15
    while get(base, "/closed", key).status_code != 200:  # the pool reconnects on its own
        assert time.monotonic() < deadline, "the gateway did not recover when PostgreSQL came back"
        time.sleep(0.2)
    # the request log kept the outage's rows (6 answered 200, the unknown key's 503) and wrote them afterwards
    logged = eventually(lambda: len(_logged(base, "cached", 503)) == 1 and len(_logged(base, "cached", 200)) == 8)
    assert logged, (len(_logged(base, "cached", 503)), len(_logged(base, "cached", 200)))


def _logged(base: str, route: str, status: int) -> list[dict]:
    rows = Admin(base).ok("GET", "/logs/requests", route=f"svc.{route}", status=status, limit=100)["items"]
    return rows
