"""The layers and the feature seam: no import cycle, short modules, features that come and go, a mountable app."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import grimp
import httpx
import orjson
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from gateway_engine import ConfigError, ConfigErrors, GatewayError, Plugin, Reply, create_app, load_config
from gateway_engine.cli.main import run
from gateway_engine.compiled import features as feature_seam
from gateway_engine.compiled.features import Feature, FeatureInput, installed_features
from gateway_engine.compiled.model import Contribution, StateKey
from tests.servers import serve, write_config

ROOT = Path(__file__).resolve().parent.parent
MAX_MODULE_LINES = 350


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), i.e. import cycles."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in graph.find_modules_directly_imported_by(module):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return found


def test_architecture_has_no_import_cycle():
    # lazy imports inside functions count; imports only for type annotations never run and do not
    graph = grimp.build_graph("gateway_engine", exclude_type_checking_imports=True)
    assert _cycles(graph) == []


def test_architecture_modules_stay_short():
    long = {
        str(p.relative_to(ROOT)): n
        for p in (ROOT / "gateway_engine").rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}


def test_architecture_the_core_names_no_feature():
    """Nothing below the features mentions one by module path (the seam finds them through entry points)."""
    core = ["foundation", "config", "upstreams", "compiled", "runtime"]
    offenders = []
    for layer in core:
        for path in (ROOT / "gateway_engine" / layer).rglob("*.py"):
            text = path.read_text()
            for feature in (
                "gateway_engine.endpoints",
                "gateway_engine.webhooks",
                "gateway_engine.workflows",
                "gateway_engine.keys",
                "gateway_engine.aggregation",
                "gateway_engine.realtime",
                "gateway_engine.kafka",
            ):
                if feature in text:
                    offenders.append(f"{path.relative_to(ROOT)} names {feature}")
    assert offenders == []


def _without(name: str, monkeypatch) -> None:
    """Uninstall one feature: its entry point is no longer found."""
    real = feature_seam.entry_points

    def filtered(*, group: str):
        return [ep for ep in real(group=group) if not (group == feature_seam.ENTRY_POINT_GROUP and ep.name == name)]

    monkeypatch.setattr(feature_seam, "entry_points", filtered)


def test_architecture_webhooks_switched_off_leaves_the_gateway_serving(tmp_path, monkeypatch, upstream, recorder):
    root = write_config(
        tmp_path / "cfg",
        "version: 1\nbase_path: /api\nplugins: [request_id, envelope]\n",
        {
            "echo": f"backend: echo\nprefix: /echo\nupstream: {{url: '{upstream}'}}\n"
            "routes:\n  - {name: one, method: GET, path: /one, upstream_path: /one}\n"
        },
    )
    hooks = root / "webhooks.d"
    hooks.mkdir()
    # a webhooks.d file that would fail to load (its secret is unset and it names an unknown route):
    # with the feature gone nobody reads the folder
    shutil.copy(ROOT / "webhooks.d" / "stripe.yaml", hooks / "stripe.yaml")
    assert {f.name for f in installed_features()} >= {"endpoints", "webhooks", "workflows"}
    _without("webhooks", monkeypatch)
    assert "webhooks" not in {f.name for f in installed_features()}

    config = load_config(root, {})
    assert set(config.contributions) == {
        "endpoints",
        "workflows",
        "keys",
        "aggregation",
        "realtime",
        "kafka",
        "outbound",
    }
    with serve(create_app(str(root), {})) as url:
        answer = httpx.get(url + "/api/echo/one")
        assert answer.status_code == 200 and answer.json()["success"] is True
        assert recorder.requests[-1]["path"] == "/one"
        assert httpx.get(url + "/api/health").status_code == 200  # the endpoints feature still serves
        assert httpx.post(url + "/api/webhooks/stripe", content=b"{}").status_code == 404
        spec = httpx.get(url + "/api/openapi.json").json()
        assert not any(p.startswith("/api/webhooks") for p in spec["paths"])


def test_architecture_every_feature_off_still_serves_routes(tmp_path, monkeypatch, upstream):
    root = write_config(
        tmp_path / "cfg",
        "version: 1\nplugins: [envelope]\n",
        {
            "echo": f"backend: echo\nprefix: /echo\nupstream: {{url: '{upstream}'}}\n"
            "routes:\n  - {name: one, method: GET, path: /one}\n"
        },
    )
    with serve(create_app(str(root), {})) as url:
        pass  # a sanity start with every feature
    config = load_config(root, {}, features=())
    assert config.contributions == {} and config.endpoints == {}
    for name in ("endpoints", "webhooks", "workflows", "aggregation", "realtime", "kafka", "outbound"):
        _without(name, monkeypatch)
    with serve(create_app(str(root), {})) as url:
        assert httpx.get(url + "/echo/one").status_code == 200
        assert httpx.get(url + "/health").status_code == 404  # no built-in endpoints: the router answers


def test_architecture_aggregation_switched_off_refuses_its_routes(tmp_path, monkeypatch, upstream):
    """Without the feature a `backends:` route does not load (never a silent single call in its place);
    the other routes of the deployment still serve once it is gone."""
    echo = f"backend: echo\nprefix: /echo\nupstream: {{url: '{upstream}'}}\nroutes:\n  - {{name: one, method: GET, path: /one}}\n"
    page = (
        "backend: page\nprefix: /page\nroutes:\n  - name: both\n    method: GET\n    path: /both\n    backends:\n"
        "      - {name: a, backend: echo, path: /one, response: {group: a}}\n"
    )
    root = write_config(tmp_path / "cfg", "version: 1\nplugins: [envelope]\n", {"echo": echo, "page": page})
    with serve(create_app(str(root), {})) as url:
        assert httpx.get(url + "/page/both").json()["data"]["a"]["path"] == "/one"
    _without("aggregation", monkeypatch)
    out = io.StringIO()
    assert run(["validate", "--config", str(root)], stdout=out, stderr=out) == 1
    assert "routes.d/page.yaml:7:5: routes[0].backends: `backends` needs the aggregation feature" in out.getvalue()
    (root / "routes.d" / "page.yaml").unlink()
    with serve(create_app(str(root), {})) as url:
        assert httpx.get(url + "/echo/one").status_code == 200


def test_architecture_outbound_switched_off_makes_route_emit_a_config_error(tmp_path, monkeypatch, upstream):
    route = (
        f"backend: echo\nprefix: /echo\nupstream: {{url: '{upstream}'}}\n"
        "routes:\n  - {name: one, method: GET, path: /one, emit: {event: thing.happened}}\n"
    )
    root = write_config(tmp_path / "cfg", "version: 1\nplugins: []\n", {"echo": route})
    _without("outbound", monkeypatch)
    try:
        load_config(root, {})
    except ConfigErrors as exc:
        assert "`emit` needs the outbound feature, which is not installed" in str(exc)
    else:
        raise AssertionError("a route with emit: loaded without the outbound feature")


class _Greeting(Plugin):
    name = "greeting"
    priority = 10

    async def on_response(self, ctx, reply: Reply) -> Reply:
        reply.set_header("x-greeting", "hello")
        return reply


class _EchoTransport:
    """A transport a feature brings: answers with the request it was given."""

    schemes = ("echo://",)

    def __init__(self, *, timeouts, max_connections: int = 100) -> None:
        self.timeouts = timeouts

    async def send(self, method, url, headers, body):
        if url.endswith("/fail"):
            raise GatewayError(502, "ECHO_FAILED", "The echo transport was told to fail.")
        return Reply(
            200,
            [("content-type", "application/json")],
            orjson.dumps({"method": method, "url": url}),
            from_upstream=True,
        )

    async def aclose(self) -> None:
        pass


class _Ping:
    async def __call__(self, config, ctx) -> Reply:
        ctx.state["builtin"] = "ping"
        return Reply(200, [("content-type", "text/plain")], b"pong " + config.version.encode())


PINGS: StateKey[list] = StateKey("third-party")


class _ThirdParty(Feature):
    """Everything a feature may contribute, from outside the engine."""

    name = "third-party"
    folder = "pings.d"
    schema = None  # an unchecked folder is not read
    transports = {"echo": _EchoTransport}
    plugins = {"greeting": _Greeting}
    started: list[str] = []

    def compile(self, given: FeatureInput) -> Contribution:
        for route in given.core.routes:  # a validate check of the feature's own
            if route.name == "ping":
                given.errors.append(
                    ConfigError(
                        "the route name 'ping' is taken by the third-party feature",
                        file=route.source_file,
                        line=route.source_line,
                        col=3,
                        path=f"routes[{route.name}]",
                    )
                )

        async def started() -> None:
            self.started.append("up")

        async def stopped() -> None:
            self.started.append("down")

        return Contribution(
            endpoints={given.core.base_path + "/ping": _Ping()},
            openapi_paths={given.core.base_path + "/ping": {"get": {"responses": {"200": {"description": "pong"}}}}},
            listing=[
                {
                    "methods": ["GET"],
                    "path": given.core.base_path + "/ping",
                    "backend": "third-party",
                    "name": "ping",
                    "upstream": "-",
                    "configured": True,
                    "plugins": [],
                }
            ],
            startup=[started],
            shutdown=[stopped],
            state=["ping"],
        )

    def add_commands(self, commands) -> None:
        ping = commands.add_parser("ping", help="say pong")
        ping.set_defaults(handler=lambda args, out, err: out.write("pong\n") and 0)


def test_architecture_a_third_party_feature_contributes_through_the_seam(tmp_path, monkeypatch):
    root = write_config(
        tmp_path / "cfg",
        "version: 1\nbase_path: /api\nplugins: [request_id, greeting, envelope]\n",
        {
            "echo": "backend: echo\nprefix: /echo\nupstream: {url: 'echo://anything', transport: echo}\n"
            "routes:\n  - {name: one, method: GET, path: /one, upstream_path: /one}\n"
            "  - {name: bad, method: GET, path: /fail, upstream_path: /fail}\n"
        },
    )
    features = [*installed_features(), _ThirdParty()]
    monkeypatch.setattr(feature_seam, "installed_features", lambda: tuple(features))
    monkeypatch.setattr("gateway_engine.compiled.compiler.installed_features", lambda: tuple(features))
    monkeypatch.setattr("gateway_engine.cli.main.installed_features", lambda: tuple(features))
    config = load_config(root, {})
    assert config.state(PINGS) == ["ping"]
    with serve(create_app(str(root), {})) as url:
        answer = httpx.get(url + "/api/echo/one")
        assert answer.status_code == 200 and answer.headers["x-greeting"] == "hello"
        assert answer.json()["data"] == {"method": "GET", "url": "echo://anything/one"}, answer.text
        failed = httpx.get(url + "/api/echo/fail")
        assert failed.status_code == 502 and failed.json()["error"]["code"] == "ECHO_FAILED"
        assert httpx.get(url + "/api/ping").text == "pong " + config.version
        assert "/api/ping" in httpx.get(url + "/api/openapi.json").json()["paths"]
        assert _ThirdParty.started == ["up"]
    assert _ThirdParty.started == ["up", "down"]
    out = io.StringIO()
    assert run(["routes", "--config", str(root)], stdout=out) == 0 and "/api/ping" in out.getvalue()
    out = io.StringIO()
    assert run(["ping"], stdout=out) == 0 and out.getvalue() == "pong\n"
    (root / "routes.d" / "echo.yaml").write_text(
        (root / "routes.d" / "echo.yaml").read_text().replace("name: bad", "name: ping")
    )
    out = io.StringIO()
    assert run(["validate", "--config", str(root)], stdout=out) == 1
    assert (
        "routes.d/echo.yaml:6:3: routes[ping]: the route name 'ping' is taken by the third-party feature"
        in out.getvalue()
    )


def test_architecture_an_unknown_transport_is_a_located_error(tmp_path):
    root = write_config(
        tmp_path / "cfg",
        "version: 1\n",
        {
            "echo": "backend: echo\nprefix: /echo\nupstream: {url: 'echo://x', transport: carrier_pigeon}\n"
            "routes:\n  - {name: one, method: GET, path: /one}\n"
        },
    )
    out = io.StringIO()
    assert run(["validate", "--config", str(root)], stdout=out) == 1
    text = out.getvalue()
    assert "routes.d/echo.yaml:3:" in text and "unknown transport 'carrier_pigeon'" in text and "http1" in text


def test_architecture_the_gateway_mounts_inside_a_starlette_app(tmp_path, upstream, recorder):
    root = write_config(
        tmp_path / "cfg",
        "version: 1\nbase_path: /api\nplugins: [request_id, envelope]\n",
        {
            "echo": f"backend: echo\nprefix: /echo\nupstream: {{url: '{upstream}'}}\n"
            "routes:\n  - {name: one, method: GET, path: /one, upstream_path: /one}\n"
        },
    )
    gateway = create_app(str(root), {})

    async def home(request):
        return PlainTextResponse("the host app")

    host = Starlette(routes=[Route("/", home), Mount("/", app=gateway)], lifespan=gateway.lifespan)
    with serve(host) as url:
        assert httpx.get(url + "/").text == "the host app"
        answer = httpx.get(url + "/api/echo/one")
        assert answer.status_code == 200 and answer.json()["success"] is True
        assert recorder.requests[-1]["path"] == "/one"
        assert httpx.get(url + "/api/health").json()["status"] == "ok"
        assert httpx.get(url + "/api/nothing").json()["error"]["code"] == "ROUTE_NOT_FOUND"
    assert gateway.started is False  # the host's lifespan shut the gateway down with it
