"""security_headers: Helmet's defaults on every reply (errors included), each one overridable or removable."""

from __future__ import annotations

import io
import json

import httpx
import pytest
from gateway_engine_plugins.security_headers import SecurityHeadersPlugin

from gateway_engine import GatewayInfo, Reply, RequestContext
from gateway_engine.cli.main import run
from tests.servers import write_config

HELMET = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "x-dns-prefetch-control": "off",
}
CSP = "default-src 'none'; frame-ancestors 'none'"


def gateway_yaml(options: dict | None = None, extra: list | None = None) -> str:
    chain = ["request_id", {"security_headers": options or {}}, *(extra or []), "envelope"]
    return "version: 1\nbase_path: /api\nplugins: " + json.dumps(chain) + "\n"


def backend(upstream: str) -> str:
    return (
        f"backend: svc\nprefix: /svc\nupstream: {{url: '{upstream}'}}\nroutes:\n"
        "  - {name: items, method: GET, path: /items}\n"
        "  - {name: text, method: GET, path: /text, upstream_path: /text}\n"
        "  - {name: missing, method: GET, path: /missing, upstream_path: /status/404}\n"
    )


def test_security_headers_defaults_on_json_and_errors(gateway, upstream):
    gw = gateway(gateway_yaml(extra=[{"ip_filter": {"deny": ["127.0.0.1"]}}]), {"svc": backend(upstream)})
    plain = gateway(gateway_yaml(), {"svc": backend(upstream)})
    with httpx.Client() as c:
        refused_early = c.get(gw + "/api/svc/items")  # ip_filter answers before the upstream
        ok = c.get(plain + "/api/svc/items")
        upstream_error = c.get(plain + "/api/svc/missing")
    assert refused_early.status_code == 403
    for r in (refused_early, ok, upstream_error):
        assert {k: r.headers.get(k) for k in HELMET} == HELMET
        assert r.headers["content-security-policy"] == CSP
        assert "strict-transport-security" not in r.headers
    assert upstream_error.status_code == 404


def test_security_headers_csp_only_on_json_unless_all(gateway, upstream):
    json_only = gateway(gateway_yaml(), {"svc": backend(upstream)})
    everywhere = gateway(gateway_yaml({"content_security_policy_on": "all"}), {"svc": backend(upstream)})
    with httpx.Client() as c:
        text = c.get(json_only + "/api/svc/text")
        text_all = c.get(everywhere + "/api/svc/text")
    assert text.headers["content-type"].startswith("text/plain")
    assert "content-security-policy" not in text.headers
    assert text.headers["x-content-type-options"] == "nosniff"
    assert text_all.headers["content-security-policy"] == CSP


def test_security_headers_override_remove_hsts_and_custom(gateway, upstream):
    options = {
        "frame_options": "SAMEORIGIN",
        "referrer_policy": False,
        "dns_prefetch_control": False,
        "content_security_policy": "default-src 'self'",
        "hsts": {"max_age": 63072000, "preload": True},
        "headers": {"Permissions-Policy": "camera=()"},
    }
    gw = gateway(gateway_yaml(options), {"svc": backend(upstream)})
    with httpx.Client() as c:
        r = c.get(gw + "/api/svc/items")
    assert r.headers["x-frame-options"] == "SAMEORIGIN"
    assert "referrer-policy" not in r.headers and "x-dns-prefetch-control" not in r.headers
    assert r.headers["content-security-policy"] == "default-src 'self'"
    assert r.headers["strict-transport-security"] == "max-age=63072000; includeSubDomains; preload"
    assert r.headers["permissions-policy"] == "camera=()"
    assert r.headers["x-content-type-options"] == "nosniff"


async def test_security_headers_removes_upstream_software_headers():
    options = {k: v["default"] for k, v in SecurityHeadersPlugin.options_schema["properties"].items()}
    plugin = SecurityHeadersPlugin(options, GatewayInfo(base_path="", settings={}, config_dir="."))
    reply = Reply(
        200,
        [
            ("server", "nginx/1.25"),
            ("x-powered-by", "PHP/8.2"),
            ("content-type", "application/json"),
            ("x-frame-options", "ALLOWALL"),
            ("content-security-policy", "default-src *"),
        ],
        b"{}",
    )
    ctx = RequestContext({"type": "http", "method": "GET", "path": "/", "headers": []}, None, None, {}, "127.0.0.1")
    await plugin.on_response(ctx, reply)
    names = [k for k, _ in reply.headers]
    assert "server" not in names and "x-powered-by" not in names
    assert names.count("x-frame-options") == 1 and reply.get_header("x-frame-options") == "DENY"
    assert reply.get_header("content-security-policy") == CSP
    assert reply.get_header("content-type") == "application/json"


@pytest.mark.parametrize("option", ["frame_options", "content_security_policy"])
def test_security_headers_check_options_refuses_true(option):
    problems = SecurityHeadersPlugin.check_options({option: True})
    assert len(problems) == 1 and problems[0].startswith(f"{option}: use a header value")


def test_security_headers_validate_reports_with_location(tmp_path, upstream):
    root = write_config(
        tmp_path, "version: 1\nplugins:\n  - security_headers: {frame_options: true}\n", {"svc": backend(upstream)}
    )
    out = io.StringIO()
    assert run(["validate", "--config", str(root)], stdout=out) == 1
    assert "gateway.yaml:3:5: plugins[0].security_headers: frame_options: use a header value" in out.getvalue()
