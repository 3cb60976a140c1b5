"""Aggregated routes against real backends: concurrency, dependency order, fallbacks, the status rule,
per-backend timeouts, per-backend upstream auth, and what `validate` refuses."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from openapi_spec_validator import validate

from gateway_engine import ConfigErrors, load_config
from gateway_engine.cli.main import run
from gateway_engine.config.documents import load_document
from gateway_engine.config.schema import validate_document
from gateway_engine.config.secrets import MASK
from gateway_engine.foundation.metrics import REGISTRY
from tests.aggregation_support import Backend, backend_file
from tests.servers import serve, write_config

GATEWAY = "version: 1\nbase_path: /api\nplugins: [request_id, envelope]\n"
KEYED = (
    "version: 1\nbase_path: /api\nplugins: [request_id, {auth: {accept: [api_key]}}, envelope]\n"
    "auth:\n  api_keys:\n    - {name: web, key: client-key-7f3a9c, scopes: ['*']}\n"
)
ENV = {"SHOP_TOKEN": "shop-token-1", "SHIP_KEY": "ship-key-2", "BOOKS_KEY": "bk", "BOOKS_SECRET": "bs-3"}


@pytest.fixture(scope="module")
def backends() -> Iterator[dict[str, tuple[Backend, str]]]:
    made = {name: Backend() for name in ("shop", "ship", "books")}
    with serve(made["shop"].app()) as shop, serve(made["ship"].app()) as ship, serve(made["books"].app()) as books:
        yield {"shop": (made["shop"], shop), "ship": (made["ship"], ship), "books": (made["books"], books)}


@pytest.fixture
def fakes(backends) -> dict[str, Backend]:
    for backend, _ in backends.values():
        backend.reset()
    return {name: backend for name, (backend, _) in backends.items()}


def files(backends, overview: str, *, books_url: str | None = None, ship_extra: str = "") -> dict[str, str]:
    return {
        "shop": backend_file("shop", backends["shop"][1], "{style: bearer, token: '${SHOP_TOKEN}'}"),
        "ship": backend_file(
            "ship", backends["ship"][1], "{style: header, header: x-ship-key, value: '${SHIP_KEY}'}", extra=ship_extra
        ),
        "books": backend_file(
            "books",
            books_url or backends["books"][1],
            "{style: template, header: Authorization, value: 'token {{ env.BOOKS_KEY }}:{{ env.BOOKS_SECRET }}'}",
        ),
        "overview": "backend: overview\nprefix: /overview\nroutes:\n" + overview,
    }


PAGE = """\
  - name: page
    method: GET
    path: /orders/{id}
    params: {id: {pattern: "[a-z0-9-]{1,20}"}}
    timeout: 5s
    backends:
      - name: order
        backend: shop
        path: /orders/{id}
        response: {target: order, allow: [id, status, total]}
      - name: tracking
        backend: ship
        path: /track/{id}
        response: {group: tracking}
        required: false
        fallback: {state: unknown}
      - name: invoice
        backend: books
        path: /invoices
        request:
          query: {set: {po: "{{ results.order.number }}"}}
        response: {target: data, allow: [name, outstanding], rename: {name: invoice}}
        required: false
