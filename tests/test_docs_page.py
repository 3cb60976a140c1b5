"""The docs page: Swagger UI served by the gateway itself, rendered in a real headless browser."""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import httpx
import pytest
from openapi_spec_validator import validate
from swagger_ui_bundle import swagger_ui_path

from gateway_engine import create_app
from tests.servers import serve

GATEWAY = """version: 1
base_path: /api
plugins: [request_id, envelope]
docs: {title: "City platform <API>"}
"""
SHOP = """backend: shop
prefix: /shop
description: The shop.
upstream: {url: "http://127.0.0.1:9"}
routes:
  - {name: list-orders, method: GET, path: /orders, description: List orders., request: {query: {allow: [status, limit]}}}
  - {name: get-order, method: GET, path: "/orders/{id}", description: One order by id.}
  - name: create-order
    method: POST
    path: /orders
    description: Place an order.
    request: {schema: {type: object, required: [sku], properties: {sku: {type: string}, note: {type: [string, "null"]}}}}
"""
CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parent.parent
SCREENSHOT = ROOT / "docs" / "screenshots" / "docs-page.png"


@pytest.fixture
def docs(gateway) -> str:
    return gateway(GATEWAY, {"shop": SHOP})


def test_docs_page_html(docs):
    r = httpx.get(f"{docs}/api/docs")
    assert r.status_code == 200 and r.headers["content-type"] == "text/html; charset=utf-8"
    assert "script-src 'self'" in r.headers["content-security-policy"]
    html = r.text
    assert '<meta charset="utf-8">' in html and "<title>City platform &lt;API&gt;</title>" in html  # escaped
    assert 'src="/api/docs/swagger-ui-bundle.js"' in html and 'data-spec-url="/api/docs/openapi-3.0.json"' in html
    assert "http://" not in html and "https://" not in html  # no CDN: gateways often run offline


@pytest.mark.parametrize(
    "name, content_type, source",
    [
        ("swagger-ui-bundle.js", "application/javascript; charset=utf-8", swagger_ui_path),
        ("swagger-ui.css", "text/css; charset=utf-8", swagger_ui_path),
        ("favicon-32x32.png", "image/png", swagger_ui_path),
        ("docs-init.js", "application/javascript; charset=utf-8", ROOT / "gateway_engine" / "endpoints" / "templates"),
    ],
)
def test_docs_page_assets_served_from_packages(docs, name, content_type, source):
    r = httpx.get(f"{docs}/api/docs/{name}")
    assert r.status_code == 200 and r.headers["content-type"] == content_type
    assert r.content == (source / name).read_bytes()
    assert r.headers["cache-control"] == "public, max-age=86400"


def test_docs_page_unknown_asset_is_not_found(docs):
    assert httpx.get(f"{docs}/api/docs/index.html").status_code == 404
    assert httpx.get(f"{docs}/api/docs/..%2Fgateway.yaml").status_code == 404


def test_docs_page_spec_is_openapi_30_of_the_same_document(docs):
    doc31 = httpx.get(f"{docs}/api/openapi.json").json()
    doc30 = httpx.get(f"{docs}/api/docs/openapi-3.0.json").json()
    validate(doc30)
    assert doc30["openapi"] == "3.0.3" and doc30["paths"].keys() == doc31["paths"].keys()
    body = doc30["components"]["schemas"]["shop.create-order.body"]
    assert body["properties"]["note"] == {"type": "string", "nullable": True}
    assert doc30["components"]["schemas"]["SuccessEnvelope"]["properties"]["success"] == {"enum": [True]}


def chromium(*args: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--hide-scrollbars",
                f"--user-data-dir={profile}",
                "--virtual-time-budget=5000",
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium (.ci/run installs it)")
def test_docs_page_renders_every_route_in_a_browser(tmp_path):
    """The shipped config's docs page, in headless Chromium: every operation of openapi.json is on the page."""
    with serve(create_app(str(ROOT), {})) as base:
        doc = httpx.get(f"{base}/api/gateway/openapi.json").json()
        dom = chromium("--dump-dom", f"{base}/api/gateway/docs").stdout
        shot = tmp_path / "docs-page.png"
        chromium(f"--screenshot={shot}", "--window-size=1280,900", f"{base}/api/gateway/docs")
    assert "Unable to render" not in dom and "Failed to load" not in dom
    rendered = set(re.findall(r'class="opblock opblock-(\w+)[^"]*" id="operations-[^"]*".*?data-path="([^"]+)"', dom))
    documented = {(method, path) for path, item in doc["paths"].items() for method in item}
    assert len(documented) > 20 and rendered == documented  # Swagger UI drew every operation, and only those
    summaries = {op["summary"] for item in doc["paths"].values() for op in item.values()}
    assert all(html.escape(s, quote=False) in dom for s in summaries)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000  # more than a blank page
    if os.environ.get("GATEWAY_UPDATE_SCREENSHOTS"):
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, SCREENSHOT)
