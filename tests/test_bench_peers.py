"""``python -m bench --peers``: each peer really forwards and authenticates, and the ratios and checks
are read from one run's figures (no timing is asserted: timing belongs to the bench itself)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.servers import serve

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # bench/ is not part of the installed package

from bench import __main__ as bench_main  # noqa: E402
from bench import peers, report, servers  # noqa: E402

BODY = b'{"items":[1,2,3]}'


def upstream_app(seen: list[dict]) -> Starlette:
    async def answer(request: Request) -> Response:
        seen.append({"path": request.url.path, **{k.lower(): v for k, v in request.headers.items()}})
        return Response(BODY, media_type="application/json")

    return Starlette(routes=[Route("/{path:path}", answer)])


@pytest.fixture
def upstream():
    seen: list[dict] = []
    with serve(upstream_app(seen)) as url:
        yield url, seen


def env_for(url: str, tmp_path: Path) -> dict:
    return {
        **os.environ,
        "BENCH_UPSTREAM_URL": url,
        "BENCH_API_KEY": "bench-key-for-the-test-0123456789",
        "BENCH_JWT_SECRET": "bench-secret-for-the-test-0123456789abcdef",
        "BENCH_LOG_FILE": str(tmp_path / "gateway.log"),
    }


def running(server: servers.Server):
    server.start()
    return server


def test_bench_peers_forwarder_answers_the_upstreams_body(upstream, tmp_path):
    url, seen = upstream
    server = running(peers.forwarder(tmp_path, env_for(url, tmp_path), None))
    try:
        answer = httpx.get(server.base + bench_main.PATH, timeout=10)
    finally:
        server.stop()
    assert answer.status_code == 200 and answer.content == BODY
    assert seen[-1]["path"] == "/items"


def test_bench_peers_full_jwt_config_accepts_the_bench_token_and_only_it(upstream, tmp_path):
    url, seen = upstream
    env = env_for(url, tmp_path)
    server = running(servers.gateway("gw", bench_main.CONFIGS / "full-jwt", tmp_path, env, 1, None))
    try:
        good = httpx.get(server.base + bench_main.PATH, headers=bench_main.headers_for("full-jwt", env), timeout=10)
        forged = httpx.get(
            server.base + bench_main.PATH,
            headers={"Authorization": f"Bearer {peers.bench_token('another-secret-of-enough-length-0123456789')}"},
            timeout=10,
        )
    finally:
        server.stop()
    assert good.status_code == 200 and good.json()["success"] is True
    assert good.headers["access-control-allow-origin"] == "http://localhost:5000"
    assert forged.status_code == 401 and forged.json()["error"]["code"] == "INVALID_TOKEN"
    assert len(seen) == 1


@pytest.mark.parametrize("keyobject", [True, False])
def test_bench_peers_express_verifies_the_token_and_forwards(upstream, tmp_path, keyobject):
    url, seen = upstream
    env = env_for(url, tmp_path)
    installed = peers.install_express(peers.express_source())
    assert not installed.is_relative_to(peers.express_source())  # never installed into the read-only folder
    server = running(peers.express(installed, tmp_path, env, keyobject=keyobject, core=None))
    try:
        token = peers.bench_token(env["BENCH_JWT_SECRET"])
        good = httpx.get(server.base + peers.EXPRESS_PATH, headers={"Authorization": f"Bearer {token}"}, timeout=10)
        missing = httpx.get(server.base + peers.EXPRESS_PATH, timeout=10)
    finally:
        server.stop()
    assert good.status_code == 200 and good.content == BODY
    assert missing.status_code == 401
    assert seen[-1]["path"] == "/api/items" and seen[-1]["x-user-id"] == "bench-user"


def test_bench_peers_install_reuses_a_finished_install_without_npm(tmp_path):
    source = peers.express_source()
    installed = peers.install_express(source)
    assert peers.install_express(source) == installed
    assert sorted(p.name for p in installed.iterdir() if p.is_file()) == sorted(peers.EXPRESS_FILES)


def test_bench_peers_missing_express_folder_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_EXPRESS_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(peers.PeerError, match="has no package-lock.json"):
        peers.express_source()


def test_bench_peers_options_pin_the_upstream_on_the_server_core():
    args = bench_main.parse_args(["--peers", "--pin-upstream"])
    assert args.peers and args.pin_upstream
    bench = bench_main.Bench(args)
    try:
        assert bench.upstream_core == bench_main.SERVER_CORE
    finally:
        bench.close()
    default = bench_main.Bench(bench_main.parse_args([]))
    try:
        assert default.upstream_core == bench_main.LOAD_CORE
    finally:
        default.close()
    assert "nginx on core 0" in bench_main.pinning_note(False, True) or not bench_main.PIN


def figures(name: str, rps: float, p99: float = 5.0) -> dict:
    return {"name": name, "runs": [{"requests_per_sec": rps, "p50_ms": 1.0, "p99_ms": p99, "non_2xx_3xx": 0,
                                    "socket_errors_total": 0}], "error": None}  # fmt: skip


def test_bench_peers_ratios_and_checks_come_from_the_same_run():
    targets = [
        figures("ceiling", 20_000),
        figures("forwarder (Starlette + aiohttp)", 5_000),
        figures("gateway full-jwt", 5_500, p99=9.0),
        figures("express (KeyObject)", 2_500),
        figures("express (typical)", 1_000),
    ]
    for t in targets:
        report.summarize(t)
    report.add_ratios(targets)
    peers.add_ratios_to(targets)
    by = {t["name"]: t for t in targets}
    assert by["forwarder (Starlette + aiohttp)"]["ratio_to_reference"] == pytest.approx(1.1)
    assert by["express (typical)"]["ratio_to_reference"] == pytest.approx(5.5)
    results = {c["check"]: c["result"] for c in report.peer_checks(targets)}
    assert results == {
        "full-jwt ≥ 1.0 × forwarder (Starlette + aiohttp)": "PASS",
        "full-jwt ≥ 5.0 × express (typical)": "PASS",
        "full-jwt ≥ 1.8 × express (KeyObject)": "PASS",
        "full-jwt ≥ 0.22 × ceiling": "PASS",
        "full-jwt p99 ≤ 10 ms": "PASS",
        "full-jwt: zero non-2xx / socket errors": "PASS",
    }
    assert report.REFERENCE_COLUMN in report.table(targets).splitlines()[0]


def test_bench_peers_a_peer_that_did_not_run_fails_its_check():
    targets = [figures("ceiling", 20_000), figures("gateway full-jwt", 5_500)]
    for t in targets:
        report.summarize(t)
    report.add_ratios(targets)
    peers.add_ratios_to(targets)
    results = {c["check"]: c["result"] for c in report.peer_checks(targets)}
    assert results["full-jwt ≥ 5.0 × express (typical)"] == "FAIL"
    assert results["full-jwt ≥ 0.22 × ceiling"] == "PASS"
