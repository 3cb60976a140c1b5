"""The OpenAPI document: generated from the config, valid, served and printed alike, and fuzzed by schemathesis."""

from __future__ import annotations

import io
import json

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from openapi_spec_validator import validate
from schemathesis.specs.openapi.checks import response_schema_conformance

from gateway_engine.cli.main import run
from gateway_engine.endpoints.docs import openapi_30
from tests.servers import write_config

GATEWAY = """version: 1
base_path: /api
plugins: [request_id, {auth: {accept: [api_key, jwt]}}, envelope]
auth:
  api_keys: [{name: app, key: "${APP_KEY}"}]
  jwt: {secret: "${JWT_SECRET}", algorithms: [HS256]}
docs: {title: Shop API}
"""
SHOP = """backend: shop
prefix: /shop
upstream: {url: "URL"}
routes:
  - {name: list-orders, method: GET, path: /orders, description: List orders., request: {query: {allow: [status, limit]}}}
  - {name: get-order, method: GET, path: "/orders/{id}", params: {id: {pattern: "[0-9]+"}}}
  - {name: update-order, method: [PUT, PATCH], path: "/orders/{id}"}
  - {name: report, method: GET, path: "/reports/{kind}", params: {kind: {enum: [daily, weekly]}}}
  - name: create-order
    method: POST
    path: /orders
    request:
      schema:
        type: object
        required: [sku, qty]
        additionalProperties: false
        properties:
          sku: {type: string, minLength: 1}
          qty: {type: integer, minimum: 1, maximum: 99}
          ship_to: {$ref: "#/$defs/address"}
        $defs:
          address: {type: object, required: [city], properties: {city: {type: string}}}
  - {name: files, method: GET, path: "/files/{rest:path}", auth: none, plugins: {envelope: false}}
  - {name: public, method: GET, path: /public, auth: none}
  - {name: maybe, method: GET, path: /maybe, auth: {optional: true}}
  - {name: tenant, method: GET, path: /tenant, auth: {require_client_key: true, api_key_header: x-platform-key}}
"""
ENV = {"APP_KEY": "app-key-1", "JWT_SECRET": "j" * 32}


@pytest.fixture
def shop(gateway, upstream) -> str:
    return gateway(GATEWAY, {"shop": SHOP.replace("URL", upstream)}, env=ENV)


def test_openapi_served_document_is_valid_and_describes_routes(shop):
    r = httpx.get(f"{shop}/api/openapi.json")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    doc = r.json()
    validate(doc)  # OpenAPI 3.1
    validate(openapi_30(doc))  # the rendering the docs page loads
    assert doc["openapi"] == "3.1.0" and doc["info"]["title"] == "Shop API"
    paths = doc["paths"]
    listing = paths["/api/shop/orders"]["get"]
    assert listing["summary"] == "List orders." and listing["tags"] == ["shop"]
    assert [(p["name"], p["in"], p["required"]) for p in listing["parameters"]] == [
        ("limit", "query", False),
        ("status", "query", False),
    ]
    assert listing["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/SuccessEnvelope"
    }
    assert listing["responses"]["default"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorEnvelope"
    }
    item = paths["/api/shop/orders/{id}"]
    assert set(item) == {"get", "put", "patch"}
    assert item["get"]["parameters"] == [
        {"name": "id", "in": "path", "required": True, "schema": {"type": "string", "pattern": "^(?:[0-9]+)$"}}
    ]
    assert (
        item["put"]["operationId"] == "shop.update-order.put"
        and item["patch"]["operationId"] == "shop.update-order.patch"
    )
    report = paths["/api/shop/reports/{kind}"]["get"]
    assert report["parameters"][0]["schema"] == {"type": "string", "enum": ["daily", "weekly"]}
    files = paths["/api/shop/files/{rest}"]["get"]
    assert "content" not in files["responses"]["200"]  # envelope off: the upstream's answer as is
    assert "the rest of the path" in files["parameters"][0]["description"].lower()
    assert "/api/health" in paths and "/api/health/backends" in paths


