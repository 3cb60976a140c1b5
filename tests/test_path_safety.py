"""Path parameters never leave the base path of an upstream that decodes and normalises (issue 13: D2, D17).

The upstream here is a real Starlette app under uvicorn: it decodes the path (``scope["path"]``), serves
``StaticFiles`` from ``public/`` and ``private/``, and every request is recorded with the path a normalising
server (Tomcat-style: ``;params`` dropped, ``\\`` as ``/``, dot-segments resolved) would serve.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import posixpath
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from gateway_engine import load_config
from gateway_engine.runtime.invoke import invoke
from tests.servers import serve, write_config

GATEWAY = "version: 1\nbase_path: /api\nplugins: [request_id, envelope]\n"
ROUTES = """
backend: svc
prefix: /svc
upstream: {{url: "{url}/base"}}
routes:
  - {{name: item, method: GET, path: "/items/{{id}}", upstream_path: "/items/{{id}}"}}
  - name: opaque
    method: GET
    path: "/opaque/{{id}}"
    upstream_path: "/opaque/{{id}}"
    params: {{id: {{allow_encoded_slash: true}}}}
  - {{name: files, method: GET, path: "/files/{{rest:path}}", upstream_path: "/files/public/{{rest}}"}}
  - name: lookup
    method: GET
    path: /lookup
    upstream_path: "/users/{{user}}"
    request: {{params: {{user: "{{{{ query.user }}}}"}}}}
  - name: objects
    method: GET
    path: /objects
    upstream_path: "/objects/{{key:path}}"
    request: {{params: {{key: "{{{{ query.key }}}}"}}}}
  - name: tagged
    method: GET
    path: "/tagged/{{tag}}"
    upstream_path: /tagged
    request: {{headers: {{x-tag: "{{{{ params.tag }}}}"}}}}
