"""Bounded work per client body (D4, D6): schema validation stops early and answers small details, and JSON
nested past ``limits.body_depth`` is a 400 (client body) or a 502 (upstream answer), never a 500."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway_engine import create_app
from tests.servers import serve

ROOT = Path(__file__).resolve().parent.parent
GATEWAY = "version: 1\nplugins: [envelope]\n"
TIMEOUT = 120  # only keeps a failing run from hanging; nothing here is timed

ROUTES = """
backend: svc
prefix: /svc
upstream: {{url: "{url}"}}
routes:
  - name: strings
    method: POST
    path: /strings
    upstream_path: /v1/strings
    request:
      schema: {{type: array, items: {{type: string}}}}
  - name: tree
    method: POST
    path: /tree
    upstream_path: /v1/tree
    request:
      schema: {{$defs: {{n: {{type: [array, number, object], items: {{$ref: "#/$defs/n"}},
                             additionalProperties: {{$ref: "#/$defs/n"}}}}}}, $ref: "#/$defs/n"}}
  - name: any
    method: POST
    path: /any
    upstream_path: /v1/any
    request:
      schema:
        type: object
        properties:
          input: {{anyOf: [{{type: string}}, {{type: array, items: {{type: string}}}}]}}
  - name: unique
    method: POST
    path: /unique
    upstream_path: /v1/unique
    request:
      schema: {{type: array, uniqueItems: true}}
  - name: form
    method: POST
    path: /form
    upstream_path: /v1/form
    request: {{encoding: form}}
  - name: wrapped
    method: POST
    path: /wrapped
    upstream_path: /v1/wrapped
    request:
      body: {{wrapped: "{{{{ body }}}}"}}
  - name: merged
    method: POST
    path: /merged
    upstream_path: /v1/merged
    request:
      body: "{{{{ merge(body, {{'extra': 1}}) }}}}"
  - name: parsed
    method: POST
    path: /parsed
    upstream_path: /v1/parsed
    request:
      body: {{value: "{{{{ body.text | fromjson }}}}"}}
"""


def nested(depth: int) -> bytes:
    """``depth`` levels of containers: ``[[...[1]...]]`` (depth 1 is ``[1]``)."""
    return b"[" * depth + b"1" + b"]" * depth


def nested_objects(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


@pytest.fixture
def svc(gateway, upstream):
    return gateway(GATEWAY, {"svc": ROUTES.format(url=upstream)})


def _post(url: str, content: bytes) -> httpx.Response:
    return httpx.post(url, content=content, headers={"content-type": "application/json"}, timeout=TIMEOUT)


def _assert_small_validation_error(r: httpx.Response) -> None:
    assert r.status_code == 400, r.text[:500]
    error = r.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert 1 <= len(error["details"]) <= 20
    assert all(len(d["message"]) <= 200 and len(d["path"]) <= 200 for d in error["details"])
    assert len(r.content) < 16_384


# -- D4: validation is bounded ---------------------------------------------------------------------------


def test_validation_of_a_megabyte_of_wrong_items_answers_few_small_details(svc, recorder):
    body = b"[" + b"1," * 500_000 + b"1]"
    answers: dict[str, httpx.Response] = {}
    big = threading.Thread(target=lambda: answers.update(big=_post(svc + "/svc/strings", body)))
    big.start()
    health = httpx.get(svc + "/health", timeout=TIMEOUT)  # answered while the big body is validated
    big.join(TIMEOUT)
    assert health.status_code == 200
    r = answers["big"]
    _assert_small_validation_error(r)
    assert r.json()["error"]["details"][0] == {"path": "$[0]", "message": "must be of type 'string'"}
    assert recorder.requests == []


def test_validation_message_never_repeats_the_instance(svc):
    r = _post(svc + "/svc/strings", json.dumps({"x" * 5000: "y" * 5000}).encode())
    _assert_small_validation_error(r)
    assert "xxxxxxxxxx" not in r.text and "yyyyyyyyyy" not in r.text
    assert r.json()["error"]["details"] == [{"path": "$", "message": "must be of type 'array'"}]


def test_validation_inside_any_of_stays_bounded(svc):
    r = _post(svc + "/svc/any", b'{"input": [' + b"1," * 300_000 + b"1]}")
    _assert_small_validation_error(r)
    assert r.json()["error"]["details"][0]["path"] == "$.input"


def test_unique_items_is_checked_in_linear_time_and_keeps_json_equality(svc):
    many = json.dumps([{"n": i} for i in range(40_000)]).encode()
    assert _post(svc + "/svc/unique", many).status_code == 200
    r = _post(svc + "/svc/unique", many[:-1] + b', {"n": 7}]')
    _assert_small_validation_error(r)
    assert _post(svc + "/svc/unique", b"[1, 1.0]").status_code == 400  # JSON Schema: 1 and 1.0 are equal
    assert _post(svc + "/svc/unique", b"[1, true, 0, false]").status_code == 200  # but true is not 1


def test_shipped_chat_schema_answers_a_hostile_body_small(tmp_path):
    root = tmp_path / "shipped"
    root.mkdir()
    (root / "routes.d").mkdir()
    shutil.copy(ROOT / "routes.d" / "ai.yaml", root / "routes.d" / "ai.yaml")
    (root / "gateway.yaml").write_text(GATEWAY)
    hostile = [
        b'{"model": "gpt-4o", "messages": [' + b"1," * 400_000 + b"1]}",
        b'{"model": "gpt-4o", "messages": [' + b'{"role": 1},' * 100_000 + b"{}]}",
        b"[" + b'"x",' * 300_000 + b'"x"]',
    ]
    env = {"OPENAI_API_URL": "http://127.0.0.1:9", "OPENAI_API_KEY": "sk-test-key"}
    with serve(create_app(str(root), env)) as url:
        for body in hostile:
            _assert_small_validation_error(_post(url + "/ai/chat", body))
        r = _post(url + "/ai/embeddings", b'{"model": "text-embedding-3-small", "input": [' + b"1," * 300_000 + b"1]}")
        _assert_small_validation_error(r)


# -- D6: nesting depth -----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/svc/strings", "/svc/tree", "/svc/form", "/svc/wrapped", "/svc/merged"])
@pytest.mark.parametrize("depth", [65, 300, 1000, 1100])
def test_a_body_nested_past_the_limit_is_400(svc, recorder, path, depth):
    for body in (nested(depth), nested_objects(depth)):
        r = _post(svc + path, body)
        assert r.status_code == 400, r.text[:300]
        assert r.json()["error"]["code"] == "BODY_TOO_DEEP"
        assert "64" in r.json()["error"]["message"]
    assert recorder.requests == []


@pytest.mark.parametrize("path", ["/svc/tree", "/svc/form", "/svc/wrapped", "/svc/merged"])
def test_a_body_at_exactly_the_limit_passes(svc, recorder, path):
    r = _post(svc + path, nested_objects(64))
    assert r.status_code == 200, r.text[:300]
    assert recorder.last["path"] == "/v1" + path.removeprefix("/svc")


def test_the_depth_limit_is_configurable(gateway, upstream, recorder):
    gw = gateway("version: 1\nplugins: [envelope]\nlimits: {body_depth: 5}\n", {"svc": ROUTES.format(url=upstream)})
    assert _post(gw + "/svc/wrapped", nested(5)).status_code == 200
    assert json.loads(recorder.last["body"]) == {"wrapped": json.loads(nested(5))}
    r = _post(gw + "/svc/wrapped", nested(6))
    assert (r.status_code, r.json()["error"]["code"]) == (400, "BODY_TOO_DEEP")


def test_fromjson_of_a_deeply_nested_string_is_not_a_500(svc, recorder):
    text = nested(300).decode()
    r = _post(svc + "/svc/parsed", json.dumps({"text": text}).encode())
    assert r.status_code == 400, r.text[:300]
    assert r.json()["error"]["code"] == "BODY_TOO_DEEP"
    assert recorder.requests == []
    assert _post(svc + "/svc/parsed", json.dumps({"text": "[1, [2]]"}).encode()).status_code == 200
    assert json.loads(recorder.last["body"]) == {"value": [1, [2]]}


def _deep_upstream(depth: int):
    async def deep(request: Request) -> Response:
        status = int(request.query_params.get("status", "200"))
        return Response(nested_objects(depth), status_code=status, media_type="application/json")

    return Starlette(routes=[Route("/deep", deep)])


MAPPED = """
backend: deep
prefix: /deep
upstream: {{url: "{url}"}}
routes:
  - name: mapped
    method: GET
    path: /mapped
    upstream_path: /deep
    response: {{data: "{{{{ body }}}}"}}
  - name: errors
    method: GET
    path: /errors
    upstream_path: /deep
    response:
      error: {{message: "{{{{ body.a.a if body is mapping else body }}}}"}}
  - name: plain
    method: GET
    path: /plain
    upstream_path: /deep
