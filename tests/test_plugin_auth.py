"""auth plugin, API keys and tenant keys, over real HTTP: who gets in, what the upstream sees, what is never echoed."""

from __future__ import annotations

import hashlib
import http.client
import io
import json
from pathlib import Path

import h11
import httpx
import pytest
from gateway_engine_plugins.auth import AuthPlugin
from gateway_engine_plugins.auth_keys import KeyTable

from gateway_engine import ConfigErrors, load_config
from gateway_engine.cli.main import run
from gateway_engine.compiled.registry import discover
from tests.servers import write_config

KEYS = {
    "WEB_KEY": "web-3f9a1c0e7b2d4e6f8a0b1c2d3e4f5a6b",
    "OLD_KEY": "old-0a1b2c3d4e5f60718293a4b5c6d7e8f9",
    "OFF_KEY": "off-99aa88bb77cc66dd55ee44ff33001122",
    "PLATFORM_KEY": "plat-5e4d3c2b1a09f8e7d6c5b4a392817065",
    "ACME_KEY": "acme-1234567890abcdef1234567890abcdef",
    "STRANGER_KEY": "strg-fedcba0987654321fedcba0987654321",
    "GONE_KEY": "gone-00112233445566778899aabbccddeeff",
}
ADMIN_KEY = "adm-b7e1c9d3f5a7b9c1d3e5f7a9b1c3d5e7"  # configured only as its SHA-256
IDENTITY_HEADERS = (
    "{user_id: X-User-Id, role: X-User-Role, email: X-User-Email, client_id: X-Client-Id, "
    "platform: X-Platform-Id, key_name: X-Key-Name, consumer: X-Consumer, scopes: X-Scopes}"
)
AUTH_SECTION = f"""auth:
  api_keys:
    - {{name: web, key: "${{WEB_KEY}}", scopes: ["orders:read"], roles: [user]}}
    - {{name: admin-tool, key_sha256: "{hashlib.sha256(ADMIN_KEY.encode()).hexdigest()}", scopes: ["*"], roles: [admin]}}
    - {{name: old, key: "${{OLD_KEY}}", expires: "2020-01-01"}}
    - {{name: paused, key: "${{OFF_KEY}}", disabled: true}}
    - {{name: not-deployed, key: "${{NOT_SET_ANYWHERE}}"}}
    - {{name: platform, key: "${{PLATFORM_KEY}}", scopes: ["*"], roles: [admin, user]}}
  client_keys:
    - {{name: acme, key: "${{ACME_KEY}}", platform: platform, scopes: ["orders:read"], roles: [user]}}
    - {{name: stranger, key: "${{STRANGER_KEY}}", platform: web}}
    - {{name: gone, key: "${{GONE_KEY}}", expires: "2001-01-01T00:00:00Z"}}
"""


def gateway_yaml(auth_options: str = "{accept: [api_key]}") -> str:
    return f"version: 1\nbase_path: /api\nplugins: [request_id, {{auth: {auth_options}}}, envelope]\n{AUTH_SECTION}"


def routes(url: str) -> str:
    return f"""backend: svc
prefix: /svc
upstream: {{url: "{url}"}}
routes:
  - {{name: items, method: GET, path: /items, upstream_path: /items}}
  - {{name: audit, method: GET, path: /audit, upstream_path: /audit, auth: {{roles: [admin]}}}}
  - {{name: orders, method: POST, path: /orders, upstream_path: /orders, auth: {{scopes: ["orders:write"]}}}}
  - {{name: tenant, method: GET, path: /tenant, upstream_path: /tenant, auth: {{require_client_key: true}}}}
  - {{name: public, method: GET, path: /public, upstream_path: /public, auth: none}}
"""


@pytest.fixture
def svc(gateway, upstream):
    options = f"{{accept: [api_key], forward_identity: {{enabled: true, headers: {IDENTITY_HEADERS}}}}}"
    return gateway(gateway_yaml(options), {"svc": routes(upstream)}, env=KEYS)


def get(base: str, path: str, headers: dict[str, str] | None = None, method: str = "GET") -> httpx.Response:
    with httpx.Client() as c:
        return c.request(method, base + path, headers=headers or {})


