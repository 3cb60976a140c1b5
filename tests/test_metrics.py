"""Metrics: Prometheus text format, labels by route name, access control, and two workers summed."""

from __future__ import annotations

import hashlib
import io
import os
import signal
import subprocess
import sys
import threading
import time

import httpx
from prometheus_client.parser import text_string_to_metric_families

from gateway_engine.cli.main import run
from gateway_engine.foundation.metrics import exposition, record_reload
from tests.servers import free_port, write_config

GATEWAY = "version: 1\nbase_path: /api\nplugins: [request_id, envelope]\n"


def routes(backend: str, url: str, extra: str = "") -> str:
    return (
        f'backend: {backend}\nprefix: /{backend}\nupstream: {{url: "{url}", timeout: 300ms}}\n{extra}routes:\n'
        "  - {name: get-item, method: GET, path: '/items/{id}', upstream_path: '/items/{id}'}\n"
        "  - {name: slow, method: GET, path: /slow, upstream_path: '/slow'}\n"
        "  - {name: fail, method: GET, path: /fail, upstream_path: /status/503}\n"
        "  - {name: missing, method: GET, path: /missing, upstream_path: /status/404}\n"
    )


def scrape(base: str, path: str = "/metrics", **kwargs) -> str:
    r = httpx.get(base + path, **kwargs)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=")
    return r.text


def value(text: str, name: str, **labels: str) -> float:
    """Sum of the samples called ``name`` whose labels include ``labels``."""
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def test_metrics_requests_labelled_by_route_name_never_path(gateway, upstream):
    base = gateway(GATEWAY, {"mroute": routes("mroute", upstream)})
    for item in ("1", "2", "abc-123"):
        assert httpx.get(f"{base}/api/mroute/items/{item}").status_code == 200
    httpx.get(f"{base}/api/mroute/nowhere/42")
    text = scrape(base)
    assert value(text, "gateway_requests_total", route="get-item", backend="mroute", method="GET", status="2xx") == 3
    assert value(text, "gateway_request_duration_seconds_count", route="get-item", backend="mroute") == 3
    assert value(text, "gateway_upstream_duration_seconds_count", route="get-item", backend="mroute") == 3
    assert value(text, "gateway_requests_total", route="unmatched", backend="gateway", status="4xx") >= 1
    assert "abc-123" not in text and "/items/" not in text and "nowhere" not in text


def test_metrics_unknown_methods_share_one_label(gateway, upstream):
    base = gateway(GATEWAY, {"mverb": routes("mverb", upstream)})
    assert httpx.request("PROPFIND", f"{base}/api/mverb/items/1").status_code == 405
    text = scrape(base)
    assert value(text, "gateway_requests_total", route="get-item", backend="mverb", method="OTHER", status="4xx") == 1
    assert "PROPFIND" not in text


def test_metrics_upstream_errors_by_kind(gateway, upstream):
    dead = f"http://127.0.0.1:{free_port()}"
    base = gateway(GATEWAY, {"merr": routes("merr", upstream), "mdead": routes("mdead", dead)})
    assert httpx.get(f"{base}/api/merr/slow").status_code == 504
    assert httpx.get(f"{base}/api/merr/fail").status_code == 503
    assert httpx.get(f"{base}/api/merr/missing").status_code == 404  # an upstream 4xx is not an upstream error
    assert httpx.get(f"{base}/api/mdead/items/1").status_code == 502
    text = scrape(base)
    assert value(text, "gateway_upstream_errors_total", backend="merr", route="slow", kind="timeout") == 1
    assert value(text, "gateway_upstream_errors_total", backend="merr", route="fail", kind="5xx") == 1
    assert value(text, "gateway_upstream_errors_total", backend="mdead", route="get-item", kind="refused") == 1
    assert value(text, "gateway_upstream_errors_total", backend="merr", route="missing") == 0
    assert value(text, "gateway_requests_total", backend="merr", route="fail", status="5xx") == 1


def test_metrics_rate_limit_rejections_and_auth_failures(gateway, upstream):
    yaml = (
        "version: 1\nbase_path: /api\nplugins: [request_id, {auth: {accept: [api_key]}}, "
        "{rate_limit: {limit: 2/minute, key: consumer}}, envelope]\n"
        'auth:\n  api_keys:\n    - {name: app, key: "${APP_KEY}"}\n'
    )
    base = gateway(yaml, {"mguard": routes("mguard", upstream)}, env={"APP_KEY": "app-key-1"})
    url = f"{base}/api/mguard/items/1"
    statuses = [httpx.get(url, headers={"x-api-key": "app-key-1"}).status_code for _ in range(4)]
    assert statuses == [200, 200, 429, 429]
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"x-api-key": "wrong"}).status_code == 401
    assert httpx.get(url, headers={"x-api-key": "wrong"}).status_code == 401
    text = scrape(base)
    assert value(text, "gateway_rate_limit_rejections_total", backend="mguard", route="get-item") == 2
    assert value(text, "gateway_auth_failures_total", backend="mguard", route="get-item", reason="UNAUTHENTICATED") == 1
    assert value(text, "gateway_auth_failures_total", backend="mguard", route="get-item", reason="INVALID_API_KEY") == 2
    assert "app-key-1" not in text and "wrong" not in text


