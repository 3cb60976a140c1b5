"""cors: preflights answered before auth, origins checked exactly / by regex, headers on every reply."""

from __future__ import annotations

import asyncio
import io
import json

import httpx
import pytest
from gateway_engine_plugins.cors import CorsPlugin, add_vary_origin

from gateway_engine import GatewayInfo, Reply, RequestContext
from gateway_engine.cli.main import run
from tests.servers import write_config
from tests.test_plugin_rate_limit import stub_auth  # noqa: F401  (fixture: a plugin at auth's priority)

APP = "https://app.example.com"


def gateway_yaml(cors: dict, *, auth: bool = False) -> str:
    chain = ["request_id", {"cors": cors}] + (["stub_auth"] if auth else []) + ["envelope"]
    return "version: 1\nbase_path: /api\nplugins: " + json.dumps(chain) + "\n"


def backend(upstream: str) -> str:
    return (
        f"backend: svc\nprefix: /svc\nupstream: {{url: '{upstream}'}}\nroutes:\n"
        "  - {name: items, method: [GET, POST], path: /items}\n"
        "  - {name: denied, method: GET, path: /denied, upstream_path: /status/401}\n"
    )


def preflight(
    c: httpx.Client, url: str, origin: str, method: str = "POST", headers: str | None = None
) -> httpx.Response:
    h = {"origin": origin, "access-control-request-method": method}
    if headers:
        h["access-control-request-headers"] = headers
    return c.options(url, headers=h)


def test_cors_preflight_is_answered_before_auth(gateway, upstream, recorder, stub_auth):
    gw = gateway(gateway_yaml({"allow_origins": [APP]}, auth=True), {"svc": backend(upstream)})
    with httpx.Client() as c:
        r = preflight(c, gw + "/api/svc/items", APP, "POST", "Content-Type, X-Api-Key")
        assert r.status_code == 204
        assert r.headers["access-control-allow-origin"] == APP
        assert "POST" in r.headers["access-control-allow-methods"].split(", ")
        allowed = r.headers["access-control-allow-headers"].split(", ")
        assert {"content-type", "x-api-key", "idempotency-key"} <= set(allowed)
        assert r.headers["access-control-max-age"] == "600"
        assert r.headers["vary"] == "Origin"
        assert "access-control-allow-credentials" not in r.headers
        # the same URL without the preflight headers is a plain OPTIONS: the stub auth refuses it
        assert c.options(gw + "/api/svc/items").status_code == 401
    assert recorder.requests == []


def test_cors_preflight_denied_origin_is_400_without_allow_origin(gateway, upstream, recorder):
    gw = gateway(gateway_yaml({"allow_origins": [APP]}), {"svc": backend(upstream)})
    with httpx.Client() as c:
        r = preflight(c, gw + "/api/svc/items", "https://evil.example")
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "CORS_ORIGIN_DENIED"
    assert "access-control-allow-origin" not in r.headers
    assert recorder.requests == []


def test_cors_preflight_denied_method_and_headers(gateway, upstream):
    gw = gateway(gateway_yaml({"allow_origins": [APP], "allow_methods": ["GET", "POST"]}), {"svc": backend(upstream)})
    with httpx.Client() as c:
        r = preflight(c, gw + "/api/svc/items", APP, "DELETE")
        assert r.status_code == 400
        assert r.json()["error"]["code"] == "CORS_METHOD_DENIED"
        r = preflight(c, gw + "/api/svc/items", APP, "POST", "content-type, x-secret-thing")
        assert r.status_code == 400
        assert r.json()["error"]["code"] == "CORS_HEADERS_DENIED"
        assert r.json()["error"]["details"] == {"headers": ["x-secret-thing"]}
        # safelisted headers are always allowed
        assert preflight(c, gw + "/api/svc/items", APP, "GET", "accept-language").status_code == 204


