"""200 MB up and down through a real gateway process, in constant memory."""

from __future__ import annotations

import httpx
import pytest

from tests.gateway_process import GatewayProcess
from tests.servers import write_config

SIZE = 200 * 1024 * 1024


def _peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


@pytest.fixture
def gateway_process(tmp_path, upstream):
    root = write_config(
        tmp_path / "cfg",
        "version: 1\nbase_path: /api\nplugins: [request_id, envelope]\n",
        {
            "files": f"""
backend: files
prefix: /files
upstream: {{url: "{upstream}", timeout: 60s}}
routes:
  - {{name: download, method: GET, path: /download, upstream_path: /download}}
  - {{name: upload, method: POST, path: /upload, upstream_path: /upload}}
"""
        },
    )
    with GatewayProcess(root, root.parent / f"{root.name}-gateway.log", args=["--log-level", "warning"]) as gateway:
        assert gateway.proc is not None
        yield gateway.base, gateway.proc.pid


def test_streaming_download_of_200mb_in_constant_memory(gateway_process):
    url, pid = gateway_process
    before = _peak_rss_mb(pid)
    received = 0
    with httpx.Client(timeout=60) as c, c.stream("GET", url + f"/api/files/download?bytes={SIZE}") as r:
        assert r.status_code == 200
        assert r.headers["content-type"] == "application/octet-stream"
        for chunk in r.iter_raw():
            received += len(chunk)
    assert received == SIZE
    assert _peak_rss_mb(pid) - before < 50, "the gateway buffered the download"


def test_streaming_upload_of_200mb_in_constant_memory(gateway_process, recorder):
    url, pid = gateway_process
    before = _peak_rss_mb(pid)
    chunk = b"y" * (1024 * 1024)

    def body():
        for _ in range(SIZE // len(chunk)):
            yield chunk

    with httpx.Client(timeout=60) as c:
        r = c.post(url + "/api/files/upload", content=body(), headers={"content-type": "application/octet-stream"})
    assert r.status_code == 200, r.text
    assert r.json()["data"]["received"] == SIZE
    assert recorder.last["received"] == SIZE
    assert _peak_rss_mb(pid) - before < 50, "the gateway buffered the upload"


def test_streaming_upload_with_content_length_keeps_it(gateway_process, recorder):
    url, _ = gateway_process
    with httpx.Client(timeout=60) as c:
        r = c.post(url + "/api/files/upload", content=b"z" * 100_000)
    assert r.json()["data"]["received"] == 100_000
    assert recorder.last["headers"]["content-length"] == "100000"