def test_openapi_security_per_route(shop):
    doc = httpx.get(f"{shop}/api/openapi.json").json()
    schemes = doc["components"]["securitySchemes"]
    assert schemes["apiKey"] == {**schemes["apiKey"], "type": "apiKey", "in": "header", "name": "x-api-key"}
    assert schemes["bearerJwt"] == {**schemes["bearerJwt"], "type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    paths = doc["paths"]
    assert paths["/api/shop/orders"]["get"]["security"] == [{"apiKey": []}, {"bearerJwt": []}]
    assert set(paths["/api/shop/orders"]["get"]["responses"]) >= {"401", "403"}
    assert paths["/api/shop/public"]["get"]["security"] == []
    assert "401" not in paths["/api/shop/public"]["get"]["responses"]
    assert paths["/api/shop/maybe"]["get"]["security"] == [{"apiKey": []}, {"bearerJwt": []}, {}]
    assert paths["/api/shop/tenant"]["get"]["security"] == [{"apiKey.x-platform-key": [], "clientKey": []}]
    assert (
        schemes["apiKey.x-platform-key"]["name"] == "x-platform-key"
        and schemes["clientKey"]["name"] == "client-x-api-key"
    )
    assert "app-key-1" not in json.dumps(doc) and "jjjj" not in json.dumps(doc)


def test_openapi_request_body_schema(shop):
    doc = httpx.get(f"{shop}/api/openapi.json").json()
    op = doc["paths"]["/api/shop/orders"]["post"]
    assert op["requestBody"]["required"] is True
    ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert ref == "#/components/schemas/shop.create-order.body"
    body = doc["components"]["schemas"]["shop.create-order.body"]
    assert body["required"] == ["sku", "qty"] and "$defs" not in body
    assert body["properties"]["ship_to"] == {"$ref": "#/components/schemas/shop.create-order.body.address"}
    assert doc["components"]["schemas"]["shop.create-order.body.address"]["required"] == ["city"]
    assert "400" in op["responses"]
    # the gateway enforces what the document says
    r = httpx.post(f"{shop}/api/shop/orders", json={"sku": "", "qty": 0}, headers={"x-api-key": "app-key-1"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "VALIDATION_ERROR"


def test_openapi_same_shape_paths_are_one_path(tmp_path):
    """OpenAPI forbids /a/{id} next to /a/{key}: the second route's operations join the first path, renamed."""
    routes = (
        "backend: b\nprefix: /b\nupstream: {url: 'http://127.0.0.1:9'}\nroutes:\n"
        "  - {name: get, method: GET, path: '/a/{id}'}\n  - {name: put, method: PUT, path: '/a/{key}'}\n"
    )
    root = write_config(tmp_path, "version: 1\n", {"b": routes})
    out = io.StringIO()
    assert run(["openapi", "--config", str(root)], stdout=out) == 0
    doc = json.loads(out.getvalue())
    validate(doc)
    assert [p for p in doc["paths"] if p.startswith("/b/")] == ["/b/a/{id}"]
    assert doc["paths"]["/b/a/{id}"]["put"]["parameters"][0]["name"] == "id"


def test_openapi_cli_prints_the_served_document(shop, gateway, upstream, tmp_path):
    root = write_config(tmp_path / "cli", GATEWAY, {"shop": SHOP.replace("URL", upstream)})
    out = io.StringIO()
    assert run(["openapi", "--config", str(root)], stdout=out) == 0
    printed = json.loads(out.getvalue())
    served = httpx.get(f"{gateway(GATEWAY, {'shop': SHOP.replace('URL', upstream)})}/api/openapi.json").json()
    assert printed == served


def test_openapi_cli_reports_config_errors(tmp_path):
    root = write_config(tmp_path, "version: 1\nbogus: true\n", {})
    err = io.StringIO()
    assert run(["openapi", "--config", str(root)], stdout=io.StringIO(), stderr=err) == 1
    assert "gateway.yaml:2:1: bogus: unknown key" in err.getvalue()


def test_openapi_disabled_with_docs(gateway, upstream):
    base = gateway(
        GATEWAY.replace("docs: {title: Shop API}", "docs: {enabled: false}"),
        {"shop": SHOP.replace("URL", upstream)},
        env=ENV,
    )
    assert httpx.get(f"{base}/api/openapi.json").status_code == 404
    assert httpx.get(f"{base}/api/docs").status_code == 404


def test_openapi_schemathesis_finds_no_server_error(shop):
    """Property-based: generated requests for every operation never get a 500, and answers match the document."""
    schema = schemathesis.openapi.from_url(f"{shop}/api/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10
    checked = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=15, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck)
        )
        def check(case):
            response = case.call(base_url=shop, headers={"x-api-key": "app-key-1"}, timeout=5)
            assert response.status_code != 500, (case.method, case.formatted_path, response.text)
            if response.status_code < 500:  # 502/503/504 are the upstream's doing, documented as `default`
                case.validate_response(response, checks=[response_schema_conformance])
            assert response.status_code != 405, (case.method, case.formatted_path)  # documented means routed
            checked.append(response.status_code)

        check()
    assert any(s < 300 for s in checked) and any(400 <= s < 500 for s in checked)