def test_cors_actual_request_gets_origin_and_expose_headers(gateway, upstream, recorder):
    gw = gateway(gateway_yaml({"allow_origins": [APP]}), {"svc": backend(upstream)})
    with httpx.Client() as c:
        r = c.get(gw + "/api/svc/items", headers={"origin": APP})
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == APP
        exposed = r.headers["access-control-expose-headers"].split(", ")
        assert {"x-request-id", "ratelimit-remaining", "retry-after"} <= set(exposed)
        assert r.headers["vary"] == "Origin"
        # a foreign origin still reaches the upstream (the browser enforces CORS) but gets no grant
        r = c.get(gw + "/api/svc/items", headers={"origin": "https://evil.example"})
        assert r.status_code == 200
        assert "access-control-allow-origin" not in r.headers
        assert r.headers["vary"] == "Origin"
    assert len(recorder.requests) == 2


def test_cors_error_replies_carry_the_headers(gateway, upstream, stub_auth):
    gw = gateway(gateway_yaml({"allow_origins": [APP]}, auth=True), {"svc": backend(upstream)})
    with httpx.Client() as c:
        plugin_error = c.get(gw + "/api/svc/items", headers={"origin": APP})
        upstream_error = c.get(gw + "/api/svc/denied", headers={"origin": APP, "x-test-user": "u"})
    for r in (plugin_error, upstream_error):
        assert r.status_code == 401
        assert r.headers["access-control-allow-origin"] == APP
        assert "x-request-id" in r.headers["access-control-expose-headers"]


def test_cors_wildcard_and_credentials(gateway, upstream):
    any_origin = gateway(gateway_yaml({"allow_origins": ["*"]}), {"svc": backend(upstream)})
    with_credentials = gateway(
        gateway_yaml({"allow_origins": [APP], "allow_credentials": True}), {"svc": backend(upstream)}
    )
    with httpx.Client() as c:
        r = c.get(any_origin + "/api/svc/items", headers={"origin": "https://anything.example"})
        assert r.headers["access-control-allow-origin"] == "*"
        assert "vary" not in r.headers
        r = c.get(with_credentials + "/api/svc/items", headers={"origin": APP})
        assert r.headers["access-control-allow-origin"] == APP
        assert r.headers["access-control-allow-credentials"] == "true"
        r = preflight(c, with_credentials + "/api/svc/items", APP)
        assert r.status_code == 204
        assert r.headers["access-control-allow-credentials"] == "true"


def test_cors_origin_regex_must_match_fully(gateway, upstream):
    gw = gateway(
        gateway_yaml({"allow_origin_regex": [r"https://[a-z0-9-]+\.example\.com"]}), {"svc": backend(upstream)}
    )
    with httpx.Client() as c:

        def grant(origin: str) -> str | None:
            return c.get(gw + "/api/svc/items", headers={"origin": origin}).headers.get("access-control-allow-origin")

        assert grant("https://shop.example.com") == "https://shop.example.com"
        assert grant("https://shop.example.com.evil.io") is None
        assert grant("http://shop.example.com") is None


def test_cors_origins_from_env_including_a_json_array(gateway, upstream):
    cors = {"allow_origins": ["${STOREFRONT_URL_DEV}", "${ADMIN_ORIGINS}", "http://localhost:5000"]}
    env = {"ADMIN_ORIGINS": '["https://a.example", "https://b.example/"]'}
    gw = gateway(gateway_yaml(cors), {"svc": backend(upstream)}, env)
    with httpx.Client() as c:
        for origin in ("https://a.example", "https://b.example", "http://localhost:5000"):
            assert (
                c.get(gw + "/api/svc/items", headers={"origin": origin}).headers.get("access-control-allow-origin")
                == origin
            )
        assert (
            "access-control-allow-origin"
            not in c.get(gw + "/api/svc/items", headers={"origin": "https://c.example"}).headers
        )


