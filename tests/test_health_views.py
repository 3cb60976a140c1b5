"""Health views: paths and shapes set in gateway.yaml; the default deployment answers its frontend's contract,
keeps a cheap liveness path, and serves /metrics to loopback scrapers only."""

from __future__ import annotations

import io
import json
from pathlib import Path

import httpx
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from gateway_engine import create_app
from gateway_engine.cli.main import run
from tests.servers import serve, write_config

REPO = Path(__file__).resolve().parent.parent


def _hello_api() -> Starlette:
    return Starlette(routes=[Route("/", lambda request: PlainTextResponse("hello"))])


def test_health_views_default_deployment_answers_the_frontend_contract(tmp_path):
    with serve(_hello_api()) as fleet:
        env = {"FLEETBASE_URL": fleet, "FLEETBASE_API_KEY": "k", "MINIO_ENDPOINT": "http://127.0.0.1:9"}
        env |= {"MINIO_ACCESS_KEY": "a", "MINIO_SECRET_KEY": "s"}
        with serve(create_app(str(REPO), env)) as gw:
            r = httpx.get(f"{gw}/api/gateway/health", timeout=20)
            live = httpx.get(f"{gw}/api/gateway/health/live")
            full = httpx.get(f"{gw}/api/gateway/health/backends", timeout=20)
    body = r.json()
    assert r.status_code == 200 and set(body) == {"status", "systems"}
    assert body["status"] in ("operational", "degraded")
    fleetbase = body["systems"]["fleetbase"]
    assert set(fleetbase) == {"status", "latency"} and fleetbase["status"] == "up"
    assert isinstance(fleetbase["latency"], (int, float)) and fleetbase["latency"] >= 0
    assert body["systems"]["erpnext"] == {"status": "unconfigured", "latency": None}
    assert body["systems"]["minio"]["status"] == "down" and set(body["systems"]["minio"]) == {"status", "latency"}
    # liveness: no backend call, constant shape
    assert live.status_code == 200 and live.json()["status"] == "ok" and "erpnext" in live.json()["unconfigured"]
    # the operators' full report keeps errors and missing variables
    assert full.json()["systems"]["erpnext"]["missing"] == ["ERPNEXT_URL", "ERPNEXT_API_KEY", "ERPNEXT_API_SECRET"]
    assert full.json()["systems"]["minio"]["error"] == "connection refused"


def test_health_views_paths_and_fields_are_configurable(gateway):
    gw_yaml = (
        "version: 1\nbase_path: /api\nplugins: [envelope]\nhealth:\n  views:\n"
        "    - {path: /livez, report: liveness, fields: {ok: status, config: version}}\n"
        "    - {path: /status, report: backends, fields: {state: status, ms: latency_ms, why: error}}\n"
    )
    with serve(_hello_api()) as up:
        routes = f"backend: b\nprefix: /b\nupstream: {{url: '{up}', health: {{path: /}}}}\nroutes:\n  - {{name: r, method: GET, path: /r}}\n"
        base = gateway(gw_yaml, {"b": routes})
        live = httpx.get(f"{base}/api/livez")
        status = httpx.get(f"{base}/api/status")
        gone = httpx.get(f"{base}/api/health")
    assert live.status_code == 200 and set(live.json()) == {"ok", "config"} and live.json()["ok"] == "ok"
    assert status.json()["status"] == "operational"
    assert set(status.json()["systems"]["b"]) == {"state", "ms"}  # no error: the field is left out
    assert gone.status_code == 404  # the default paths are replaced, not added to


def test_health_views_bad_config_is_a_validate_error(tmp_path):
    head = "version: 1\nhealth:\n  views:\n    - {path: /h, report: backends}\n"
    bad = {
        "unknown-field": (
            "    - {path: /x, report: backends, fields: {latency: latency}}\n",
            "'latency' is not one of",
        ),
        "unknown-report": ("    - {path: /x, report: everything}\n", "everything"),
        "twice": ("    - {path: /h, report: liveness}\n", "health.views: the path '/h' is given twice"),
    }
    for name, (view, message) in bad.items():
        root = write_config(tmp_path / name, head + view, {})
        out = io.StringIO()
        assert run(["validate", "--config", str(root)], stdout=out) == 1
        assert message in out.getvalue(), out.getvalue()
        if name != "twice":
            assert "gateway.yaml:5:" in out.getvalue() and "health.views[1]" in out.getvalue()


def test_health_views_shipped_metrics_are_loopback_only():
    with serve(create_app(str(REPO), {})) as gw:
        local = httpx.get(f"{gw}/metrics")
        # another address of the loopback interface, outside 127.0.0.1/32: what a remote scraper looks like
        with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2")) as remote:
            refused = remote.get(f"{gw}/metrics")
    assert local.status_code == 200 and "gateway_requests_total" in local.text
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "FORBIDDEN"


def test_health_views_are_documented_in_openapi_as_shaped():
    out = io.StringIO()
    assert run(["openapi", "--config", str(REPO)], stdout=out) == 0
    paths = json.loads(out.getvalue())["paths"]
    live = paths["/api/gateway/health/live"]["get"]
    assert live["operationId"] == "gateway.health-live"
    assert live["responses"]["200"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Health"}
    shaped = paths["/api/gateway/health"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    system = shaped["properties"]["systems"]["additionalProperties"]
    assert set(system["properties"]) == {"status", "latency"} and system["required"] == ["status", "latency"]
    assert system["properties"]["latency"] == {"type": ["number", "null"]}