"""


def normalise(path: str) -> str:
    """The path a normalising upstream serves: ``\\`` is ``/``, ``;params`` dropped, dot-segments resolved."""
    out: list[str] = []
    for segment in path.replace("\\", "/").split("/"):
        core = segment.split(";", 1)[0]
        if core == "..":
            if out:
                out.pop()
        elif core != ".":
            out.append(core)
    return "/".join(out) or "/"


class Seen:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []


def hostile_upstream(seen: Seen, root) -> Any:
    """Starlette: StaticFiles under /base/files, and an echo of the decoded path for everything else."""

    async def echo(request: Request) -> JSONResponse:
        return JSONResponse({"path": request.scope["path"], "headers": dict(request.headers)})

    app = Starlette(routes=[Mount("/base/files", StaticFiles(directory=str(root))), Route("/{anything:path}", echo)])

    async def recording(scope, receive, send):
        if scope["type"] == "http":
            seen.requests.append(
                {
                    "raw_path": scope["raw_path"].decode("latin-1"),
                    "path": scope["path"],
                    "normalised": normalise(scope["path"]),
                }
            )
        await app(scope, receive, send)

    return recording


@pytest.fixture
def seen() -> Seen:
    return Seen()


@pytest.fixture
def svc(gateway, seen, tmp_path) -> Iterator[str]:
    files = tmp_path / "files"
    (files / "public").mkdir(parents=True)
    (files / "private").mkdir()
    (files / "public" / "ok.txt").write_text("public")
    (files / "private" / "secret.txt").write_text("SECRET-FILE")
    with serve(hostile_upstream(seen, files)) as url:
        yield gateway(GATEWAY, {"svc": ROUTES.format(url=url)})


def raw_get(base: str, raw_path: str) -> tuple[int, bytes]:
    """GET with the path sent byte for byte (httpx would normalise it)."""
    host, port = base.split("//")[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", raw_path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def assert_bad_path(svc: str, seen: Seen, path: str) -> None:
    status, data = raw_get(svc, path)
    assert status == 400, (path, status, data, seen.requests)
    assert json.loads(data)["error"]["code"] == "BAD_PATH", data
    assert b"SECRET-FILE" not in data
    assert seen.requests == [], seen.requests


@pytest.mark.parametrize(
    "param",
    [
        "..%2Fusers%2Fme",
        "%2e%2e%2fusers%2fme",
        "%2E%2E%2Fusers",
        "..%5Cadmin",
        "a%2Fb",
        "%2F%2Fevil.example",
        "a%5Cb",
        "..;",
        "..;jsessionid=1",
        ".;x",
        "%2e%2e;x",
        "%2e.;x",
        ".%2E",
        "...",
        "..%20",
        "%252e%252e",
        "%252e%252e%252fadmin",
        "a%252Fb",
        "%2e%252e",
    ],
)
def test_path_single_segment_param_cannot_climb(svc, seen, param):
    assert_bad_path(svc, seen, f"/api/svc/items/{param}")


@pytest.mark.parametrize(
    "rest",
    [
        "..%2Fprivate%2Fsecret.txt",
        "x/..%2F..%2Fprivate%2Fsecret.txt",
        "%2e%2e/private/secret.txt",
        "a/..;/..;/private/secret.txt",
        "..%5Cprivate%5Csecret.txt",
        "%252e%252e/private/secret.txt",
        "x/%2e%2e%2f%2e%2e%2fprivate/secret.txt",
        "..;x/private/secret.txt",
        "%2Fetc%2Fpasswd",
    ],
)
def test_path_catch_all_cannot_reach_a_sibling_directory(svc, seen, rest):
    assert_bad_path(svc, seen, f"/api/svc/files/{rest}")


@pytest.mark.parametrize("param", ["..%2Fadmin", "a%2F..%2F..%2Fadmin", "..;x", "%2e%2e", "a%2F%2Fb", "%2Fadmin"])
def test_path_opt_in_encoded_slash_still_refuses_dot_segments(svc, seen, param):
    assert_bad_path(svc, seen, f"/api/svc/opaque/{param}")


@pytest.mark.parametrize("user", ["../admin", "..", "a/b", "..;x", "a\\b", "%2e%2e", "%2e%2e%2fadmin"])
def test_path_computed_param_cannot_climb(svc, seen, user):
    from urllib.parse import quote

    assert_bad_path(svc, seen, "/api/svc/lookup?user=" + quote(user, safe=""))


@pytest.mark.parametrize("key", ["a/../../admin", "../x", "a/..;/x", "a%2F..%2F..%2Fadmin", "a/./b", "a//b"])
def test_path_computed_path_param_cannot_climb(svc, seen, key):
    from urllib.parse import quote

    assert_bad_path(svc, seen, "/api/svc/objects?key=" + quote(key, safe=""))


def test_path_static_files_serves_public_only(svc, seen):
    status, data = raw_get(svc, "/api/svc/files/ok.txt")
    assert (status, data) == (200, b"public")
    assert seen.requests[-1]["raw_path"] == "/base/files/public/ok.txt"


@pytest.mark.parametrize(
    "param, sent",
    [
        ("a.b", "/base/items/a.b"),
        ("..a", "/base/items/..a"),
        ("a..", "/base/items/a.."),
        (".a", "/base/items/.a"),
        ("a%20b", "/base/items/a%20b"),
        ("caf%C3%A9", "/base/items/caf%C3%A9"),
        ("%E2%9C%93", "/base/items/%E2%9C%93"),
        ("a;b", "/base/items/a%3Bb"),
        ("a%3Bb", "/base/items/a%3Bb"),
        ("%3Fx=1%23frag", "/base/items/%3Fx=1%23frag"),
        ("user%40evil.example", "/base/items/user%40evil.example"),
        (":8080", "/base/items/:8080"),
        ("100%25", "/base/items/100%25"),
    ],
)
def test_path_normal_values_pass_encoded(svc, seen, param, sent):
    status, data = raw_get(svc, f"/api/svc/items/{param}")
    assert status == 200, data
    assert seen.requests[-1]["raw_path"] == sent
    assert seen.requests[-1]["normalised"].startswith("/base/items/")


@pytest.mark.parametrize("param, sent", [("a%2Fb", "/base/opaque/a%2Fb"), ("a.b%2F..c", "/base/opaque/a.b%2F..c")])
def test_path_opt_in_keeps_the_slash_encoded(svc, seen, param, sent):
    status, data = raw_get(svc, f"/api/svc/opaque/{param}")
    assert status == 200, data
    assert seen.requests[-1]["raw_path"] == sent


def test_path_catch_all_and_computed_normal_values(svc, seen):
    assert raw_get(svc, "/api/svc/objects?key=photos%2F2026%2Fcat%3B1.png")[0] == 200
    assert seen.requests[-1]["raw_path"] == "/base/objects/photos/2026/cat%3B1.png"
    assert raw_get(svc, "/api/svc/lookup?user=a.b%40x")[0] == 200
    assert seen.requests[-1]["raw_path"] == "/base/users/a.b%40x"


def test_path_param_in_a_header_template_cannot_inject_a_header(svc, seen):
    status, _ = raw_get(svc, "/api/svc/tagged/a%0D%0AX-Injected:%201")
    assert status == 400
    assert seen.requests == []
    assert raw_get(svc, "/api/svc/tagged/a%20b")[0] == 200


def test_path_invoke_params_cannot_climb(tmp_path, seen):
    """Workflows and webhook actions call routes by name with params from templates over event data."""
    files = tmp_path / "files"
    (files / "public").mkdir(parents=True)
    with serve(hostile_upstream(seen, files)) as url:
        root = write_config(tmp_path / "cfg", GATEWAY, {"svc": ROUTES.format(url=url)})
        config = load_config(root, {})

        async def run(route: str, params: dict) -> Any:
            return await invoke(config, route, params=params)

        async def all_calls() -> list:
            try:
                return [
                    await run("svc.item", {"id": "../admin"}),
                    await run("svc.item", {"id": ".."}),
                    await run("svc.files", {"rest": "a/../../private"}),
                    await run("svc.item", {"id": "..;x"}),
                    await run("svc.item", {"id": "a.b"}),
                ]
            finally:
                await config.shutdown()

        results = asyncio.run(all_calls())
    assert [r.status for r in results] == [400, 400, 400, 400, 200]
    assert all(r.body["error"]["code"] == "BAD_PATH" for r in results[:4])
    assert [r["raw_path"] for r in seen.requests] == ["/base/items/a.b"]


def test_path_fuzzed_values_never_leave_the_base(svc, seen):
    """Every segment shape from the issue, mixed: whatever reaches the upstream normalises below its base."""
    pieces = ["..", ".", "%2e", "%2E%2e", "%2f", "%5c", ";", ";x", "%3b", "%252e", "%252f", "a", "%00"]
    for first in pieces:
        for second in pieces:
            for path in (
                f"/api/svc/items/{first}{second}",
                f"/api/svc/files/{first}{second}/x",
                f"/api/svc/files/x/{first}/{second}",
                f"/api/svc/opaque/{first}{second}",
            ):
                before = len(seen.requests)
                status, _ = raw_get(svc, path)
                assert status in (200, 400, 404), (path, status)
                for sent in seen.requests[before:]:
                    base = "/base/" + path.split("/")[3] + "/"
                    assert sent["normalised"].startswith(base.replace("/files/", "/files/public/")), (path, sent)
                    assert posixpath.normpath(sent["path"]).startswith(base.rstrip("/")), (path, sent)


def validate(root) -> tuple[int, str]:
    import io

    from gateway_engine.cli.main import run

    out = io.StringIO()
    return run(["validate", "--config", str(root)], stdout=out, stderr=out), out.getvalue()


@pytest.mark.parametrize("upstream_path", ["{id}", "x/{id}", "//evil.example/{id}", "@evil.example/{id}"])
def test_path_upstream_path_must_start_with_one_slash(tmp_path, upstream_path):
    """``upstream_path: "{id}"`` let ``/api/t/:PORT`` pick the upstream's port and ``/.evil.example`` its host (D17)."""
    root = write_config(
        tmp_path,
        GATEWAY,
        {
            "t": (
                "backend: t\nprefix: /t\nupstream: {url: 'http://127.0.0.1:9'}\nroutes:\n"
                f"  - name: r\n    method: GET\n    path: '/{{id}}'\n    upstream_path: '{upstream_path}'\n"
            )
        },
    )
    code, out = validate(root)
    assert code == 1
    assert out.startswith("routes.d/t.yaml:8:5: routes[0].upstream_path: "), out
    assert "starts with `/`" in out