"""


def _answers(fakes: dict[str, Backend], delay: float = 0.0) -> None:
    fakes["shop"].answer(
        "/orders/o1", {"order": {"id": "o1", "number": "N-7", "status": "paid", "total": 42, "x": 1}}, delay=delay
    )
    fakes["ship"].answer("/track/o1", {"state": "on the way", "eta": "12:00"}, delay=delay)
    fakes["books"].answer("/invoices", {"data": {"name": "INV-1", "outstanding": 0, "secret": "no"}}, delay=delay)


def test_aggregation_merges_in_declaration_order_with_meta(gateway, backends, fakes):
    _answers(fakes)
    url = gateway(GATEWAY, files(backends, PAGE), ENV)
    answer = httpx.get(url + "/api/overview/orders/o1")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["success"] is True
    assert body["data"] == {
        "id": "o1",
        "status": "paid",
        "total": 42,
        "tracking": {"state": "on the way", "eta": "12:00"},
        "invoice": "INV-1",
        "outstanding": 0,
    }
    assert list(body["data"]) == ["id", "status", "total", "tracking", "invoice", "outstanding"]
    meta = body["meta"]["backends"]
    assert [(b["name"], b["backend"], b["status"], b["fallback"]) for b in meta] == [
        ("order", "shop", 200, False),
        ("tracking", "ship", 200, False),
        ("invoice", "books", 200, False),
    ]
    assert all(isinstance(b["latency_ms"], float) and "error" not in b for b in meta)
    assert body["meta"]["source"] == "overview"
    assert fakes["books"].requests[0]["query"] == "po=N-7"  # the order's field, not the path parameter


def test_aggregation_independent_backends_run_concurrently(gateway, backends, fakes):
    _answers(fakes, delay=0.5)
    overview = PAGE.replace('query: {set: {po: "{{ results.order.number }}"}}', "query: none")
    url = gateway(GATEWAY, files(backends, overview), ENV)
    httpx.get(url + "/api/overview/orders/o1")  # warm the pools
    for fake in fakes.values():
        fake.requests.clear()
    started = time.monotonic()
    answer = httpx.get(url + "/api/overview/orders/o1")
    elapsed = time.monotonic() - started
    assert answer.status_code == 200 and answer.json()["data"]["invoice"] == "INV-1"
    calls = [fake.requests[0] for fake in fakes.values()]
    # every call started before any had finished: they overlapped (three in sequence would take 1.5 s)
    assert max(c["started"] for c in calls) < min(c["finished"] for c in calls)
    assert elapsed < 1.3, elapsed


def test_aggregation_a_dependent_waits_for_its_dependency_only(gateway, backends, fakes):
    _answers(fakes)
    fakes["shop"].answer(
        "/orders/o1", {"order": {"id": "o1", "number": "N-7", "status": "paid", "total": 1}}, delay=0.4
    )
    url = gateway(GATEWAY, files(backends, PAGE), ENV)
    assert httpx.get(url + "/api/overview/orders/o1").status_code == 200
    order, tracking, invoice = (fakes[n].requests[0] for n in ("shop", "ship", "books"))
    assert invoice["started"] >= order["finished"]  # invoice reads results.order: it waited
    assert tracking["started"] < order["finished"]  # tracking reads nothing: it did not


def test_aggregation_bad_input_is_a_clear_400_and_calls_nothing(gateway, backends, fakes):
    _answers(fakes)
    posted = PAGE.replace("    method: GET\n    path: /orders/{id}", "    method: POST\n    path: /orders/{id}")
    url = gateway(GATEWAY, files(backends, posted), ENV)
    answer = httpx.post(url + "/api/overview/orders/NOT_OK")
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "INVALID_PARAMETER"
    answer = httpx.post(
        url + "/api/overview/orders/o1", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "INVALID_JSON"
    assert all(fake.requests == [] for fake in fakes.values())
    answer = httpx.post(url + "/api/overview/orders/o1", json={"note": "x"})  # a body is read once, for all calls
    assert answer.status_code == 200 and answer.json()["data"]["invoice"] == "INV-1"


def test_aggregation_optional_failure_answers_200_with_its_fallback(gateway, backends, fakes):
    _answers(fakes)
    fakes["ship"].answer("/track/o1", {"error": "down"}, status=500)
    url = gateway(GATEWAY, files(backends, PAGE), ENV)
    answer = httpx.get(url + "/api/overview/orders/o1")
    assert answer.status_code == 200
    body = answer.json()
    assert body["data"]["tracking"] == {"state": "unknown"} and body["data"]["invoice"] == "INV-1"
    tracking = body["meta"]["backends"][1]
    assert tracking == {**tracking, "name": "tracking", "status": 500, "fallback": True, "error": "BACKEND_ERROR"}
    assert answer.headers["cache-control"] == "no-store"  # a partial answer is never cached


def test_aggregation_optional_without_fallback_leaves_its_keys_out(gateway, backends, fakes):
    _answers(fakes)
    fakes["books"].answer("/invoices", {"data": "not an object"})
    url = gateway(GATEWAY, files(backends, PAGE), ENV)
    body = httpx.get(url + "/api/overview/orders/o1").json()
    assert "invoice" not in body["data"] and body["data"]["tracking"]["eta"] == "12:00"
    assert body["meta"]["backends"][2]["error"] == "UNEXPECTED_ANSWER" and body["meta"]["backends"][2]["fallback"]


def test_aggregation_required_failure_is_a_502_naming_the_backend(gateway, backends, fakes):
    _answers(fakes)
    fakes["shop"].answer("/orders/o1", {"message": "Order not found"}, status=404)
    fakes["ship"].answer("/track/o1", {"state": "slow"}, delay=3.0)
    url = gateway(GATEWAY, files(backends, PAGE), ENV)
    started = time.monotonic()
    answer = httpx.get(url + "/api/overview/orders/o1")
    assert time.monotonic() - started < 2.5  # the failure cancelled the slow call: nobody waits for it
    assert answer.status_code == 502
    body = answer.json()
    assert body["success"] is False and body["error"]["code"] == "BACKEND_FAILED"
    assert "'order'" in body["error"]["message"] and "404" in body["error"]["message"]
    assert body["error"]["details"] == [{"backend": "order", "status": 404, "code": "BACKEND_REJECTED"}]
    tracking, invoice = body["meta"]["backends"][1:]
    assert tracking["error"] == "CANCELLED" and tracking["status"] is None
    assert invoice["error"] in ("DEPENDENCY_FAILED", "CANCELLED") and fakes["books"].requests == []
    assert "cache-control" not in answer.headers and "etag" not in answer.headers


def test_aggregation_per_backend_timeout(gateway, backends, fakes):
    _answers(fakes)
    fakes["ship"].answer("/track/o1", {"state": "late"}, delay=3.0)
    overview = PAGE.replace(
        "        required: false\n        fallback", "        timeout: 300ms\n        required: false\n        fallback"
    )
    url = gateway(GATEWAY, files(backends, overview), ENV)
    started = time.monotonic()
    answer = httpx.get(url + "/api/overview/orders/o1")
    assert time.monotonic() - started < 2.5
    body = answer.json()
    assert answer.status_code == 200 and body["data"]["tracking"] == {"state": "unknown"}
    assert body["meta"]["backends"][1]["status"] == 504 and body["meta"]["backends"][1]["error"] == "UPSTREAM_TIMEOUT"
    fakes["ship"].answer("/track/o1", {"state": "on time"})  # the pool survived the cancelled call
    assert httpx.get(url + "/api/overview/orders/o1").json()["data"]["tracking"] == {"state": "on time"}
    # the same timeout on a required backend fails the route
    fakes["ship"].answer("/track/o1", {"state": "late"}, delay=3.0)
    required = overview.replace("        required: false\n        fallback: {state: unknown}\n", "", 1)
    url = gateway(GATEWAY, files(backends, required), ENV)
    answer = httpx.get(url + "/api/overview/orders/o1")
    assert answer.status_code == 502
    assert answer.json()["error"]["details"] == [{"backend": "tracking", "status": 504, "code": "UPSTREAM_TIMEOUT"}]


def test_aggregation_per_backend_auth_and_no_client_credentials(gateway, backends, fakes):
    _answers(fakes)
    url = gateway(KEYED, files(backends, PAGE), ENV)
    answer = httpx.get(
        url + "/api/overview/orders/o1",
        headers={"x-api-key": "client-key-7f3a9c", "cookie": "session=client-cookie-9", "if-none-match": '"v1"'},
    )
    assert answer.status_code == 200, answer.text
    seen = {name: fake.requests[0]["headers"] for name, fake in fakes.items()}
    assert seen["shop"]["authorization"] == "Bearer shop-token-1"
    assert seen["ship"]["x-ship-key"] == "ship-key-2" and "authorization" not in seen["ship"]
    assert seen["books"]["authorization"] == "token bk:bs-3"
    for headers in seen.values():
        assert "x-api-key" not in headers and "cookie" not in headers and "if-none-match" not in headers
        assert not any("client-key-7f3a9c" in v or "client-cookie-9" in v for v in headers.values())
        assert headers["x-request-id"] == answer.headers["x-request-id"]  # one request id across the calls
    assert httpx.get(url + "/api/overview/orders/o1").status_code == 401  # the route itself is still guarded


def test_aggregation_shares_the_backends_resilience(gateway, backends, fakes):
    """The calls go through the backend's own resilient transport: its breaker opens for its routes and for
    the aggregated calls alike, and retries apply as they do for a single route."""
    _answers(fakes)
    fakes["ship"].answer("/track/o1", {"error": "down"}, status=500)
    resilience = "circuit_breaker: {failures: 2, open_for: 60s}, retry: {attempts: 2, statuses: [500], backoff: 1ms}"
    url = gateway(GATEWAY, files(backends, PAGE, ship_extra=resilience), ENV)
    body = httpx.get(url + "/api/overview/orders/o1").json()
    assert body["meta"]["backends"][1]["status"] == 500 and len(fakes["ship"].requests) == 2  # retried once
    body = httpx.get(url + "/api/overview/orders/o1").json()
    assert body["success"] is True and body["data"]["tracking"] == {"state": "unknown"}
    calls = len(fakes["ship"].requests)
    body = httpx.get(url + "/api/overview/orders/o1").json()  # open now: not called
    assert body["meta"]["backends"][1] == {**body["meta"]["backends"][1], "status": 503, "error": "CIRCUIT_OPEN"}
    assert len(fakes["ship"].requests) == calls and body["data"]["invoice"] == "INV-1"
    single = httpx.get(url + "/api/ship/ping")  # the backend's own route shares the breaker
    assert single.status_code == 503 and single.json()["error"]["code"] == "CIRCUIT_OPEN"


def test_aggregation_complete_answers_carry_the_strictest_caching(gateway, backends, fakes):
    _answers(fakes)
    fakes["shop"].answer(
        "/orders/o1",
        {"order": {"id": "o1", "number": "N"}},
        headers={"cache-control": "max-age=60", "last-modified": "Tue, 01 Dec 2026 10:00:00 GMT"},
    )
    fakes["ship"].answer(
        "/track/o1",
        {"state": "x"},
        headers={"cache-control": "private, max-age=10", "last-modified": "Tue, 01 Dec 2026 12:00:00 GMT"},
    )
    fakes["books"].answer(
        "/invoices",
        {"data": {"name": "I"}},
        headers={"cache-control": "max-age=30", "last-modified": "Mon, 30 Nov 2026 09:00:00 GMT"},
    )
    url = gateway(GATEWAY, files(backends, PAGE), ENV)
    answer = httpx.get(url + "/api/overview/orders/o1")
    assert answer.status_code == 200
    assert answer.headers["cache-control"] == "private, max-age=10"
    assert answer.headers["last-modified"] == "Tue, 01 Dec 2026 12:00:00 GMT"
    fakes["books"].answer("/invoices", {"data": {"name": "I"}})  # one part without caching headers: none at all
    answer = httpx.get(url + "/api/overview/orders/o1")
    assert "cache-control" not in answer.headers and "last-modified" not in answer.headers


def test_aggregation_unconfigured_backends(gateway, backends, fakes):
    _answers(fakes)
    url = gateway(GATEWAY, files(backends, PAGE, books_url="${BOOKS_URL}"), ENV)
    body = httpx.get(url + "/api/overview/orders/o1").json()  # optional and unset: its part is missing
    assert body["success"] is True and "invoice" not in body["data"]
    assert body["meta"]["backends"][2] == {
        **body["meta"]["backends"][2],
        "status": 503,
        "error": "BACKEND_NOT_CONFIGURED",
    }
    required = "".join(PAGE.rsplit("        required: false\n", 1))  # the invoice is required now
    url = gateway(GATEWAY, files(backends, required, books_url="${BOOKS_URL}"), ENV)
    answer = httpx.get(url + "/api/overview/orders/o1")  # required and unset: 503 before any call
    assert answer.status_code == 503 and answer.json()["error"]["code"] == "BACKEND_NOT_CONFIGURED"
    assert answer.json()["error"]["details"] == {"missing": ["BOOKS_URL"]}


def test_aggregation_metrics_per_backend(gateway, backends, fakes):
    _answers(fakes)
    fakes["ship"].answer("/track/o1", {}, status=503)
    url = gateway(GATEWAY, files(backends, PAGE), ENV)
    httpx.get(url + "/api/overview/orders/o1")
    for backend in ("shop", "ship", "books"):
        count = REGISTRY.get_sample_value(
            "gateway_upstream_duration_seconds_count", {"route": "page", "backend": backend}
        )
        assert count and count >= 1
    assert (
        REGISTRY.get_sample_value("gateway_upstream_errors_total", {"route": "page", "backend": "ship", "kind": "5xx"})
        >= 1
    )


def _load_errors(tmp_path, backends, overview: str) -> str:
    root = write_config(tmp_path / "bad", GATEWAY, files(backends, overview))
    with pytest.raises(ConfigErrors) as info:
        load_config(root, ENV)
    return str(info.value)


def test_aggregation_validate_rejects_a_key_collision(tmp_path, backends):
    colliding = PAGE.replace("allow: [name, outstanding], rename: {name: invoice}", "allow: [status]")
    text = _load_errors(tmp_path, backends, colliding)
    assert "overview.yaml:" in text and "routes[0].backends[2].response.allow" in text
    assert "backends 'order' and 'invoice' both write key 'status'" in text


def test_aggregation_validate_rejects_a_cycle(tmp_path, backends):
    cyclic = PAGE.replace(
        "        path: /orders/{id}\n        response: {target: order",
        "        path: /orders/{id}\n        request: {headers: {x-po: '{{ results.invoice.name }}'}}\n        response: {target: order",
    )
    root = write_config(tmp_path / "bad", GATEWAY, files(backends, cyclic))
    out = io.StringIO()
    assert run(["validate", "--config", str(root)], stdout=out, stderr=out) == 1
    line = next(ln for ln in out.getvalue().splitlines() if "cycle" in ln)
    # file:line of the first backend's request, whose template closes the cycle
    assert line.startswith("routes.d/overview.yaml:13:") and "routes[0].backends[0].request" in line
    assert "order -> invoice -> order" in line


@pytest.mark.parametrize(
    "change, message",
    [
        (
            ("results.order.number", "results.shipment.number"),
            "results.shipment: this route has no backend entry named 'shipment'",
        ),
        (("results.order.number", "results[name]"), "read a result as results.<backend name>"),
        (("backend: ship", "backend: nowhere"), "no backend 'nowhere' with an upstream in routes.d"),
        (
            ("fallback: {state: unknown}", "fallback: {state: unknown}\n        timeout: 9s"),
            "9s is more than the route's total of 5s",
        ),
        (
            ("response: {group: tracking}\n        required: false", "response: {group: tracking}"),
            "a required backend has no fallback",
        ),
        (("response: {group: tracking}", "response: {target: x}"), "without `group`, list the keys"),
        (("path: /track/{id}", "path: /track/{delivery}"), "path names {delivery}"),
        (
            ("    timeout: 5s\n", "    timeout: 5s\n    upstream_path: /x\n"),
            "`upstream_path` belongs in a backend entry",
        ),
    ],
)
def test_aggregation_validate_rejects_bad_entries(tmp_path, backends, change, message):
    assert change[0] in PAGE
    assert message in _load_errors(tmp_path, backends, PAGE.replace(*change))


def test_aggregation_validate_rejects_routes_without_upstream_or_backends(tmp_path, backends):
    text = _load_errors(tmp_path, backends, "  - {name: lone, method: GET, path: /lone}\n")
    assert "routes[0]" in text and "declares no `upstream`" in text
    text = _load_errors(tmp_path, backends, "  - {name: lone, method: GET, path: /lone, timeout: 2s}\n")
    assert "`timeout` is the total time of a route's `backends`" in text


def test_aggregation_explain_shows_every_call_and_the_merged_answer(tmp_path, backends, monkeypatch):
    root = write_config(tmp_path / "cfg", GATEWAY, files(backends, PAGE))
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    order = tmp_path / "order.json"
    order.write_text('{"order": {"id": "o1", "number": "N-7", "status": "paid", "total": 3}}')
    tracking = tmp_path / "tracking.json"
    tracking.write_text('{"state": "near"}')
    invoice = tmp_path / "invoice.json"
    invoice.write_text('{"data": {"name": "INV-9", "outstanding": 5}}')
    out = io.StringIO()
    argv = ["explain", "GET", "/api/overview/orders/o1", "--config", str(root), "--upstream-response", str(tracking)]
    argv += ["--call-response", f"order={order}", "--call-response", f"invoice={invoice}"]
    assert run(argv, stdout=out, stderr=out) == 0, out.getvalue()
    result = json.loads(out.getvalue())
    calls = {c["call"]: c["request"] for c in result["upstream_requests"]}
    assert list(calls) == ["order", "tracking", "invoice"]
    assert calls["order"]["url"] == backends["shop"][1] + "/orders/o1"
    assert calls["order"]["headers"]["authorization"] == MASK  # upstream auth is masked
    assert calls["invoice"]["url"] == backends["books"][1] + "/invoices?po=N-7"
    assert "shop-token-1" not in out.getvalue() and "bs-3" not in out.getvalue()
    body = result["response"]["body"]
    assert body["data"] == {
        "id": "o1",
        "status": "paid",
        "total": 3,
        "tracking": {"state": "near"},
        "invoice": "INV-9",
        "outstanding": 5,
    }
    assert [b["status"] for b in body["meta"]["backends"]] == [200, 200, 200]


def test_aggregation_openapi_describes_the_merged_answer(gateway, backends, fakes):
    url = gateway(GATEWAY, files(backends, PAGE), ENV)
    spec = httpx.get(url + "/api/openapi.json").json()
    validate(spec)
    op = spec["paths"]["/api/overview/orders/{id}"]["get"]
    schema = op["responses"]["200"]["content"]["application/json"]["schema"]
    data = schema["allOf"][1]["properties"]["data"]
    assert list(data["properties"]) == ["id", "status", "total", "tracking", "invoice", "outstanding"]
    assert "backend `tracking` (ship, optional" in data["properties"]["tracking"]["description"]
    assert "backends" in schema["allOf"][1]["properties"]["meta"]["properties"]
    assert "BACKEND_FAILED" in op["responses"]["502"]["description"]


def test_aggregation_logs_every_backend_call_with_the_request(gateway, backends, fakes, tmp_path):
    _answers(fakes)
    log = tmp_path / "gateway.log"
    chain = f"version: 1\nbase_path: /api\nplugins: [request_id, {{logging: {{file: '{log}', buffer_bytes: 1}}}}, envelope]\n"
    url = gateway(chain, files(backends, PAGE), ENV)
    answer = httpx.get(url + "/api/overview/orders/o1")
    line = json.loads(log.read_text().splitlines()[-1])
    assert line["route"] == "page" and line["status"] == 200 and line["request_id"] == answer.headers["x-request-id"]
    assert [(c["name"], c["backend"], c["status"]) for c in line["upstream_calls"]] == [
        ("order", "shop", 200),
        ("tracking", "ship", 200),
        ("invoice", "books", 200),
    ]
    assert all(c["latency_ms"] is not None for c in line["upstream_calls"])


def test_aggregation_docs_example_validates():
    text = (Path(__file__).resolve().parent.parent / "docs" / "aggregation.md").read_text()
    block = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    assert validate_document(load_document(block, "docs/aggregation.md"), "routes") == []