def assert_no_secret(response: httpx.Response) -> None:
    for secret in [*KEYS.values(), ADMIN_KEY]:
        assert secret not in response.text
        assert all(secret not in v for v in response.headers.values())


def test_auth_api_key_valid_reaches_upstream_without_the_key(svc, recorder):
    r = get(svc, "/api/svc/items", {"x-api-key": KEYS["WEB_KEY"]})
    assert r.status_code == 200
    seen = recorder.last["headers"]
    assert "x-api-key" not in seen and KEYS["WEB_KEY"] not in json.dumps(seen)
    assert seen["x-key-name"] == "web" and seen["x-consumer"] == "web" and seen["x-scopes"] == "orders:read"
    assert seen["x-user-role"] == "user" and "x-user-id" not in seen
    assert_no_secret(r)


@pytest.mark.parametrize(
    "key, code",
    [
        ("nope-not-a-key", "INVALID_API_KEY"),
        (KEYS["OLD_KEY"], "API_KEY_EXPIRED"),
        (KEYS["OFF_KEY"], "API_KEY_DISABLED"),
        (KEYS["WEB_KEY"].upper(), "INVALID_API_KEY"),
        ("", "INVALID_API_KEY"),
    ],
)
def test_auth_api_key_refused(svc, recorder, key, code):
    r = get(svc, "/api/svc/items", {"x-api-key": key})
    assert r.status_code == 401
    assert r.json()["error"]["code"] == code
    assert key not in r.text or key == ""
    assert "www-authenticate" not in r.headers  # no Bearer challenge when jwt is not accepted
    assert recorder.requests == []
    assert_no_secret(r)


def _send_raw_key(svc, value: bytes):
    host, port = svc.split("//")[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)  # httpx refuses to send such a header
    conn.putrequest("GET", "/api/svc/items")
    conn.putheader("x-api-key", value)
    conn.endheaders()
    response = conn.getresponse()
    body = json.loads(response.read())
    conn.close()
    return response.status, body


def _h11_value(raw: bytes) -> bytes:
    """What the reference parser makes of an ``x-api-key`` line carrying ``raw``."""
    server = h11.Connection(h11.SERVER)
    server.receive_data(b"GET / HTTP/1.1\r\nHost: a\r\nx-api-key: " + raw + b"\r\n\r\n")
    event = server.next_event()
    return dict(event.headers)[b"x-api-key"]


@pytest.mark.parametrize("suffix", [b" ", b"\t"])
def test_auth_api_key_trailing_ows_is_framing_not_part_of_the_key(svc, recorder, suffix):
    # RFC 9110 section 5.5: optional whitespace around a field value is not part of it; h11 agrees
    raw = KEYS["WEB_KEY"].encode() + suffix
    assert _h11_value(raw) == KEYS["WEB_KEY"].encode()
    status, _ = _send_raw_key(svc, raw)
    assert status == 200
    assert len(recorder.requests) == 1
    assert "x-api-key" not in {name.lower() for name in recorder.requests[0]["headers"]}


def test_auth_api_key_with_a_trailing_non_ows_character_does_not_match(svc, recorder):
    raw = KEYS["WEB_KEY"].encode() + b"\xa0"  # NBSP is not HTTP whitespace: it is part of the value
    assert _h11_value(raw) == raw
    status, body = _send_raw_key(svc, raw)
    assert status == 401 and body["error"]["code"] == "INVALID_API_KEY"
    assert recorder.requests == []


def test_auth_api_key_by_sha256(svc, recorder, monkeypatch):
    out = io.StringIO()
    monkeypatch.setattr("sys.stdin", io.StringIO(ADMIN_KEY + "\n"))  # `echo "$KEY" | gateway-engine hash-key`
    assert run(["hash-key"], stdout=out) == 0 and out.getvalue().strip() in AUTH_SECTION
    r = get(svc, "/api/svc/audit", {"x-api-key": ADMIN_KEY})
    assert r.status_code == 200
    assert recorder.last["headers"]["x-key-name"] == "admin-tool"
    assert recorder.last["headers"]["x-scopes"] == "*"