@pytest.mark.parametrize(
    "url, problem",
    [
        ("http://127.0.0.1:9/v1?key=SECRET", "query"),
        ("http://127.0.0.1:9/v1#x", "query"),
        ("http://127.0.0.1:9\\\\@evil.example/", "backslash"),
        ("http://127.0.0.1:port/", "port"),
        ("http:///x", "host"),
        ("http://127.0.0.1:9/a b", "whitespace"),
    ],
)
def test_path_upstream_url_is_an_origin_and_a_path(tmp_path, url, problem):
    root = write_config(
        tmp_path,
        GATEWAY,
        {
            "t": (
                f"backend: t\nprefix: /t\nupstream: {{url: '{url}'}}\nroutes:\n  - {{name: r, method: GET, path: /r}}\n"
            )
        },
    )
    code, out = validate(root)
    assert code == 1 and out.startswith("routes.d/t.yaml:3:12: upstream.url: ") and problem in out, out
    assert "SECRET" not in out


def test_path_opt_in_is_for_one_segment_params(tmp_path):
    root = write_config(
        tmp_path,
        GATEWAY,
        {
            "t": (
                "backend: t\nprefix: /t\nupstream: {url: 'http://127.0.0.1:9'}\nroutes:\n"
                "  - name: r\n    method: GET\n    path: '/{rest:path}'\n    params: {rest: {allow_encoded_slash: true}}\n"
            )
        },
    )
    code, out = validate(root)
    assert code == 1 and "routes[0].params.rest.allow_encoded_slash: " in out, out


