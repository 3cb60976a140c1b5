"""The proxy over real HTTP: path safety, headers, query handling, bodies, errors."""

from __future__ import annotations

import http.client
import json

import httpx
import pytest

GATEWAY = "version: 1\nbase_path: /api\nplugins: [request_id, envelope]\n"


def backend(url: str, routes: str, extra: str = "") -> str:
    return f'backend: svc\nprefix: /svc\nupstream:\n  url: "{url}/base"\n{extra}routes:\n{routes}'


ROUTES = """
  - {name: get-item, method: GET, path: "/items/{id}", upstream_path: "/items/{id}"}
  - {name: opaque, method: GET, path: "/opaque/{id}", upstream_path: "/opaque/{id}", params: {id: {allow_encoded_slash: true}}}
  - {name: list, method: [GET, POST], path: /items, upstream_path: /items}
  - {name: files, method: GET, path: "/files/{rest:path}", upstream_path: "/files/{rest}"}
  - name: allow
    method: GET
    path: /allow
    upstream_path: /allow
    request: {query: {allow: [a, b], set: {fixed: "1", from_param: "{{ query.a }}-x"}}}
  - {name: none, method: GET, path: /none, upstream_path: /none, request: {query: none}}
  - {name: raw, method: GET, path: /raw, upstream_path: /raw, plugins: {envelope: false}}
  - {name: fwd, method: GET, path: /fwd, upstream_path: /fwd, request: {forward_headers: [authorization]}}
"""


