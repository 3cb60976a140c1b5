"""`serve` with an operator's PROMETHEUS_MULTIPROC_DIR (a Kubernetes emptyDir): it is used, emptied of an
earlier run's files first (a restarted container keeps its emptyDir), and kept on shutdown."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
from prometheus_client.mmap_dict import MmapedDict, mmap_key

from tests.servers import free_port, write_config
from tests.test_metrics import GATEWAY, routes, value


def test_an_operators_metrics_dir_is_used_and_emptied_of_an_earlier_run(tmp_path, upstream):
    root = write_config(tmp_path / "config", GATEWAY, {"mdir": routes("mdir", upstream)})
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    stale = metrics_dir / "counter_999999.db"  # what a previous container of the pod left behind
    earlier = MmapedDict(str(stale))  # 100 requests of an earlier run, which must not be counted again
    labels = ["route", "backend", "method", "status"]
    earlier.write_value(
        mmap_key("gateway_requests", "gateway_requests_total", labels, ["get-item", "mdir", "GET", "2xx"], ""), 100, 0
    )
    earlier.close()
    port = free_port()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir), "TMPDIR": str(tmp_path)}
    command = [sys.executable, "-m", "gateway_engine", "serve", "--config", str(root), "--port", str(port)]
    proc = subprocess.Popen([*command, "--workers", "2", "--log-level", "warning"], env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90  # a guard, not a budget: two workers start slowly on a loaded machine
        while True:
            try:
                if httpx.get(f"{base}/api/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, "the gateway did not start"
            time.sleep(0.1)
        assert not stale.exists()
        for i in range(5):
            with httpx.Client() as fresh:
                assert fresh.get(f"{base}/api/mdir/items/{i}").status_code == 200
        with httpx.Client() as fresh:
            text = fresh.get(f"{base}/metrics").text
        assert value(text, "gateway_requests_total", backend="mdir", route="get-item", status="2xx") == 5
        assert list(metrics_dir.glob("counter_*.db"))  # the workers wrote there, not to a directory of their own
        assert not list(tmp_path.glob("gateway-metrics-*"))
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    assert metrics_dir.is_dir()  # the operator's directory is not removed
