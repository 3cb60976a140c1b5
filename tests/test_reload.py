"""Config changes without downtime: hot reload, rejected bad changes, pools kept, graceful shutdown."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time

import httpx

from tests.servers import free_port, write_config

GATEWAY = "version: 1\nbase_path: /api\nplugins: [envelope]\n"


def routes(url: str, path: str = "/a") -> str:
    return f"backend: b\nprefix: /b\nupstream: {{url: '{url}'}}\nroutes:\n  - {{name: r, method: GET, path: {path}, upstream_path: /echo}}\n"


def wait_for(predicate, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_reload_picks_up_a_changed_file(gateway, upstream):
    gw = gateway(GATEWAY, {"b": routes(upstream)}, watch=True)
    root = gateway.root
    with httpx.Client() as c:
        version = c.get(gw + "/api/health").json()["version"]
        assert c.get(gw + "/api/b/a").status_code == 200
        (root / "routes.d" / "b.yaml").write_text(routes(upstream, "/renamed"))
        assert wait_for(lambda: c.get(gw + "/api/health").json()["version"] != version)
        assert c.get(gw + "/api/b/renamed").status_code == 200
        assert c.get(gw + "/api/b/a").status_code == 404


def test_reload_rejects_a_broken_change_and_keeps_serving(gateway, upstream, caplog):
    gw = gateway(GATEWAY, {"b": routes(upstream)}, watch=True)
    root = gateway.root
    with httpx.Client() as c:
        version = c.get(gw + "/api/health").json()["version"]
        (root / "routes.d" / "b.yaml").write_text(
            routes(upstream) + "  - {name: bad, method: GET, path: /x, upstream_pth: /y}\n"
        )
        assert wait_for(lambda: "config reload rejected" in caplog.text)
        assert "routes.d/b.yaml:6" in caplog.text and "upstream_pth" in caplog.text
        assert c.get(gw + "/api/health").json()["version"] == version
        assert c.get(gw + "/api/b/a").status_code == 200


def test_reload_reuses_unchanged_upstream_pools(tmp_path, upstream):
    import asyncio

    from gateway_engine import load_config

    root = write_config(
        tmp_path / "c",
        GATEWAY,
        {
            "b": routes(upstream),
            "c": routes(upstream + "/c").replace("backend: b", "backend: c").replace("prefix: /b", "prefix: /c"),
        },
    )
    first = load_config(root, {})
    (root / "routes.d" / "c.yaml").write_text(
        routes(upstream + "/other").replace("backend: b", "backend: c").replace("prefix: /b", "prefix: /c")
    )
    second = load_config(root, {}, previous=first)
    by_backend = lambda cfg: {u.backend: u.transport for u in cfg.upstreams}
    assert by_backend(second)["b"] is by_backend(first)["b"]
    assert by_backend(second)["c"] is not by_backend(first)["c"]
    asyncio.run(first.shutdown(keep=second))
    asyncio.run(second.shutdown())


def test_reload_graceful_shutdown_finishes_in_flight_requests(tmp_path, upstream, recorder):
    root = write_config(
        tmp_path / "g",
        GATEWAY,
        {
            "b": f"backend: b\nprefix: /b\nupstream: {{url: '{upstream}', timeout: 10s}}\nroutes:\n  - {{name: slow, method: GET, path: /slow}}\n"
        },
    )
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway_engine",
            "serve",
            "--config",
            str(root),
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--drain-timeout",
            "10",
        ],
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        assert wait_for(lambda: _up(url), 20), proc.stderr.read1().decode() if proc.poll() is not None else "not up"
        results: list[tuple[int, dict]] = []

        def call():
            with httpx.Client(timeout=20) as c:
                r = c.get(url + "/api/b/slow", params={"s": 3})
                results.append((r.status_code, r.json()))

        threads = [threading.Thread(target=call) for _ in range(4)]
        for t in threads:
            t.start()
        # SIGTERM only once all four are in flight at the upstream (a loaded machine may take a while to send them)
        assert wait_for(lambda: recorder.counts.get("slow", 0) == 4, 20)
        proc.send_signal(signal.SIGTERM)
        for t in threads:
            t.join(20)
        assert [status for status, _ in results] == [200] * 4
        assert all(body["data"] == {"slow": True} for _, body in results)
        assert proc.wait(15) in (0, -signal.SIGTERM)  # uvicorn re-raises SIGTERM after its graceful shutdown
        assert not _up(url)
    finally:
        if proc.poll() is None:
            proc.kill()


def _up(url: str) -> bool:
    try:
        return httpx.get(url + "/api/health", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def test_reload_every_worker_converges(tmp_path, upstream):
    root = write_config(tmp_path / "w", GATEWAY, {"b": routes(upstream)})
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway_engine",
            "serve",
            "--config",
            str(root),
            "--port",
            str(port),
            "--workers",
            "2",
            "--log-level",
            "warning",
        ],
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        assert wait_for(lambda: _up(url), 30)

        def versions() -> set[str]:
            seen = set()
            for _ in range(20):  # fresh connections, so the kernel spreads them over both workers
                with httpx.Client() as c:
                    seen.add(c.get(url + "/api/health").json()["version"])
            return seen

        before = versions()
        assert len(before) == 1
        (root / "routes.d" / "b.yaml").write_text(routes(upstream, "/renamed"))

        def converged() -> bool:
            seen = versions()
            return len(seen) == 1 and not seen & before

        assert wait_for(converged, 20)
        with httpx.Client() as c:
            assert all(c.get(url + "/api/b/renamed").status_code == 200 for _ in range(10))
    finally:
        proc.terminate()
        proc.wait(15)


def test_reload_keeps_memory_rate_limit_counts(gateway, upstream):
    limited = "version: 1\nbase_path: /api\nplugins: [{rate_limit: {limit: 3/minute, key: ip}}, envelope]\n"
    gw = gateway(limited, {"b": routes(upstream)}, watch=True)
    root = gateway.root
    with httpx.Client() as c:
        before = [c.get(gw + "/api/b/a").status_code for _ in range(2)]
        version = c.get(gw + "/api/health").json()["version"]
        (root / "routes.d" / "b.yaml").write_text(
            routes(upstream) + "  - {name: s, method: GET, path: /s, upstream_path: /echo}\n"
        )
        assert wait_for(lambda: c.get(gw + "/api/health").json()["version"] != version)
        after = [c.get(gw + "/api/b/a") for _ in range(2)]
    assert before == [200, 200]
    assert after[0].status_code == 200 and after[0].headers["ratelimit-remaining"] == "0"  # the third of three
    assert after[1].status_code == 429  # the reload did not hand out a fresh budget


def test_reload_sighup_reloads_without_the_watcher(tmp_path, upstream):
    root = write_config(tmp_path / "h", GATEWAY, {"b": routes(upstream)})
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway_engine", "serve", "--config", str(root), "--port", str(port), "--no-watch"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        assert wait_for(lambda: _up(url), 20)
        before = httpx.get(url + "/api/health").json()["version"]
        (root / "routes.d" / "b.yaml").write_text(routes(upstream, "/renamed"))
        time.sleep(0.5)  # no watcher: the change alone is not picked up
        assert httpx.get(url + "/api/health").json()["version"] == before
        proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: _up(url) and httpx.get(url + "/api/health").json()["version"] != before, 20)
        assert httpx.get(url + "/api/b/renamed").status_code == 200
        assert proc.poll() is None
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=15)
    assert "config reloaded (SIGHUP)" in err.decode()