def test_auth_missing_credentials_is_401(svc, recorder):
    r = get(svc, "/api/svc/items")
    assert r.status_code == 401
    body = r.json()
    assert body["error"]["code"] == "UNAUTHENTICATED" and "x-api-key" in body["error"]["message"]
    assert body["meta"]["requestId"] and recorder.requests == []


def test_auth_roles_forbidden_then_allowed(svc, recorder):
    r = get(svc, "/api/svc/audit", {"x-api-key": KEYS["WEB_KEY"]})
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "FORBIDDEN" and "admin" in r.json()["error"]["message"]
    assert recorder.requests == []
    assert get(svc, "/api/svc/audit", {"x-api-key": KEYS["PLATFORM_KEY"]}).status_code == 200


def test_auth_scopes_forbidden_then_wildcard_allowed(svc, recorder):
    r = get(svc, "/api/svc/orders", {"x-api-key": KEYS["WEB_KEY"]}, method="POST")
    assert r.status_code == 403
    error = r.json()["error"]
    assert "orders:write" in error["message"] and error["details"]["missing_scopes"] == ["orders:write"]
    assert get(svc, "/api/svc/orders", {"x-api-key": ADMIN_KEY}, method="POST").status_code == 200


def test_auth_tenant_route_requires_client_key(svc, recorder):
    r = get(svc, "/api/svc/tenant", {"x-api-key": KEYS["PLATFORM_KEY"]})
    assert r.status_code == 401 and r.json()["error"]["code"] == "CLIENT_KEY_REQUIRED"
    assert recorder.requests == []


def test_auth_tenant_keys_identify_platform_and_client(svc, recorder):
    r = get(svc, "/api/svc/tenant", {"x-api-key": KEYS["PLATFORM_KEY"], "client-x-api-key": KEYS["ACME_KEY"]})
    assert r.status_code == 200
    seen = recorder.last["headers"]
    assert (
        seen["x-platform-id"] == "platform" and seen["x-client-id"] == "acme" and seen["x-consumer"] == "platform/acme"
    )
    assert "x-api-key" not in seen and "client-x-api-key" not in seen
    assert KEYS["ACME_KEY"] not in json.dumps(recorder.last) and KEYS["PLATFORM_KEY"] not in json.dumps(recorder.last)
    assert_no_secret(r)


@pytest.mark.parametrize(
    "platform, client, code",
    [
        ("PLATFORM_KEY", "STRANGER_KEY", "INVALID_CLIENT_KEY"),  # a client of another platform
        ("PLATFORM_KEY", "GONE_KEY", "CLIENT_KEY_EXPIRED"),
        ("PLATFORM_KEY", "WEB_KEY", "INVALID_CLIENT_KEY"),  # a platform key is no client key
        ("OLD_KEY", "ACME_KEY", "API_KEY_EXPIRED"),
    ],
)
def test_auth_tenant_bad_client_key_is_401(svc, recorder, platform, client, code):
    r = get(svc, "/api/svc/tenant", {"x-api-key": KEYS[platform], "client-x-api-key": KEYS[client]})
    assert r.status_code == 401 and r.json()["error"]["code"] == code
    assert recorder.requests == []
    assert_no_secret(r)


