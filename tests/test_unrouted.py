"""Requests no route answers (404, 405) still pass the gateway-wide plugins that belong on every answer:
request ids, security and CORS headers, access logs and IP filters, but never auth or rate limits."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from tests.test_plugin_logging import lines

ORIGIN = "http://app.example"


def gateway_yaml(log: Path, deny: list[str] | None = None) -> str:
    chain = [
        "request_id",
        "security_headers",
        {"logging": {"file": str(log), "buffer_bytes": 1}},
        {"cors": {"allow_origins": [ORIGIN]}},
        {"auth": {"accept": ["api_key"]}},
        {"rate_limit": {"limit": "1/minute", "key": "ip"}},
        "envelope",
    ]
    if deny:
        chain.insert(2, {"ip_filter": {"deny": deny}})
    return (
        "version: 1\nbase_path: /api\nauth:\n  api_keys:\n    - {name: web, key: '${WEB_KEY}', scopes: ['*']}\n"
        "plugins: " + json.dumps(chain) + "\n"
    )


def backend(upstream: str) -> str:
    return f"backend: svc\nprefix: /svc\nupstream: {{url: '{upstream}'}}\nroutes:\n  - {{name: items, method: GET, path: /items}}\n"


def test_a_404_carries_ids_security_and_cors_headers_is_logged_and_skips_auth_and_rate_limit(
    gateway, upstream, tmp_path
):
    log = tmp_path / "access.log"
    gw = gateway(gateway_yaml(log), {"svc": backend(upstream)}, {"WEB_KEY": "web-key-123456"})
    with httpx.Client() as c:
        answers = [
            c.get(gw + "/api/nowhere", headers={"Origin": ORIGIN, "x-request-id": f"probe-{i}"}) for i in range(2)
        ]
    for i, r in enumerate(answers):
        assert r.status_code == 404 and r.json()["error"]["code"] == "ROUTE_NOT_FOUND"  # not 401, not 429
        assert r.headers["x-request-id"] == f"probe-{i}" == r.json()["meta"]["requestId"]
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["access-control-allow-origin"] == ORIGIN and "Origin" in r.headers["vary"]
        assert "ratelimit-limit" not in r.headers
    logged = lines(log, 2)
    assert [(line["status"], line["route"], line["path"]) for line in logged] == [(404, None, "/api/nowhere")] * 2


def test_a_405_carries_the_same_headers_and_is_logged_under_the_paths_route(gateway, upstream, tmp_path):
    log = tmp_path / "access.log"
    gw = gateway(gateway_yaml(log), {"svc": backend(upstream)}, {"WEB_KEY": "web-key-123456"})
    r = httpx.delete(gw + "/api/svc/items", headers={"Origin": ORIGIN})
    assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD, OPTIONS"
    assert r.headers["access-control-allow-origin"] == ORIGIN and r.headers["x-frame-options"] == "DENY"
    assert r.headers["x-request-id"] == r.json()["meta"]["requestId"]
    assert [(line["status"], line["route"]) for line in lines(log, 1)] == [(405, "items")]


def test_a_preflight_to_an_unknown_path_is_answered_by_cors(gateway, upstream, tmp_path):
    gw = gateway(gateway_yaml(tmp_path / "access.log"), {"svc": backend(upstream)}, {"WEB_KEY": "web-key-123456"})
    allowed = httpx.options(gw + "/api/nowhere", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "GET"})
    denied = httpx.options(
        gw + "/api/nowhere", headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "GET"}
    )
    assert allowed.status_code == 204 and allowed.headers["access-control-allow-origin"] == ORIGIN
    assert denied.status_code == 400 and "access-control-allow-origin" not in denied.headers


def test_a_denied_ip_gets_403_on_unknown_paths_too(gateway, upstream, tmp_path):
    gw = gateway(
        gateway_yaml(tmp_path / "access.log", deny=["127.0.0.1"]),
        {"svc": backend(upstream)},
        {"WEB_KEY": "web-key-123456"},
    )
    r = httpx.get(gw + "/api/nowhere")
    assert r.status_code == 403 and r.headers["x-content-type-options"] == "nosniff"