"""


@pytest.mark.parametrize("depth", [65, 300, 1000])
def test_a_mapped_upstream_answer_nested_past_the_limit_is_502(gateway, depth):
    with serve(_deep_upstream(depth)) as url:
        gw = gateway(GATEWAY, {"deep": MAPPED.format(url=url)})
        r = httpx.get(gw + "/deep/mapped", timeout=TIMEOUT)
        assert r.status_code == 502, r.text[:300]
        assert r.json()["error"]["code"] == "UPSTREAM_ERROR"
        for path in ("/deep/errors?status=400", "/deep/plain?status=400"):  # an error page: never a 500
            r = httpx.get(gw + path, timeout=TIMEOUT)
            assert r.status_code == 400, r.text[:300]
            assert r.json()["success"] is False


def test_a_mapped_upstream_answer_at_the_limit_passes(gateway):
    with serve(_deep_upstream(64)) as url:
        gw = gateway(GATEWAY, {"deep": MAPPED.format(url=url)})
        r = httpx.get(gw + "/deep/mapped", timeout=TIMEOUT)
        assert r.status_code == 200, r.text[:300]
        assert r.json()["data"] == json.loads(nested_objects(64))


def test_workflow_input_validation_is_bounded_too():
    """The workflow API validates its input the same bounded way (called directly: no Temporal needed)."""
    from gateway_engine import load_config
    from gateway_engine.workflows.access import Caller
    from gateway_engine.workflows.definitions import CATALOG
    from gateway_engine.workflows.operations import _start_request

    catalog = load_config(ROOT, {}).state(CATALOG)
    payload = {"workflow": "CopilotAction", "input": {"action": [1] * 300_000, "data": [1] * 300_000}}
    with pytest.raises(Exception) as caught:
        _start_request(catalog, Caller(None), payload)
    details = caught.value.details
    assert caught.value.code == "VALIDATION_ERROR" and 1 <= len(details) <= 20
    assert {d["path"] for d in details} == {"$.input.action", "$.input.data"}
    assert all(len(d["message"]) <= 200 for d in details)