def test_auth_present_client_key_is_checked_even_where_not_required(svc, recorder):
    r = get(svc, "/api/svc/items", {"x-api-key": KEYS["PLATFORM_KEY"], "client-x-api-key": "made-up"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "INVALID_CLIENT_KEY"


def test_auth_client_key_narrows_platform_scopes_and_roles(svc, recorder):
    both = {"x-api-key": KEYS["PLATFORM_KEY"], "client-x-api-key": KEYS["ACME_KEY"]}
    assert get(svc, "/api/svc/orders", {"x-api-key": KEYS["PLATFORM_KEY"]}, method="POST").status_code == 200
    assert get(svc, "/api/svc/orders", both, method="POST").status_code == 403
    assert get(svc, "/api/svc/audit", both).status_code == 403
    r = get(svc, "/api/svc/items", both)
    assert r.status_code == 200 and recorder.last["headers"]["x-scopes"] == "orders:read"


def test_auth_client_key_alone_is_401(svc, recorder):
    r = get(svc, "/api/svc/items", {"client-x-api-key": KEYS["ACME_KEY"]})
    assert r.status_code == 401 and r.json()["error"]["code"] == "UNAUTHENTICATED"
    assert recorder.requests == []


def test_auth_spoofed_identity_headers_never_reach_upstream(svc, recorder):
    spoof = {
        "X-User-Id": "admin",
        "X-User-Role": "admin",
        "X-Client-Id": "evil",
        "X-Platform-Id": "evil",
        "X-User-Email": "evil@example.com",
    }
    assert get(svc, "/api/svc/items", {**spoof, "x-api-key": KEYS["WEB_KEY"]}).status_code == 200
    seen = recorder.last["headers"]
    assert "x-user-id" not in seen and "x-user-email" not in seen and "x-client-id" not in seen
    assert seen["x-user-role"] == "user" and seen["x-platform-id"] == "web"


def test_auth_spoofed_identity_headers_are_stripped_on_public_routes_too(svc, recorder):
    assert get(svc, "/api/svc/public", {"X-User-Id": "admin"}).status_code == 200
    assert "x-user-id" not in recorder.last["headers"]


def test_auth_optional_lets_anonymous_through_without_spoofed_identity(gateway, upstream, recorder):
    options = "{accept: [api_key], optional: true, forward_identity: {enabled: true}}"
    gw = gateway(gateway_yaml(options), {"svc": routes(upstream)}, env=KEYS)
    r = get(gw, "/api/svc/items", {"X-User-Id": "admin", "X-Client-Id": "evil", "X-User-Role": "admin"})
    assert r.status_code == 200
    assert not {"x-user-id", "x-client-id", "x-user-role"} & set(recorder.last["headers"])
    assert get(gw, "/api/svc/items", {"x-api-key": "wrong"}).status_code == 401  # present but invalid: never anonymous
    assert get(gw, "/api/svc/audit").status_code == 401  # a route with requirements needs a credential


def test_auth_public_route_and_options_probe_need_no_credentials(svc, recorder):
    assert get(svc, "/api/svc/public").status_code == 200
    r = get(svc, "/api/svc/items", method="OPTIONS")
    assert r.status_code == 204 and "GET" in r.headers["allow"]


def test_auth_identity_forwarding_is_off_by_default(gateway, upstream, recorder):
    gw = gateway(gateway_yaml(), {"svc": routes(upstream)}, env=KEYS)
    assert get(gw, "/api/svc/items", {"x-api-key": KEYS["WEB_KEY"], "X-Platform-Id": "evil"}).status_code == 200
    assert "x-platform-id" not in recorder.last["headers"] and "x-user-role" not in recorder.last["headers"]


def test_auth_custom_header_names(gateway, upstream, recorder):
    options = "{accept: [api_key], api_key_header: X-Gateway-Key, client_key_header: X-Tenant-Key}"
    gw = gateway(gateway_yaml(options), {"svc": routes(upstream)}, env=KEYS)
    assert get(gw, "/api/svc/items", {"x-api-key": KEYS["WEB_KEY"]}).status_code == 401
    headers = {"X-Gateway-Key": KEYS["PLATFORM_KEY"], "X-Tenant-Key": KEYS["ACME_KEY"]}
    assert get(gw, "/api/svc/tenant", headers).status_code == 200
    assert not {"x-gateway-key", "x-tenant-key"} & set(recorder.last["headers"])


def test_auth_priority_sits_between_cors_and_rate_limit():
    plugins = discover()
    assert plugins["auth"] is AuthPlugin and AuthPlugin.priority == 1000
    assert plugins["cors"].priority > AuthPlugin.priority > plugins["rate_limit"].priority


def test_auth_options_schema_documents_every_option():
    for name, prop in AuthPlugin.options_schema["properties"].items():
        assert prop.get("description") and "type" in prop and "default" in prop, name
    for name, prop in AuthPlugin.options_schema["properties"]["forward_identity"]["properties"]["headers"][
        "properties"
    ].items():
        assert prop.get("description") and prop["type"] == "string", name


def test_auth_key_table_skips_entries_without_key_and_rejects_bad_ones():
    table = KeyTable("api_keys", [{"name": "unset"}, {"name": "a", "key": "k-1"}], client=False)
    assert len(table) == 1 and table.lookup("k-1").name == "a" and table.lookup("k-1 ") is None
    for entries, message in [
        ([{"name": "a", "key": "s3cret\n"}], "whitespace"),
        ([{"name": "a", "key": "s3cret"}, {"name": "a", "key": "other"}], "used twice"),
        ([{"name": "a", "key": "s3cret", "key_sha256": "0" * 64}], "not both"),
        ([{"name": "a", "key": "s3cret", "expires": "next tuesday"}], "ISO date"),
    ]:
        with pytest.raises(ValueError, match=message) as info:
            KeyTable("api_keys", entries, client=False)
        assert "s3cret" not in str(info.value)


def test_auth_key_table_aliases_of_one_key_keep_the_first_entry():
    table = KeyTable(
        "api_keys", [{"name": "a", "key": "s3cret", "scopes": ["x"]}, {"name": "b", "key": "s3cret"}], client=False
    )
    assert len(table) == 1 and table.lookup("s3cret").name == "a"


def test_auth_env_key_with_newline_is_a_config_error(tmp_path: Path, upstream):
    root = write_config(tmp_path, gateway_yaml(), {"svc": routes(upstream)})
    with pytest.raises(ConfigErrors) as info:
        load_config(root, {**KEYS, "WEB_KEY": KEYS["WEB_KEY"] + "\n"})
    text = str(info.value)
    assert "auth.api_keys[web]" in text and "whitespace" in text and KEYS["WEB_KEY"] not in text


def validate(tmp_path: Path, gateway_text: str, backend: str = "") -> tuple[int, str]:
    backend = backend or (
        "backend: svc\nprefix: /svc\nupstream: {url: 'http://127.0.0.1:9'}\n"
        "routes:\n  - {name: items, method: GET, path: /items}\n"
    )
    root = write_config(tmp_path, gateway_text, {"svc": backend})
    out = io.StringIO()
    return run(["validate", "--config", str(root)], stdout=out), out.getvalue()


@pytest.mark.parametrize(
    "options, needle",
    [
        ("{accept: [nonsense]}", "'nonsense' is not one of"),
        ("{accept: [api_key], acept: [jwt]}", "unknown key 'acept'"),
        ("{accept: [jwt], require_client_key: true}", "require_client_key needs api_key"),
        ("{accept: [api_key], client_key_header: X-API-KEY}", "must differ"),
        ("{accept: [api_key], forward_identity: {enabled: true, headers: {user_id: Authorization}}}", "collides"),
        ("{accept: [api_key], forward_identity: true, api_key_header: 5}", "is not of type"),  # no crash on bad shapes
    ],
)
def test_auth_validate_reports_bad_options_with_location(tmp_path, options, needle):
    code, out = validate(tmp_path, gateway_yaml(options))
    assert code == 1
    line = next(l for l in out.splitlines() if needle in l)
    assert line.startswith("gateway.yaml:3:")


def test_auth_validate_reports_bad_auth_section_with_location(tmp_path):
    text = (
        "version: 1\nplugins: [{auth: {accept: [api_key, jwt]}}]\nauth:\n  api_keys:\n"
        "    - {name: a, key_sha256: not-hex}\n    - {name: b, key: x, expires: 2030-01-01}\n"
        "  jwt: {algorithms: [HS256, none]}\n"
    )
    code, out = validate(tmp_path, text)
    assert code == 1
    assert "gateway.yaml:5:" in out and "key_sha256" in out
    assert "gateway.yaml:6:" in out and "expires" in out  # an unquoted YAML date is not an ISO string
    assert "gateway.yaml:7:" in out and "'none' is not one of" in out and "'secret' is a required property" in out


def test_auth_validate_accepts_methods_only_when_configured(tmp_path):
    code, out = validate(tmp_path, "version: 1\nplugins: [{auth: {accept: [jwt]}}]\nauth: {api_keys: []}\n")
    assert code == 1 and "no auth.jwt section" in out


def test_auth_instances_share_one_key_table(tmp_path, upstream):
    root = write_config(tmp_path, gateway_yaml(), {"svc": routes(upstream)})
    config = load_config(root, KEYS)
    auths = [p for p in config.plugins if isinstance(p, AuthPlugin)]
    assert len(auths) > 1 and len({id(p.platform_keys) for p in auths}) == 1
