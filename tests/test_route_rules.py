"""Route rules: parameter allowlists and maps, computed parameters, body schemas, fail rules."""

from __future__ import annotations

import httpx
import pytest

GATEWAY = "version: 1\nbase_path: /api\nplugins: [envelope]\n"
ROUTES = """
backend: svc
prefix: /svc
upstream: {{url: "{url}"}}
routes:
  - name: collection
    method: GET
    path: "/collections/{{collection}}"
    upstream_path: "/api/{{collection}}"
    params: {{collection: {{enum: [pages, posts]}}}}
  - name: report
    method: GET
    path: "/reports/{{type}}"
    upstream_path: "/api/method/report/{{type}}"
    params: {{type: {{map: {{sales: Sales Register, stock: Stock Balance}}}}}}
  - name: upload
    method: POST
    path: /upload
    upstream_path: "/bucket/{{key:path}}"
    request:
      params: {{key: "{{{{ query.key }}}}"}}
    params: {{key: {{pattern: "[A-Za-z0-9][A-Za-z0-9._/-]*"}}}}
  - name: chat
    method: POST
    path: /chat
    upstream_path: /v1/chat
    request:
      schema:
        type: object
        required: [model, messages]
        properties:
          model: {{enum: [small, large]}}
          max_tokens: {{type: integer, maximum: 1000}}
          messages: {{type: array, minItems: 1}}
  - name: page
    method: GET
    path: "/pages/{{slug}}"
    upstream_path: /docs
    request: {{query: {{set: {{"where[slug][equals]": "{{{{ params.slug }}}}"}}}}}}
    response:
      data: "{{{{ body.query }}}}"
      fail:
        - {{when: "{{{{ 'missing' in body.query }}}}", status: 404, code: PAGE_NOT_FOUND, message: No such page.}}
"""


@pytest.fixture
def svc(gateway, upstream):
    return gateway(GATEWAY, {"svc": ROUTES.format(url=upstream)})


def test_route_rules_enum_param(svc, recorder):
    with httpx.Client() as c:
        assert c.get(svc + "/api/svc/collections/pages").status_code == 200
        assert recorder.last["raw_path"] == "/api/pages"
        r = c.get(svc + "/api/svc/collections/users")
    assert r.status_code == 400
    assert r.json()["error"] == {
        "code": "INVALID_PARAMETER",
        "message": "Path parameter 'collection' must be one of pages, posts.",
    }
    assert len(recorder.requests) == 1


def test_route_rules_mapped_param(svc, recorder):
    with httpx.Client() as c:
        assert c.get(svc + "/api/svc/reports/sales").status_code == 200
        assert recorder.last["raw_path"] == "/api/method/report/Sales%20Register"
        assert c.get(svc + "/api/svc/reports/Sales%20Register").status_code == 400


@pytest.mark.parametrize(
    "key, expected",
    [
        ("photos/2026/cat.png", "/bucket/photos/2026/cat.png"),
        ("a b.txt", None),
        ("../etc/passwd", None),
        ("/abs", None),
        ("a/../../b", None),
        ("", None),
    ],
)
def test_route_rules_computed_param_is_validated(svc, recorder, key, expected):
    with httpx.Client() as c:
        r = c.post(svc + "/api/svc/upload", params={"key": key}, content=b"data")
    if expected is None:
        assert r.status_code == 400, r.text
        assert r.json()["error"]["code"] in ("INVALID_PARAMETER", "BAD_PATH")
        assert recorder.requests == []
    else:
        assert r.status_code == 200
        assert recorder.last["raw_path"] == expected
        assert recorder.last["body"] == "data"


def test_route_rules_body_schema_lists_every_violation(svc, recorder):
    with httpx.Client() as c:
        r = c.post(svc + "/api/svc/chat", json={"model": "huge", "max_tokens": 5000, "messages": []})
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    paths = sorted(d["path"] for d in error["details"])
    assert paths == ["$.max_tokens", "$.messages", "$.model"]
    assert recorder.requests == []


def test_route_rules_valid_body_is_forwarded_as_sent(svc, recorder):
    raw = b'{"model": "small", "messages": [{"role": "user", "content": "hi"}]}'
    with httpx.Client() as c:
        r = c.post(svc + "/api/svc/chat", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 200
    assert recorder.last["body"] == raw.decode()


def test_route_rules_fail_rule_turns_answer_into_404(svc, recorder):
    with httpx.Client() as c:
        ok = c.get(svc + "/api/svc/pages/home")
        missing = c.get(svc + "/api/svc/pages/missing")
    assert ok.status_code == 200 and ok.json()["data"] == "where%5Bslug%5D%5Bequals%5D=home"
    assert missing.status_code == 404
    assert missing.json()["error"] == {"code": "PAGE_NOT_FOUND", "message": "No such page."}


def test_route_rules_param_rule_on_unknown_param_is_a_config_error(tmp_path):
    from gateway_engine import ConfigErrors, load_config
    from tests.servers import write_config

    root = write_config(
        tmp_path,
        GATEWAY,
        {
            "x": "backend: x\nprefix: /x\nupstream: {url: 'http://127.0.0.1:9'}\nroutes:\n  - name: a\n    method: GET\n    path: /a\n    params: {id: {enum: [a]}}\n"
        },
    )
    with pytest.raises(ConfigErrors) as info:
        load_config(root, {})
    assert "routes.d/x.yaml:8:14: routes[0].params.id: the path has no parameter {id}" in str(info.value)


def test_route_rules_header_templates_query_structures_and_bodiless_upstream(gateway, upstream, recorder):
    routes = f"""
backend: q
prefix: /q
upstream: {{url: "{upstream}", headers: {{X-Static: gateway}}}}
routes:
  - name: search
    method: POST
    path: /search
    upstream_path: /search
    upstream_method: GET
    request:
      query: {{style: brackets, set: {{where: {{slug: {{equals: "{{{{ body.slug }}}}"}}}}, tags: "{{{{ body.tags }}}}"}}}}
      headers: {{X-Customer: "{{{{ headers['x-customer-token'] }}}}", X-Drop-Me: null}}
      body: "{{{{ body }}}}"
"""
    gw = gateway(GATEWAY, {"q": routes})
    with httpx.Client() as c:
        r = c.post(
            gw + "/api/q/search",
            json={"slug": "home", "tags": ["a", "b"]},
            headers={"X-Static": "client", "X-Drop-Me": "x"},
        )
    assert r.status_code == 200, r.text
    sent = recorder.last
    assert sent["method"] == "GET" and sent["body"] == ""
    assert sent["query"] == "where%5Bslug%5D%5Bequals%5D=home&tags%5B0%5D=a&tags%5B1%5D=b"
    assert "x-customer" not in sent["headers"] and "x-drop-me" not in sent["headers"]
    assert sent["headers"]["x-static"] == "gateway"