@pytest.mark.parametrize("folder", [".", "examples/microservices", "tests/fixtures/kitchen_sink"])
def test_path_shipped_configs_still_validate(folder):
    from pathlib import Path

    code, out = validate(Path(__file__).resolve().parent.parent / folder)
    assert code == 0, out


def test_path_default_upstream_path_must_not_start_with_two_slashes(tmp_path):
    root = write_config(
        tmp_path,
        GATEWAY,
        {
            "t": (
                "backend: t\nprefix: /t\nupstream: {url: 'http://127.0.0.1:9'}\nroutes:\n"
                "  - {name: r, method: GET, path: '//evil.example/{id}'}\n"
            )
        },
    )
    code, out = validate(root)
    assert code == 1 and out.startswith("routes.d/t.yaml:5:5: routes[0].upstream_path: upstream_path must start"), out


def test_query_client_cannot_override_keys_the_gateway_sets(gateway, upstream, recorder):
    """A client copy of a `set` key or of the query-style upstream key comes first, and many servers read the
    first (Flask, servlets, Go): the gateway's own keys must be the only ones of their name."""
    gw = gateway(
        GATEWAY,
        {
            "svc": f"""
backend: svc
prefix: /svc
upstream: {{url: "{upstream}", auth: {{style: query, param: api_key, value: "${{KEY}}"}}}}
routes:
  - {{name: pass, method: GET, path: /pass, upstream_path: /pass, request: {{query: {{set: {{tenant: t1, "where[slug]": x}}}}}}}}
  - name: allow
    method: GET
    path: /allow
    upstream_path: /allow
    request: {{query: {{allow: [a, tenant, api_key], set: {{tenant: t1}}}}}}
"""
        },
        env={"KEY": "REAL"},
    )
    import httpx

    with httpx.Client() as c:
        c.get(gw + "/api/svc/pass?a=1&api_key=mine&tenant=t2&tenant%5Bx%5D=1&where%5Bslug%5D=y&api%5Fkey=m2&b=2")
        assert recorder.last["query"] == "a=1&b=2&tenant=t1&where%5Bslug%5D=x&api_key=REAL"
        c.get(gw + "/api/svc/allow?a=1&tenant=t2&api_key=mine")
        assert recorder.last["query"] == "a=1&tenant=t1&api_key=REAL"


def test_path_mapped_values_are_checked_at_load(tmp_path):
    root = write_config(
        tmp_path,
        GATEWAY,
        {
            "t": (
                "backend: t\nprefix: /t\nupstream: {url: 'http://127.0.0.1:9'}\nroutes:\n"
                "  - name: r\n    method: GET\n    path: '/{kind}'\n    upstream_path: '/r/{kind}'\n"
                "    params: {kind: {map: {a: 'x/y', b: '..', c: 'fine value'}}}\n"
            )
        },
    )
    code, out = validate(root)
    assert code == 1
    assert "routes[0].params.kind.map.a: 'x/y': A path parameter holds a slash" in out, out
    assert "routes[0].params.kind.map.b: '..': " in out and "map.c" not in out, out