def raw_get(base: str, raw_path: str) -> tuple[int, dict]:
    """GET with the path sent byte for byte (httpx would normalise dot-segments)."""
    host, port = base.split("//")[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("GET", raw_path)
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, json.loads(data) if data else {}


@pytest.fixture
def svc(gateway, upstream):
    return gateway(GATEWAY, {"svc": backend(upstream, ROUTES)})


@pytest.mark.parametrize("param", ["..", "%2e%2e", "%2E%2e", ".", "%2e"])
def test_proxy_dot_segment_params_are_refused(svc, recorder, param):
    status, body = raw_get(svc, f"/api/svc/items/{param}")
    assert status == 400
    assert body["error"]["code"] == "BAD_PATH"
    assert recorder.requests == []


@pytest.mark.parametrize(
    "param, expected",
    [
        ("a%2Fb", "/base/opaque/a%2Fb"),
        ("%3Fx=1%23frag", "/base/items/%3Fx=1%23frag"),
        ("user%40evil.com", "/base/items/user%40evil.com"),
        ("evil.com%2Fx%2F%3A1", "/base/opaque/evil.com%2Fx%2F:1"),
        ("caf%C3%A9", "/base/items/caf%C3%A9"),
    ],
)
def test_proxy_params_are_encoded_into_one_segment(svc, recorder, param, expected):
    route = "opaque" if "%2F" in param else "items"  # a slash stays encoded only where the route opts in
    status, _ = raw_get(svc, f"/api/svc/{route}/{param}")
    assert status == 200
    assert recorder.last["raw_path"] == expected
    assert recorder.last["headers"]["host"].startswith("127.0.0.1:")


@pytest.mark.parametrize("param", ["a%2Fb", "%2F%2Fevil.com", "a%5Cb"])
def test_proxy_slash_params_are_refused_without_the_opt_in(svc, recorder, param):
    status, body = raw_get(svc, f"/api/svc/items/{param}")
    assert status == 400 and body["error"]["code"] == "BAD_PATH"
    assert recorder.requests == []


def test_proxy_crlf_param_is_refused(svc, recorder):
    status, _ = raw_get(svc, "/api/svc/items/a%0D%0AX-Injected:%201")
    assert status == 400
    assert recorder.requests == []


def test_proxy_catch_all_keeps_segments_and_refuses_climbing(svc, recorder):
    with httpx.Client() as c:
        assert c.get(svc + "/api/svc/files/a/b%2Fc/d.txt").status_code == 200
        assert recorder.last["raw_path"] == "/base/files/a/b%2Fc/d.txt"
    status, _ = raw_get(svc, "/api/svc/files/a/%2e%2e/%2e%2e/secret")
    assert status == 400
    status, _ = raw_get(svc, "/api/svc/files/a/../../secret")
    assert status == 400
    assert len(recorder.requests) == 1


def test_proxy_client_credentials_are_not_forwarded(svc, recorder):
    with httpx.Client() as c:
        r = c.get(
            svc + "/api/svc/items/1",
            headers={
                "Authorization": "Bearer client-token",
                "x-api-key": "client-key",
                "Cookie": "session=s",
                "Proxy-Authorization": "Basic x",
            },
        )
    assert r.status_code == 200
    sent = recorder.last["headers"]
    for name in ("authorization", "x-api-key", "cookie", "proxy-authorization"):
        assert name not in sent


def test_proxy_route_may_forward_authorization(svc, recorder):
    with httpx.Client() as c:
        c.get(svc + "/api/svc/fwd", headers={"Authorization": "Bearer client-token", "x-api-key": "k"})
    assert recorder.last["headers"]["authorization"] == "Bearer client-token"
    assert "x-api-key" not in recorder.last["headers"]


def test_proxy_sets_forwarding_headers_and_drops_hop_by_hop(svc, recorder):
    with httpx.Client() as c:
        r = c.get(
            svc + "/api/svc/items/1",
            headers={
                "X-Forwarded-For": "6.6.6.6",
                "X-Request-Id": "abc-123",
                "Connection": "keep-alive, X-Secret-Hop",
                "TE": "trailers",
                "Upgrade": "websocket",
                "X-Secret-Hop": "1",
            },
        )
    sent = recorder.last["headers"]
    assert sent["x-forwarded-for"] == "127.0.0.1"  # trusted_proxies 0: a client cannot inject a hop
    assert sent["x-forwarded-proto"] == "http"
    assert sent["x-forwarded-host"].startswith("127.0.0.1:")
    assert sent["x-request-id"] == "abc-123" == r.headers["x-request-id"]
    assert "te" not in sent and "upgrade" not in sent
    assert "x-secret-hop" not in sent and "connection" not in sent  # a header Connection names is hop-by-hop
    assert "server" not in r.headers


def test_proxy_query_passthrough_allowlist_and_none(svc, recorder):
    with httpx.Client() as c:
        c.get(svc + "/api/svc/items?x=1&y=%20z")
        assert recorder.last["query"] == "x=1&y=%20z"
        c.get(svc + "/api/svc/allow?a=1&b=2&evil=3")
        assert recorder.last["query"] == "a=1&b=2&fixed=1&from_param=1-x"
        c.get(svc + "/api/svc/none?a=1")
        assert recorder.last["query"] == ""


def test_proxy_post_body_streams_through(svc, recorder):
    with httpx.Client() as c:
        r = c.post(svc + "/api/svc/items", content=b'{"a": 1}', headers={"content-type": "application/json"})
    assert r.status_code == 200
    assert recorder.last["body"] == '{"a": 1}'
    assert recorder.last["headers"]["content-type"] == "application/json"


def test_proxy_envelope_wraps_upstream_json(svc):
    with httpx.Client() as c:
        body = c.get(svc + "/api/svc/items/7").json()
    assert body["success"] is True
    assert body["data"]["raw_path"] == "/base/items/7"
    assert body["meta"]["source"] == "svc"
    assert body["meta"]["requestId"] and body["meta"]["timestamp"].endswith("Z")


def test_proxy_envelope_opt_out_is_raw(svc):
    with httpx.Client() as c:
        body = c.get(svc + "/api/svc/raw").json()
    assert "success" not in body and body["raw_path"] == "/base/raw"


def test_proxy_envelope_drops_the_upstream_etag_and_raw_passthrough_keeps_it(svc):
    with httpx.Client() as c:
        wrapped = c.get(svc + "/api/svc/items/7", headers={"x-test-etag": '"v1"'})
        raw = c.get(svc + "/api/svc/raw", headers={"x-test-etag": '"v1"'})
    assert "etag" not in wrapped.headers  # the envelope's bytes are not the bytes the tag described
    assert wrapped.headers["content-type"] == "application/json"
    assert raw.headers["etag"] == '"v1"'


def test_proxy_unknown_path_is_404_envelope(svc):
    with httpx.Client() as c:
        r = c.get(svc + "/api/svc/unknown/route")
    assert r.status_code == 404
    assert r.json()["success"] is False and r.json()["error"]["code"] == "ROUTE_NOT_FOUND"


def test_proxy_wrong_method_is_405_with_allow(svc):
    with httpx.Client() as c:
        r = c.delete(svc + "/api/svc/items/1")
    assert r.status_code == 405
    assert r.headers["allow"] == "GET, HEAD, OPTIONS"
    assert r.json()["error"]["code"] == "METHOD_NOT_ALLOWED"


def test_proxy_options_without_route_answers_allow(svc, recorder):
    with httpx.Client() as c:
        r = c.options(svc + "/api/svc/items")
    assert r.status_code == 204
    assert r.headers["allow"] == "GET, HEAD, OPTIONS, POST"
    assert recorder.requests == []


def test_proxy_head_uses_get_route(svc, recorder):
    with httpx.Client() as c:
        r = c.head(svc + "/api/svc/items/1")
    assert r.status_code == 200 and r.content == b""
    assert recorder.last["method"] == "HEAD"


def test_proxy_upstream_error_keeps_status_and_details(gateway, upstream):
    gw = gateway(
        GATEWAY,
        {
            "svc": backend(
                upstream, '  - {name: s, method: GET, path: "/s/{code}", upstream_path: "/status/{code}"}\n'
            ).replace("/base", "")
        },
    )
    with httpx.Client() as c:
        r = c.get(gw + "/api/svc/s/404")
    assert r.status_code == 404
    body = r.json()
    assert body["success"] is False
    assert body["error"]["code"] == "UPSTREAM_ERROR"
    assert body["error"]["details"] == {"error": {"type": "test_error", "message": "status 404"}}


def test_proxy_refused_connection_is_502(gateway):
    from tests.servers import free_port

    gw = gateway(GATEWAY, {"svc": backend(f"http://127.0.0.1:{free_port()}", ROUTES)})
    with httpx.Client() as c:
        r = c.get(gw + "/api/svc/items/1")
    assert r.status_code == 502
    assert r.json()["error"]["code"] == "UPSTREAM_UNAVAILABLE"


def test_proxy_slow_upstream_is_504(gateway, upstream):
    gw = gateway(
        GATEWAY,
        {
            "svc": backend(
                upstream,
                "  - {name: slow, method: GET, path: /slow, upstream_path: /slow}\n",
                extra="  timeout: 300ms\n",
            ).replace("/base", "")
        },
    )
    with httpx.Client(timeout=10) as c:
        r = c.get(gw + "/api/svc/slow?s=3")
    assert r.status_code == 504
    assert r.json()["error"]["code"] == "UPSTREAM_TIMEOUT"


def test_proxy_unset_env_answers_503_naming_the_variable(gateway):
    text = "backend: svc\nprefix: /svc\nupstream:\n  url: ${SVC_URL}\n  auth: {style: bearer, token: '${SVC_TOKEN}'}\nroutes:\n  - {name: a, method: GET, path: /a}\n"
    gw = gateway(GATEWAY, {"svc": text}, env={"SVC_TOKEN": "top-secret-value"})
    with httpx.Client() as c:
        r = c.get(gw + "/api/svc/a")
        health = c.get(gw + "/api/health").json()
    assert r.status_code == 503
    assert r.json()["error"]["code"] == "BACKEND_NOT_CONFIGURED"
    assert "SVC_URL" in r.json()["error"]["message"]
    assert "top-secret-value" not in r.text
    assert health["status"] == "ok" and health["unconfigured"] == ["svc"]


def test_proxy_upstream_non_json_success_passes_untouched(gateway, upstream):
    gw = gateway(
        GATEWAY,
        {"svc": backend(upstream, "  - {name: t, method: GET, path: /t, upstream_path: /text}\n").replace("/base", "")},
    )
    with httpx.Client() as c:
        r = c.get(gw + "/api/svc/t")
    assert r.status_code == 200 and r.text == "plain text"


def test_proxy_upstream_invalid_json_is_502(gateway, upstream):
    gw = gateway(
        GATEWAY,
        {
            "svc": backend(upstream, "  - {name: t, method: GET, path: /t, upstream_path: /not-json}\n").replace(
                "/base", ""
            )
        },
    )
    with httpx.Client() as c:
        r = c.get(gw + "/api/svc/t")
    assert r.status_code == 502 and r.json()["error"]["code"] == "UPSTREAM_INVALID_JSON"


def test_proxy_routes_sharing_a_shape_keep_their_own_parameter_names(gateway, upstream, recorder):
    routes = f"""backend: svc
prefix: /svc
upstream: {{url: "{upstream}"}}
routes:
  - {{name: get, method: GET, path: "/orders/{{id}}", upstream_path: "/get/{{id}}"}}
  - {{name: put, method: PUT, path: "/orders/{{order_id}}", upstream_path: "/put/{{order_id}}"}}
"""
    gw = gateway(GATEWAY, {"svc": routes})
    with httpx.Client() as c:
        assert c.get(gw + "/api/svc/orders/7").status_code == 200
        assert recorder.last["raw_path"] == "/get/7"
        assert c.put(gw + "/api/svc/orders/8", content=b"x").status_code == 200
        assert recorder.last["raw_path"] == "/put/8"
