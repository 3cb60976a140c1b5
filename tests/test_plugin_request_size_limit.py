"""request_size_limit: declared lengths refused up front, chunked bodies cut off while streaming."""

from __future__ import annotations

import io

import httpx
import pytest
from gateway_engine_plugins.request_size_limit import RequestSizeLimitPlugin, parse_size

from gateway_engine.cli.main import run
from tests.servers import write_config


def gateway_yaml(max_bytes: int | str) -> str:
    return f"version: 1\nbase_path: /api\nplugins: [request_id, {{request_size_limit: {{max_bytes: {max_bytes}}}}}, envelope]\n"


def backend(upstream: str, transport: str = "aiohttp") -> str:
    return (
        f"backend: svc\nprefix: /svc\nupstream: {{url: '{upstream}', transport: {transport}}}\nroutes:\n"
        "  - {name: upload, method: [POST, PUT], path: /upload, upstream_path: /upload}\n"
        "  - {name: mapped, method: POST, path: /mapped, upstream_path: /echo, request: {body: '{{ body }}'}}\n"
        "  - {name: big, method: POST, path: /big, upstream_path: /upload, plugins: {request_size_limit: {max_bytes: 1MB}}}\n"
    )


def chunks(size: int, chunk: int = 600):
    sent = 0
    while sent < size:
        n = min(chunk, size - sent)
        sent += n
        yield b"x" * n


def uploads(recorder) -> list[int]:
    return [r["received"] for r in recorder.requests if "received" in r]


def test_request_size_limit_declared_length_over_the_cap_is_413(gateway, upstream, recorder):
    gw = gateway(gateway_yaml("1KB"), {"svc": backend(upstream)})
    with httpx.Client() as c:
        refused = c.post(gw + "/api/svc/upload", content=b"x" * 1025)
        accepted = c.post(gw + "/api/svc/upload", content=b"x" * 1024)
    assert refused.status_code == 413
    assert refused.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert refused.json()["error"]["details"] == {"max_bytes": 1024}
    assert accepted.status_code == 200 and accepted.json()["data"] == {"received": 1024}
    assert uploads(recorder) == [1024]  # the refused body never went upstream


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
def test_request_size_limit_chunked_body_over_the_cap_is_cut_off(gateway, upstream, recorder, transport):
    gw = gateway(gateway_yaml(1000), {"svc": backend(upstream, transport)})
    with httpx.Client() as c:
        refused = c.post(gw + "/api/svc/upload", content=chunks(1800))
        accepted = c.post(gw + "/api/svc/upload", content=chunks(1000))
    assert "content-length" not in refused.request.headers  # really sent chunked
    assert refused.status_code == 413
    assert refused.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert accepted.status_code == 200 and accepted.json()["data"] == {"received": 1000}
    assert uploads(recorder) == [1000]  # the upstream never received the oversized body complete


def test_request_size_limit_chunked_body_buffered_for_mapping(gateway, upstream, recorder):
    gw = gateway(gateway_yaml(1000), {"svc": backend(upstream)})
    body = b'{"pad": "' + b"y" * 2000 + b'"}'
    with httpx.Client() as c:
        r = c.post(
            gw + "/api/svc/mapped", content=iter([body[:700], body[700:]]), headers={"content-type": "application/json"}
        )
    assert r.status_code == 413
    assert recorder.requests == []


def test_request_size_limit_route_override(gateway, upstream):
    gw = gateway(gateway_yaml("1KB"), {"svc": backend(upstream)})
    with httpx.Client() as c:
        r = c.post(gw + "/api/svc/big", content=b"x" * 100_000)
    assert r.status_code == 200 and r.json()["data"] == {"received": 100_000}


@pytest.mark.parametrize(
    "value, expected",
    [
        (1, 1),
        (2048, 2048),
        ("512", 512),
        ("512B", 512),
        ("512KB", 512 * 1024),
        ("1MB", 1024**2),
        ("1 mb", 1024**2),
        ("2MiB", 2 * 1024**2),
        ("1GB", 1024**3),
    ],
)
def test_request_size_limit_parse_size(value, expected):
    assert parse_size(value) == expected


@pytest.mark.parametrize("value", ["1TB", "ten", "1.5MB", "0", "-1KB"])
def test_request_size_limit_check_options_refuses(value):
    problems = RequestSizeLimitPlugin.check_options({"max_bytes": value})
    assert len(problems) == 1 and repr(value) in problems[0]


def test_request_size_limit_validate_reports_bad_size(tmp_path, upstream):
    root = write_config(
        tmp_path, "version: 1\nplugins:\n  - request_size_limit: {max_bytes: 10XB}\n", {"svc": backend(upstream)}
    )
    out = io.StringIO()
    assert run(["validate", "--config", str(root)], stdout=out) == 1
    assert "gateway.yaml:3:5: plugins[0].request_size_limit: max_bytes '10XB' is not a size" in out.getvalue()