def test_cors_plain_options_probe_gets_allow_and_grant(gateway, upstream):
    gw = gateway(gateway_yaml({"allow_origins": [APP]}), {"svc": backend(upstream)})
    with httpx.Client() as c:
        r = c.options(gw + "/api/svc/items", headers={"origin": APP})
    assert r.status_code == 204
    assert r.headers["allow"] == "GET, HEAD, OPTIONS, POST"
    assert r.headers["access-control-allow-origin"] == APP


def make_plugin(**options) -> CorsPlugin:
    schema = CorsPlugin.options_schema["properties"]
    filled = {k: options.get(k, v["default"]) for k, v in schema.items()}
    return CorsPlugin(filled, GatewayInfo(base_path="", settings={}, config_dir="."))


def run_response(plugin: CorsPlugin, reply: Reply, origin: str) -> Reply:
    scope = {"type": "http", "method": "GET", "path": "/x", "headers": [(b"origin", origin.encode())]}
    asyncio.run(plugin.on_response(RequestContext(scope, None, None, {}, "127.0.0.1"), reply))
    return reply


def test_cors_upstream_cors_headers_are_replaced_and_vary_is_appended():
    reply = Reply(
        200,
        [
            ("access-control-allow-origin", "*"),
            ("access-control-allow-credentials", "true"),
            ("vary", "Accept-Encoding"),
            ("vary", "Accept-Language"),
        ],
        b"{}",
    )
    run_response(make_plugin(allow_origins=[APP]), reply, "https://evil.example")
    assert reply.get_header("access-control-allow-origin") is None
    assert reply.get_header("access-control-allow-credentials") is None
    assert [v for k, v in reply.headers if k == "vary"] == ["Accept-Encoding, Accept-Language, Origin"]
    add_vary_origin(reply)  # idempotent
    assert [v for k, v in reply.headers if k == "vary"] == ["Accept-Encoding, Accept-Language, Origin"]


@pytest.mark.parametrize(
    "options, message",
    [
        ({"allow_origins": ["*"], "allow_credentials": True}, "cannot be combined with allow_credentials"),
        ({"allow_origins": ["https://app.example.com/path"]}, "is not an origin"),
        ({"allow_origins": ["[not json"]}, "allow_origins:"),
        ({"allow_origin_regex": ["https://(unclosed"]}, "is not a valid regular expression"),
    ],
)
def test_cors_check_options_refuses(options, message):
    problems = CorsPlugin.check_options({"allow_origins": [], "allow_origin_regex": [], **options})
    assert len(problems) == 1 and message in problems[0]


def test_cors_validate_reports_wildcard_with_credentials_with_location(tmp_path, upstream):
    root = write_config(
        tmp_path,
        "version: 1\nplugins:\n  - request_id\n  - cors: {allow_origins: ['*'], allow_credentials: true}\n",
        {"svc": backend(upstream)},
    )
    out = io.StringIO()
    assert run(["validate", "--config", str(root)], stdout=out) == 1
    assert (
        "gateway.yaml:4:5: plugins[1].cors: allow_origins '*' cannot be combined with allow_credentials"
        in out.getvalue()
    )


def test_cors_preflight_needs_no_credentials_with_the_real_auth_plugin(gateway, upstream, recorder):
    config = (
        "version: 1\nbase_path: /api\nauth:\n  api_keys:\n    - {name: web, key: '${WEB_KEY}', scopes: ['*']}\n"
        f"plugins: [request_id, {{cors: {{allow_origins: ['{APP}']}}}}, {{auth: {{accept: [api_key]}}}}, envelope]\n"
    )
    gw = gateway(config, {"svc": backend(upstream)}, {"WEB_KEY": "web-key-123456"})
    with httpx.Client() as c:
        assert preflight(c, gw + "/api/svc/items", APP, "GET", "x-api-key").status_code == 204
        refused = c.get(gw + "/api/svc/items", headers={"origin": APP})
    assert refused.status_code == 401
    assert refused.headers["access-control-allow-origin"] == APP
    assert recorder.requests == []
