"""`gateway-engine explain`: the upstream request and client response of one request, offline, secrets masked."""

from __future__ import annotations

import io
import json

from gateway_engine.cli.main import run
from tests.servers import write_config

ROUTES = """
backend: erp
prefix: /erp
upstream:
  url: ${ERP_URL}
  auth: {style: template, header: Authorization, value: "token {{ env.ERP_KEY }}:{{ env.ERP_SECRET }}"}
routes:
  - name: invoice
    method: GET
    path: "/invoices/{id}"
    upstream_path: "/api/resource/Sales Invoice/{id}"
    params: {id: {allow_encoded_slash: true}}
    response: {data: "{{ body.data }}"}
  - name: broken
    method: GET
    path: /broken
    response: {data: "{{ body.data.items() }}"}
"""


def explain(tmp_path, monkeypatch, *argv: str) -> tuple[int, dict]:
    root = write_config(
        tmp_path / "cfg", "version: 1\nbase_path: /api\nplugins: [request_id, envelope]\n", {"erp": ROUTES}
    )
    monkeypatch.setenv("ERP_URL", "http://erp.internal:8000")
    monkeypatch.setenv("ERP_KEY", "key-abcdef")
    monkeypatch.setenv("ERP_SECRET", "secret-123456")
    out = io.StringIO()
    code = run(["explain", *argv, "--config", str(root)], stdout=out, stderr=out)
    text = out.getvalue()
    assert "secret-123456" not in text and "key-abcdef" not in text
    return code, json.loads(text)


def test_explain_shows_upstream_request_and_mapped_response(tmp_path, monkeypatch):
    sample = tmp_path / "sample.json"
    sample.write_text('{"data": {"name": "INV-1", "grand_total": 10}}')
    code, result = explain(
        tmp_path, monkeypatch, "GET", "/api/erp/invoices/INV%2F1", "--upstream-response", str(sample)
    )
    assert code == 0
    assert result["route"]["name"] == "erp.invoice" and result["route"]["file"] == "routes.d/erp.yaml:8"
    upstream = result["upstream_request"]
    assert upstream["method"] == "GET"
    assert upstream["url"].endswith("/api/resource/Sales%20Invoice/INV%2F1")
    assert upstream["headers"]["authorization"] == "****"
    assert result["response"]["status"] == 200
    assert result["response"]["body"]["data"] == {"name": "INV-1", "grand_total": 10}


def test_explain_names_the_failing_expression(tmp_path, monkeypatch):
    sample = tmp_path / "sample.json"
    sample.write_text('{"data": [1, 2]}')
    code, result = explain(tmp_path, monkeypatch, "GET", "/api/erp/broken", "--upstream-response", str(sample))
    assert result["response"]["status"] == 502
    assert result["mapping_error"].startswith("routes.d/erp.yaml:14: route erp.broken:")
    assert "body.data.items()" in result["mapping_error"]


def test_explain_unknown_route_exits_1(tmp_path, monkeypatch):
    code, result = explain(tmp_path, monkeypatch, "GET", "/api/nothing")
    assert code == 1 and result["response"]["status"] == 404


def test_explain_masks_a_query_secret_in_its_url_encoded_form(tmp_path, monkeypatch):
    routes = """
backend: partner
prefix: /partner
upstream:
  url: http://partner.internal
  auth: {style: query, param: key, value: "${PARTNER_KEY}"}
routes:
  - {name: items, method: GET, path: /items, upstream_path: /v1/items}
"""
    root = write_config(tmp_path / "cfg", "version: 1\nplugins: [envelope]\n", {"partner": routes})
    monkeypatch.setenv("PARTNER_KEY", "k/ey+with=chars&1")
    out = io.StringIO()
    assert run(["explain", "GET", "/partner/items", "--config", str(root)], stdout=out, stderr=out) == 0
    text = out.getvalue()
    assert "k/ey+with=chars&1" not in text and "k%2Fey%2Bwith%3Dchars%261" not in text
    assert json.loads(text)["upstream_request"]["url"] == "http://partner.internal/v1/items?key=****"
