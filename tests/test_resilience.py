"""Failing backends: retries, circuit breaker, bulkhead — against real upstream servers."""

from __future__ import annotations

import threading
import time

import httpx

from tests.servers import free_port

GATEWAY = "version: 1\nbase_path: /api\nplugins: [envelope]\n"


def backend(name: str, url: str, upstream_extra: str) -> str:
    return f"""backend: {name}
prefix: /{name}
upstream:
  url: "{url}"
{upstream_extra}
routes:
  - {{name: flaky, method: [GET, POST], path: /flaky, upstream_path: /flaky}}
  - {{name: slow, method: GET, path: /slow, upstream_path: /slow}}
  - {{name: fast, method: GET, path: /fast, upstream_path: /fast}}
"""


RETRY = "  retry: {attempts: 3, backoff: 10ms, max_backoff: 50ms, idempotent_post: true}"


def test_resilience_get_is_retried_until_success(gateway, upstream, recorder):
    gw = gateway(GATEWAY, {"b": backend("b", upstream, RETRY)})
    with httpx.Client() as c:
        r = c.get(gw + "/api/b/flaky", params={"key": "g", "fail": 2})
    assert r.status_code == 200 and r.json()["data"]["calls"] == 3
    assert recorder.counts["g"] == 3


def test_resilience_retries_are_bounded(gateway, upstream, recorder):
    gw = gateway(GATEWAY, {"b": backend("b", upstream, RETRY)})
    with httpx.Client() as c:
        r = c.get(gw + "/api/b/flaky", params={"key": "always", "fail": 99})
    assert r.status_code == 503 and r.json()["error"]["code"] == "UPSTREAM_ERROR"
    assert recorder.counts["always"] == 3


def test_resilience_post_is_retried_only_with_idempotency_key(gateway, upstream, recorder):
    gw = gateway(GATEWAY, {"b": backend("b", upstream, RETRY)})
    with httpx.Client() as c:
        plain = c.post(gw + "/api/b/flaky", params={"key": "p1", "fail": 1}, json={"a": 1})
        keyed = c.post(
            gw + "/api/b/flaky", params={"key": "p2", "fail": 1}, json={"a": 1}, headers={"Idempotency-Key": "abc"}
        )
    assert plain.status_code == 503 and recorder.counts["p1"] == 1
    assert keyed.status_code == 200 and recorder.counts["p2"] == 2
    assert all(r["headers"].get("idempotency-key") == "abc" for r in recorder.requests if r.get("key") == "p2")


def test_resilience_non_retryable_status_is_not_retried(gateway, upstream, recorder):
    gw = gateway(GATEWAY, {"b": backend("b", upstream, RETRY)})
    with httpx.Client() as c:
        r = c.get(gw + "/api/b/flaky", params={"key": "n", "fail": 1, "status": 500})
    assert r.status_code == 500 and recorder.counts["n"] == 1


def test_resilience_connect_errors_are_retried_then_502(gateway):
    gw = gateway(GATEWAY, {"b": backend("b", f"http://127.0.0.1:{free_port()}", RETRY)})
    with httpx.Client() as c:
        r = c.get(gw + "/api/b/fast")
    assert r.status_code == 502 and r.json()["error"]["code"] == "UPSTREAM_UNAVAILABLE"


def test_resilience_circuit_opens_then_half_opens(gateway, upstream, recorder):
    breaker = "  circuit_breaker: {failures: 3, window: 30s, open_for: 300ms, half_open_probes: 1}"
    gw = gateway(GATEWAY, {"b": backend("b", upstream, breaker)})
    with httpx.Client() as c:
        statuses = [c.get(gw + "/api/b/flaky", params={"key": "cb", "fail": 3}).status_code for _ in range(3)]
        assert statuses == [503, 503, 503] and recorder.counts["cb"] == 3
        opened = c.get(gw + "/api/b/flaky", params={"key": "cb", "fail": 3})
        assert opened.status_code == 503
        assert opened.json()["error"]["code"] == "CIRCUIT_OPEN"
        assert int(opened.headers["retry-after"]) >= 1
        assert recorder.counts["cb"] == 3  # the open circuit did not call the upstream
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            probe = c.get(gw + "/api/b/flaky", params={"key": "cb", "fail": 3})
            if probe.status_code == 200:
                break
            time.sleep(0.05)
        assert probe.status_code == 200 and recorder.counts["cb"] == 4
        assert c.get(gw + "/api/b/flaky", params={"key": "cb", "fail": 3}).status_code == 200


def test_resilience_bulkhead_contains_a_hanging_backend(gateway, upstream):
    hang = "  timeout: 10s\n  bulkhead: {max_concurrent: 2, queue_timeout: 200ms}"
    gw = gateway(GATEWAY, {"hang": backend("hang", upstream, hang), "ok": backend("ok", upstream, "")})
    results: list[int] = []

    def slow_call():
        with httpx.Client(timeout=20) as c:
            results.append(c.get(gw + "/api/hang/slow", params={"s": 2}).status_code)

    threads = [threading.Thread(target=slow_call) for _ in range(2)]
    for t in threads:
        t.start()
    time.sleep(0.3)  # let both slow calls take the two slots
    with httpx.Client(timeout=5) as c:
        busy = c.get(gw + "/api/hang/slow", params={"s": 2})
        fast = [c.get(gw + "/api/ok/fast").status_code for _ in range(5)]
    for t in threads:
        t.join()
    assert busy.status_code == 503 and busy.json()["error"]["code"] == "UPSTREAM_BUSY"
    assert fast == [200] * 5
    assert results == [200, 200]


def test_resilience_circuit_state_shows_in_health_and_metrics(gateway, upstream):
    from gateway_engine.foundation.metrics import exposition

    breaker = (
        "  circuit_breaker: {failures: 2, window: 30s, open_for: 30s}\n  health: {path: '/flaky?key=health&fail=99'}"
    )
    gw = gateway(GATEWAY + "health: {cache_seconds: 0.1}\n", {"cb": backend("cb", upstream, breaker)})
    with httpx.Client() as c:
        assert c.get(gw + "/api/health/backends").json()["systems"]["cb"]["circuit"] == "closed"
        for _ in range(2):
            c.get(gw + "/api/cb/flaky", params={"key": "trip", "fail": 99})
        assert c.get(gw + "/api/cb/flaky", params={"key": "trip", "fail": 99}).json()["error"]["code"] == "CIRCUIT_OPEN"
    assert 'gateway_circuit_state{backend="cb"} 2.0' in exposition().decode()
    with httpx.Client() as c:  # the next probe round (after the short cache) reports the open circuit
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            systems = c.get(gw + "/api/health/backends").json()["systems"]
            if systems["cb"].get("circuit") == "open":
                break
            time.sleep(0.2)
    assert systems["cb"]["circuit"] == "open" and systems["cb"]["status"] == "down"
