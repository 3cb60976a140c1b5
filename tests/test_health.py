"""Health: the gateway's own liveness and the backend probes (HTTP, TCP, unconfigured, critical, cached)."""

from __future__ import annotations

import asyncio
import io
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from gateway_engine import create_app
from gateway_engine.cli.main import run
from tests.servers import free_port, serve, write_config

GATEWAY = "version: 1\nbase_path: /api\nplugins: [request_id, envelope]\n"


def backend(name: str, url: str, health: str | None = None, extra: str = "") -> str:
    lines = [f"backend: {name}", f"prefix: /{name}", "upstream:", f'  url: "{url}"']
    if health is not None:
        lines.append(f"  health: {health}")
    if extra:
        lines.append(extra)
    lines += ["routes:", "  - {name: get, method: GET, path: /x}"]
    return "\n".join(lines) + "\n"


def test_health_liveness_shape(gateway, upstream):
    base = gateway(GATEWAY, {"up": backend("up", upstream), "offline": backend("offline", "${OFF_URL}")})
    r = httpx.get(f"{base}/api/health")
    body = r.json()
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    assert body["status"] == "ok" and body["routes"] == 2 and body["unconfigured"] == ["offline"]
    assert isinstance(body["version"], str) and body["version"]


def test_health_liveness_refuses_other_methods(gateway, upstream):
    base = gateway(GATEWAY, {"up": backend("up", upstream)})
    r = httpx.post(f"{base}/api/health")
    assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD"
    assert r.json()["error"]["code"] == "METHOD_NOT_ALLOWED"


def test_health_backends_reports_each_state(gateway, upstream, recorder):
    dead = f"http://127.0.0.1:{free_port()}"
    base = gateway(
        GATEWAY,
        {
            "web": backend(
                "web",
                upstream,
                "{path: /ping/me, expect: 200}",
                '  auth: {style: bearer, token: "${WEB_TOKEN}"}\n  headers: {X-Static: s1}',
            ),
            "tcp": backend("tcp", upstream),  # no health block: TCP connect
            "broken": backend("broken", upstream, "{path: /status/500}"),
            "gone": backend("gone", dead, "{tcp: true}"),
            "slow": backend("slow", upstream, '{path: "/slow?s=5", timeout: 300ms}'),
            "offline": backend("offline", "${OFF_URL}", "{path: /health, critical: true}"),
        },
        env={"WEB_TOKEN": "sekret-token-value"},
    )
    r = httpx.get(f"{base}/api/health/backends", timeout=10)
    assert r.status_code == 200  # nothing critical is down (an unconfigured backend is not an outage)
    body = r.json()
    assert body["status"] == "degraded"
    systems = body["systems"]
    assert set(systems) == {"web", "tcp", "broken", "gone", "slow", "offline"}
    assert systems["web"]["status"] == "up" and systems["tcp"]["status"] == "up"
    assert isinstance(systems["web"]["latency_ms"], float) and systems["web"]["checked_at"].endswith("Z")
    assert systems["broken"] == {**systems["broken"], "status": "down", "error": "HTTP 500, expected 200"}
    assert systems["gone"]["status"] == "down" and systems["gone"]["error"] == "connection refused"
    assert systems["slow"]["status"] == "down" and systems["slow"]["error"] == "no answer within 0.3s"
    assert systems["offline"] == {
        **systems["offline"],
        "status": "unconfigured",
        "error": "set OFF_URL",
        "missing": ["OFF_URL"],
        "latency_ms": None,
    }
    # the probe went through the backend's transport with its static headers and upstream auth ...
    probe = next(q for q in recorder.requests if q.get("path") == "/ping/me")
    assert probe["method"] == "GET" and probe["headers"]["authorization"] == "Bearer sekret-token-value"
    assert probe["headers"]["x-static"] == "s1"
    # ... and no secret or upstream address is ever in the answer
    assert "sekret" not in r.text and "127.0.0.1" not in r.text


def test_health_backends_critical_down_is_503(gateway, upstream):
    dead = f"http://127.0.0.1:{free_port()}"
    base = gateway(
        GATEWAY,
        {
            "core": backend("core", dead, "{tcp: true, critical: true}"),
            "extra": backend("extra", upstream, "{path: /anything}"),
        },
    )
    r = httpx.get(f"{base}/api/health/backends", timeout=10)
    assert r.status_code == 503
    body = r.json()
    assert body["status"] == "down" and body["systems"]["core"]["critical"] is True
    assert body["systems"]["extra"]["status"] == "up"


def test_health_backends_all_up_is_operational(gateway, upstream):
    base = gateway(
        GATEWAY, {"a": backend("a", upstream, "{path: /a, critical: true}"), "b": backend("b", upstream, "{tcp: true}")}
    )
    r = httpx.get(f"{base}/api/health/backends")
    assert r.status_code == 200 and r.json()["status"] == "operational"


def test_health_backends_cached_between_calls(gateway, upstream, recorder):
    base = gateway(
        GATEWAY + "health: {cache_seconds: 60}\n", {"a": backend("a", upstream, '{path: "/flaky?key=probe&fail=0"}')}
    )
    answers = [httpx.get(f"{base}/api/health/backends").json() for _ in range(5)]
    assert recorder.counts["probe"] == 1  # five health calls, one probe
    assert all(a == answers[0] for a in answers)


def test_health_backends_burst_shares_one_round():
    """With no cache at all, calls that arrive while a round runs wait for it instead of probing again."""
    hits = []

    async def slow_backend(scope, receive, send):
        if scope["type"] != "http":
            return
        hits.append(scope["path"])
        await asyncio.sleep(1.0)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    with serve(slow_backend, lifespan="off") as slow, tempfile.TemporaryDirectory() as tmp:
        root = write_config(
            Path(tmp),
            GATEWAY + "health: {cache_seconds: 0}\n",
            {"s": backend("s", slow, "{path: /probe, timeout: 5s}")},
        )
        with serve(create_app(str(root), {})) as base, ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(lambda _: httpx.get(f"{base}/api/health/backends", timeout=10), range(6)))
    assert [a.status_code for a in answers] == [200] * 6
    assert all(a.json()["systems"]["s"]["status"] == "up" for a in answers)
    assert hits == ["/probe"]


def test_health_validate_reports_bad_settings(tmp_path):
    root = write_config(
        tmp_path,
        GATEWAY + "health: {timeout: soon, cache_seconds: -1}\n",
        {"a": backend("a", "http://127.0.0.1:9", "{tcp: yes-please}")},
    )
    out = io.StringIO()
    assert run(["validate", "--config", str(root)], stdout=out) == 1
    text = out.getvalue()
    assert "gateway.yaml:4:" in text and "health.timeout" in text and "health.cache_seconds" in text
    assert "routes.d/a.yaml:5:" in text and "upstream.health.tcp" in text
