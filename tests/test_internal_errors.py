"""An unexpected exception (a bug in a plugin) is a 500 envelope that still gets its access log line and request id,
with exactly one logged traceback and nothing of it in the answer."""

from __future__ import annotations

import json
import logging
import textwrap
import time

import httpx
import pytest

PLUGIN_SOURCE = textwrap.dedent("""
    from gateway_engine import Plugin

    class BuggyPlugin(Plugin):
        name = "buggy"
        priority = 500
        options_schema = {"type": "object", "additionalProperties": False, "properties": {
            "phase": {"enum": ["request", "response"], "default": "request", "description": "Where it fails."}}}

        async def on_request(self, ctx):
            if self.options["phase"] == "request":
                raise RuntimeError("secret-internal-detail")

        async def on_response(self, ctx, reply):
            if self.options["phase"] == "response":
                raise KeyError("secret-internal-detail")
""")


@pytest.fixture
def buggy_plugin(tmp_path, monkeypatch):
    site = tmp_path / "site"
    (site / "buggy_gw_plugin").mkdir(parents=True)
    (site / "buggy_gw_plugin" / "__init__.py").write_text(PLUGIN_SOURCE)
    info = site / "buggy_gw_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: buggy-gw-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[gateway_engine.plugins]\nbuggy = buggy_gw_plugin:BuggyPlugin\n")
    monkeypatch.syspath_prepend(str(site))


def _access_lines(path, count: int) -> list[dict]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        lines = [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []
        if len(lines) >= count:
            return lines
        time.sleep(0.05)
    raise AssertionError(f"expected {count} access line(s) in {path}")


@pytest.mark.parametrize("phase", ["request", "response"])
def test_internal_error_is_500_envelope_with_access_line(buggy_plugin, gateway, upstream, tmp_path, phase, caplog):
    log_file = tmp_path / "access.log"
    gw_yaml = (
        "version: 1\nbase_path: /api\nplugins:\n  - request_id\n"
        f"  - logging: {{file: '{log_file}', buffer_bytes: 1}}\n"
        f"  - buggy: {{phase: {phase}}}\n  - envelope\n"
    )
    routes = f"backend: shop\nprefix: /shop\nupstream: {{url: '{upstream}'}}\nroutes:\n  - {{name: echo, method: GET, path: /echo}}\n"
    gw = gateway(gw_yaml, {"shop": routes})
    with caplog.at_level(logging.ERROR, logger="gateway_engine"):
        r = httpx.get(gw + "/api/shop/echo")
    assert r.status_code == 500
    body = r.json()
    assert body["success"] is False and body["error"]["code"] == "INTERNAL_ERROR"
    assert body["meta"]["requestId"] == r.headers["x-request-id"]
    assert "secret-internal-detail" not in r.text and "Traceback" not in r.text
    (line,) = _access_lines(log_file, 1)
    assert (line["status"], line["route"], line["request_id"]) == (500, "echo", body["meta"]["requestId"])
    tracebacks = [rec for rec in caplog.records if rec.exc_info]
    assert len(tracebacks) == 1 and "secret-internal-detail" in str(tracebacks[0].exc_info[1])
