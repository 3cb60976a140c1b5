"""deploy/config run the way the compose file and the Kubernetes manifests run it, on a real PostgreSQL and
Redis: `migrate` once (then a no-op), `serve` with the deployment's arguments, a partner bootstrapped with the
CLI, a request through to the orders service, and a clean SIGTERM drain."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time

import httpx
import orjson

from gateway_engine.cli.main import run
from tests.deploy_support import CONFIG
from tests.servers import free_port


def test_the_deploy_config_migrates_serves_and_drains(
    tmp_path, upstream, recorder, postgres_url, redis_url, monkeypatch
):
    settings = {
        "STORE_URL": postgres_url,
        "REDIS_URL": redis_url,
        "GATEWAY_OPERATOR_KEY": "operator-" + "5" * 32,
        "METRICS_KEY": "metrics-" + "7" * 32,
        "ORDERS_SERVICE_URL": upstream,
        "KAFKA_BROKER": f"127.0.0.1:{free_port()}",  # no broker: the realtime source retries in the background
        "GATEWAY_DATA": str(tmp_path / "data"),
    }
    for name, value in settings.items():
        monkeypatch.setenv(name, value)

    def cli(*argv: str) -> str:
        out, err = io.StringIO(), io.StringIO()
        assert run([*argv, "--config", str(CONFIG)], out, err) == 0, err.getvalue()
        return out.getvalue()

    assert cli("migrate").startswith("applied ")
    assert cli("migrate") == "up to date\n"  # what every further release's Job or compose service does
    made = cli("platforms", "create", "--code", "acme", "--name", "Acme", "--scopes", "orders:read")
    key = orjson.loads(made)["key"]["key"]

    port = free_port()
    serve = [sys.executable, "-m", "gateway_engine", "serve", "--config", str(CONFIG), "--port", str(port)]
    (tmp_path / "metrics").mkdir()  # the pod's emptyDir
    serve_env = {**os.environ, **settings, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics")}
    log = open(tmp_path / "serve.log", "wb")
    proc = subprocess.Popen([*serve, "--workers", "2", "--drain-timeout", "5", "--no-watch"], env=serve_env, stderr=log)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, (tmp_path / "serve.log").read_text()
            time.sleep(0.2)
        answer = httpx.get(f"{base}/orders/", headers={"x-api-key": key}, timeout=10)
        assert answer.status_code == 200, answer.text
        assert recorder.requests[-1]["headers"]["x-partner-id"] == "acme"
        assert httpx.get(f"{base}/orders/", headers={"x-api-key": key + "x"}, timeout=10).status_code == 401
        scrape = f"http://127.0.0.1:{port}/metrics"  # the pod annotation's prometheus.io/path
        assert httpx.get(scrape, timeout=10).status_code == 401
        metrics = httpx.get(scrape, headers={"x-metrics-key": settings["METRICS_KEY"]}, timeout=10)
        assert metrics.status_code == 200 and 'backend="orders"' in metrics.text
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
