"""logging: one JSON line per request, without query strings or credentials, written in bounded batches."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx


def gateway_yaml(log: Path, **options) -> str:
    chain = ["request_id", {"logging": {"file": str(log), **options}}, {"auth": {"accept": ["api_key"]}}, "envelope"]
    return (
        "version: 1\nbase_path: /api\nauth:\n  api_keys:\n    - {name: web, key: '${WEB_KEY}', scopes: ['*']}\n"
        "plugins: " + json.dumps(chain) + "\n"
    )


def backend(upstream: str) -> str:
    return (
        f"backend: svc\nprefix: /svc\nupstream: {{url: '{upstream}'}}\nroutes:\n"
        "  - {name: items, method: GET, path: /items}\n"
        "  - {name: missing, method: GET, path: /missing, upstream_path: /status/404}\n"
    )


def lines(log: Path, count: int, within: float = 5.0) -> list[dict]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        found = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        if len(found) >= count:
            return found
        time.sleep(0.02)
    raise AssertionError(f"expected {count} log lines, found {len(found)}")


def test_logging_writes_one_line_per_request_without_query_or_credentials(gateway, upstream, tmp_path):
    log = tmp_path / "access.log"
    gw = gateway(gateway_yaml(log, flush_interval=0.05), {"svc": backend(upstream)}, {"WEB_KEY": "secret-key-123456"})
    with httpx.Client() as c:
        ok = c.get(
            gw + "/api/svc/items?token=query-secret",
            headers={"x-api-key": "secret-key-123456", "x-request-id": "req-1"},
        )
        missing = c.get(gw + "/api/svc/missing", headers={"x-api-key": "secret-key-123456"})
        refused = c.get(gw + "/api/svc/items", headers={"x-api-key": "wrong-key-123456"})
    first, second, third = lines(log, 3)
    assert ok.status_code == 200 and missing.status_code == 404 and refused.status_code == 401
    assert first["request_id"] == "req-1" and first["method"] == "GET" and first["path"] == "/api/svc/items"
    assert (first["route"], first["backend"], first["status"], first["consumer"]) == ("items", "svc", 200, "web")
    assert first["latency_ms"] >= first["upstream_latency_ms"] >= 0 and first["time"].endswith("Z")
    assert (second["route"], second["status"]) == ("missing", 404)
    assert (third["status"], third["consumer"], third["upstream_latency_ms"]) == (
        401,
        None,
        None,
    )  # refused before the upstream
    text = log.read_text()
    assert "query-secret" not in text and "secret-key" not in text and "wrong-key" not in text


def test_logging_writes_as_soon_as_the_buffer_fills_not_only_on_the_interval(gateway, upstream, tmp_path):
    log = tmp_path / "access.log"
    gw = gateway(
        gateway_yaml(log, flush_interval=3600, buffer_bytes=1),
        {"svc": backend(upstream)},
        {"WEB_KEY": "secret-key-123456"},
    )
    with httpx.Client() as c:
        for _ in range(3):
            c.get(gw + "/api/svc/items", headers={"x-api-key": "secret-key-123456"})
    assert [line["status"] for line in lines(log, 3, within=2.0)] == [
        200,
        200,
        200,
    ]  # the hour-long interval never came


def test_logging_interval_flush_writes_small_batches(gateway, upstream, tmp_path):
    log = tmp_path / "access.log"
    gw = gateway(gateway_yaml(log, flush_interval=0.05), {"svc": backend(upstream)}, {"WEB_KEY": "secret-key-123456"})
    with httpx.Client() as c:
        c.get(gw + "/api/svc/items", headers={"x-api-key": "secret-key-123456"})
    assert lines(log, 1, within=2.0)[0]["status"] == 200  # one short line, far below the 64 KiB buffer
