"""The mapping sandbox reads a mapping's keys before its attributes (``body.items`` is the field, as in JSONPath),
and a template result with no JSON form is a 502 MAPPING_ERROR naming route and file:line, never a 500."""

from __future__ import annotations

import io
import json
import logging

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway_engine.cli.main import run
from tests.servers import serve, write_config

GATEWAY = "version: 1\nbase_path: /api\nplugins: [request_id, envelope]\n"
ANSWER = {
    "items": [1, 2],
    "keys": ["k"],
    "values": {"v": 1},
    "get": "got",
    "update": 7,
    "nested": {"plain": True},
}
NAMES = ["items", "keys", "values", "get", "update"]

ROUTES = """
backend: shop
prefix: /shop
upstream: {url: "UPSTREAM"}
routes:
  - {name: items, method: GET, path: /items, upstream_path: /answer, response: {data: "{{ body.items }}"}}
  - {name: keys, method: GET, path: /keys, upstream_path: /answer, response: {data: "{{ body.keys }}"}}
  - {name: values, method: GET, path: /values, upstream_path: /answer, response: {data: "{{ body.values }}"}}
  - {name: get, method: GET, path: /get, upstream_path: /answer, response: {data: "{{ body.get }}"}}
  - {name: update, method: GET, path: /update, upstream_path: /answer, response: {data: "{{ body.update }}"}}
  - {name: dict-method, method: GET, path: /dict-method, upstream_path: /answer,
     response: {data: "{{ body.nested.items }}"}}
  - {name: meta-method, method: GET, path: /meta-method, upstream_path: /answer,
     response: {meta: {page: "{{ body.nested.keys }}"}}}
  - {name: method-call, method: GET, path: /method-call, upstream_path: /answer,
     response: {data: "{{ body.nested.get('plain') }}"}}
"""
LINES = {"dict-method": 11, "meta-method": 13}


@pytest.fixture(scope="module")
def answer_api():
    app = Starlette(routes=[Route("/answer", lambda request: JSONResponse(ANSWER))])
    with serve(app) as url:
        yield url


@pytest.fixture
def shop(gateway, answer_api):
    return gateway(GATEWAY, {"shop": ROUTES.replace("UPSTREAM", answer_api)})


@pytest.mark.parametrize("name", NAMES)
def test_mapping_keys_dotted_name_is_the_key_not_the_dict_method(shop, name):
    r = httpx.get(f"{shop}/api/shop/{name}")
    assert r.status_code == 200, r.text
    assert r.json()["data"] == ANSWER[name]


def test_mapping_keys_method_still_callable_when_no_such_key(shop):
    r = httpx.get(f"{shop}/api/shop/method-call")
    assert r.status_code == 200 and r.json()["data"] is True


@pytest.mark.parametrize("route", ["dict-method", "meta-method"])
def test_mapping_keys_unserialisable_result_is_502_naming_route_and_line(shop, route, caplog):
    with caplog.at_level(logging.WARNING, logger="gateway_engine"):
        r = httpx.get(f"{shop}/api/shop/{route}")
    assert r.status_code == 502, r.text
    error = r.json()["error"]
    assert error["code"] == "MAPPING_ERROR" and f"shop.{route}" in error["message"]
    assert f"routes.d/shop.yaml:{LINES[route]}" in error["message"]  # the config's place, not the server's paths
    assert "/tmp/" not in error["message"]
    assert "built-in method" not in r.text and "builtin_function" not in r.text
    logged = [rec.getMessage() for rec in caplog.records if "mapping failed" in rec.getMessage()]
    assert any(f"routes.d/shop.yaml:{LINES[route]}: route shop.{route}" in m for m in logged), logged


def test_mapping_keys_explain_reports_mapping_error_without_traceback(tmp_path):
    root = write_config(tmp_path / "cfg", GATEWAY, {"shop": ROUTES.replace("UPSTREAM", "http://127.0.0.1:9")})
    sample = tmp_path / "answer.json"
    sample.write_text(json.dumps(ANSWER))
    out, err = io.StringIO(), io.StringIO()
    code = run(
        ["explain", "GET", "/api/shop/meta-method", "--config", str(root), "--upstream-response", str(sample)],
        stdout=out,
        stderr=err,
    )
    assert code == 0 and "Traceback" not in out.getvalue() + err.getvalue()
    result = json.loads(out.getvalue())
    assert result["response"]["status"] == 502
    assert result["response"]["body"]["error"]["code"] == "MAPPING_ERROR"
    assert "routes.d/shop.yaml:13: route shop.meta-method: the mapped meta cannot be encoded" in result["mapping_error"]
    assert "the value has no key of that name" in result["mapping_error"]
