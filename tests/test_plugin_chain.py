"""The plugin chain: entry-point discovery, order by priority, short-circuits, per-route overrides."""

from __future__ import annotations

import textwrap

import httpx
import pytest

from gateway_engine.compiled.registry import discover

PLUGIN_SOURCE = textwrap.dedent("""
    from gateway_engine import GatewayError, Plugin, Reply

    class DemoPlugin(Plugin):
        name = "demo"
        priority = 500
        options_schema = {"type": "object", "additionalProperties": False, "properties": {
            "greeting": {"type": "string", "default": "hello", "description": "Header value."},
            "block": {"type": "boolean", "default": False, "description": "Answer 418 before the upstream."}}}

        async def on_request(self, ctx):
            ctx.state.setdefault("order", []).append("demo")
            ctx.upstream_headers["x-demo"] = self.options["greeting"]
            if self.options["block"]:
                return GatewayError(418, "TEAPOT", "blocked by demo")

        async def on_response(self, ctx, reply):
            reply.set_header("x-demo-order", ",".join(ctx.state["order"]))

    class EarlyPlugin(Plugin):
        name = "early"
        priority = 600

        async def on_request(self, ctx):
            ctx.state.setdefault("order", []).append("early")

        async def on_response(self, ctx, reply):
            reply.set_header("x-early-saw", reply.get_header("x-demo-order") or "none")
""")


@pytest.fixture
def demo_plugin(tmp_path, monkeypatch):
    """Install a third-party plugin the way pip would: a module plus an entry point in dist-info."""
    site = tmp_path / "site"
    (site / "demo_gw_plugin").mkdir(parents=True)
    (site / "demo_gw_plugin" / "__init__.py").write_text(PLUGIN_SOURCE)
    info = site / "demo_gw_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: demo-gw-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[gateway_engine.plugins]\ndemo = demo_gw_plugin:DemoPlugin\nearly = demo_gw_plugin:EarlyPlugin\n"
    )
    monkeypatch.syspath_prepend(str(site))
    return site


def test_plugin_chain_builtins_are_entry_points():
    names = set(discover())
    assert {"request_id", "logging", "envelope"} <= names


def test_plugin_chain_entry_point_plugin_runs(demo_plugin, gateway, upstream, recorder):
    gw = gateway(
        "version: 1\nbase_path: /api\nplugins: [{demo: {greeting: hi}}, early, envelope]\n",
        {
            "s": f"backend: s\nprefix: /s\nupstream: {{url: '{upstream}'}}\nroutes:\n  - {{name: a, method: GET, path: /a}}\n"
        },
    )
    with httpx.Client() as c:
        r = c.get(gw + "/api/s/a")
    assert r.status_code == 200
    assert recorder.last["headers"]["x-demo"] == "hi"
    assert r.headers["x-demo-order"] == "early,demo"  # priority 600 ran before 500
    assert r.headers["x-early-saw"] == "early,demo"  # and its response phase ran after


def test_plugin_chain_short_circuit_runs_only_plugins_that_ran(demo_plugin, gateway, upstream, recorder):
    gw = gateway(
        "version: 1\nbase_path: /api\nplugins: [{demo: {block: true}}, early, envelope]\n",
        {
            "s": f"backend: s\nprefix: /s\nupstream: {{url: '{upstream}'}}\nroutes:\n  - {{name: a, method: GET, path: /a}}\n"
        },
    )
    with httpx.Client() as c:
        r = c.get(gw + "/api/s/a")
    assert r.status_code == 418
    assert r.json()["error"] == {"code": "TEAPOT", "message": "blocked by demo"}
    assert r.headers["x-early-saw"] == "early,demo"
    assert recorder.requests == []


def test_plugin_chain_route_overrides(demo_plugin, gateway, upstream, recorder):
    routes = f"""backend: s
prefix: /s
upstream: {{url: '{upstream}'}}
plugins: {{demo: {{greeting: backend}}}}
routes:
  - {{name: inherit, method: GET, path: /inherit}}
  - {{name: reconf, method: GET, path: /reconf, plugins: {{demo: {{greeting: route}}}}}}
  - {{name: removed, method: GET, path: /removed, plugins: {{demo: false, envelope: false}}}}
"""
    gw = gateway("version: 1\nbase_path: /api\nplugins: [demo, envelope]\n", {"s": routes})
    with httpx.Client() as c:
        c.get(gw + "/api/s/inherit")
        assert recorder.last["headers"]["x-demo"] == "backend"
        c.get(gw + "/api/s/reconf")
        assert recorder.last["headers"]["x-demo"] == "route"
        r = c.get(gw + "/api/s/removed")
        assert "x-demo" not in recorder.last["headers"]
        assert "success" not in r.json()


def test_plugin_chain_options_are_validated_with_location(demo_plugin, tmp_path):
    from gateway_engine import ConfigErrors, load_config
    from tests.servers import write_config

    root = write_config(tmp_path / "c", "version: 1\nplugins:\n  - demo: {greting: typo}\n", {})
    with pytest.raises(ConfigErrors) as info:
        load_config(root, {})
    assert str(info.value).startswith("gateway.yaml:3:12: plugins[0].demo.greting: unknown key 'greting'")


def test_plugin_chain_builtin_order_is_pinned():
    """The request-phase order of the built-ins; changing a priority must be a deliberate change here."""
    builtins = {
        "request_id",
        "security_headers",
        "logging",
        "ip_filter",
        "cors",
        "request_size_limit",
        "auth",
        "rate_limit",
        "envelope",
    }
    registry = discover()
    ordered = [name for name in sorted(builtins, key=lambda n: -registry[n].priority)]
    assert ordered == [
        "request_id",
        "security_headers",
        "logging",
        "ip_filter",
        "cors",
        "request_size_limit",
        "auth",
        "rate_limit",
        "envelope",
    ]


def test_plugin_chain_every_builtin_documents_its_options():
    for name, cls in discover().items():
        assert cls.name == name
        for option, prop in cls.options_schema.get("properties", {}).items():
            assert prop.get("description"), f"{name}.{option} has no description"