def test_metrics_in_flight_gauge_follows_requests(gateway, upstream):
    base = gateway(GATEWAY, {"mflight": routes("mflight", upstream + "/").replace("timeout: 300ms", "timeout: 5s")})
    slow = threading.Thread(target=lambda: httpx.get(f"{base}/api/mflight/slow", timeout=10))
    slow.start()
    deadline = time.monotonic() + 5
    while value(scrape(base), "gateway_requests_in_flight") < 2:  # the slow request and this scrape
        assert time.monotonic() < deadline, "the slow request never showed as in flight"
    slow.join()
    assert value(scrape(base), "gateway_requests_in_flight") == 1  # only the scrape itself


def test_metrics_config_reloads_counted():
    before = value(exposition().decode(), "gateway_config_reloads_total", result="error")
    record_reload("error")
    record_reload("error")
    assert value(exposition().decode(), "gateway_config_reloads_total", result="error") == before + 2


def test_metrics_path_and_ip_allowlist(gateway, upstream):
    base = gateway(
        GATEWAY + "metrics: {path: /internal/prom, allow_ips: [10.0.0.0/8]}\n", {"mip": routes("mip", upstream)}
    )
    assert httpx.get(f"{base}/metrics").status_code == 404  # moved
    r = httpx.get(f"{base}/internal/prom")
    assert r.status_code == 403 and r.json()["error"]["code"] == "FORBIDDEN"
    base = gateway(GATEWAY + "metrics: {allow_ips: [127.0.0.0/8, '::1']}\n", {"mip": routes("mip", upstream)})
    assert "gateway_requests_total" in scrape(base)


def test_metrics_key_required(gateway, upstream):
    digest = hashlib.sha256(b"rotated-key").hexdigest()
    base = gateway(
        GATEWAY + f"metrics: {{key: '${{METRICS_KEY}}', key_sha256: {digest}}}\n",
        {"mkey": routes("mkey", upstream)},
        env={"METRICS_KEY": "scrape-secret"},
    )
    assert httpx.get(f"{base}/metrics").status_code == 401
    r = httpx.get(f"{base}/metrics", headers={"x-metrics-key": "scrape-secre"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "INVALID_METRICS_KEY" and "scrape-secret" not in r.text
    assert "gateway_requests_total" in scrape(base, headers={"x-metrics-key": "scrape-secret"})
    assert "gateway_requests_total" in scrape(base, headers={"x-metrics-key": "rotated-key"})


def test_metrics_key_with_unset_variable_locks_endpoint(gateway, upstream):
    base = gateway(GATEWAY + "metrics: {key: '${METRICS_KEY}'}\n", {"mlock": routes("mlock", upstream)})
    for headers in ({}, {"x-metrics-key": ""}):
        r = httpx.get(f"{base}/metrics", headers=headers)
        assert r.status_code == 503
        assert r.json()["error"] == {
            "code": "METRICS_NOT_CONFIGURED",
            "message": "The metrics key is not configured: set METRICS_KEY.",
        }
    # an empty key (a `:-` default of nothing) never matches a request without the header
    base = gateway(GATEWAY + "metrics: {key: '${METRICS_KEY:-}'}\n", {"mlock": routes("mlock", upstream)})
    assert httpx.get(f"{base}/metrics").json()["error"]["code"] == "METRICS_NOT_CONFIGURED"


def test_metrics_disabled(gateway, upstream):
    base = gateway(GATEWAY + "metrics: {enabled: false}\n", {"moff": routes("moff", upstream)})
    assert httpx.get(f"{base}/metrics").json()["error"]["code"] == "ROUTE_NOT_FOUND"


def test_metrics_validate_reports_bad_settings(tmp_path):
    root = write_config(
        tmp_path, GATEWAY + "metrics: {path: metrics, allow_ips: [10.0.0.300/8], key_sha256: abc, extra: 1}\n", {}
    )
    out = io.StringIO()
    assert run(["validate", "--config", str(root)], stdout=out) == 1
    text = out.getvalue()
    for key in ("metrics.path", "metrics.allow_ips[0]", "metrics.key_sha256", "metrics.extra"):
        assert "gateway.yaml:4:" in text and key in text, key


def test_metrics_two_workers_are_summed(tmp_path, upstream):
    """`serve --workers 2`: whichever worker answers a scrape, it reports the requests of both."""
    root = write_config(tmp_path / "config", GATEWAY, {"mproc": routes("mproc", upstream)})
    port = free_port()
    env = {**os.environ, "TMPDIR": str(tmp_path)}  # the fresh multiprocess dir is made under it
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway_engine",
            "serve",
            "--config",
            str(root),
            "--port",
            str(port),
            "--workers",
            "2",
            "--log-level",
            "warning",
        ],
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/api/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, "the gateway did not start"
            time.sleep(0.1)
        [metrics_dir] = tmp_path.glob("gateway-metrics-*")
        sent = 0
        while len({f.name for f in metrics_dir.glob("counter_*.db")}) < 2:  # until both workers counted something
            assert sent < 400, "one worker took every request"
            with httpx.Client() as fresh:  # a new connection, so the kernel may hand it to either worker
                assert fresh.get(f"{base}/api/mproc/items/{sent}").status_code == 200
            sent += 1
        for _ in range(6):
            with httpx.Client() as fresh:
                text = fresh.get(f"{base}/metrics").text
            assert value(text, "gateway_requests_total", backend="mproc", route="get-item", status="2xx") == sent
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    assert not metrics_dir.exists()  # removed on shutdown
