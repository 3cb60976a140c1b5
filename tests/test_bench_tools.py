"""The bench's helper tools: the in-process engine measurement and the checkout that bench.compare runs."""

import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # bench/ is not part of the installed package

from bench import compare, engine  # noqa: E402


def test_bench_engine_runs_every_config_through_the_real_chain(capsys):
    assert engine.main(["--requests", "2000"]) == 0  # it exits with an error if any answer is not a 200
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in out] == ["bare", "full", "full-jwt", "aggregate"]
    assert all("µs/request" in line for line in out)


def test_bench_engine_refuses_an_unknown_config(capsys):
    with pytest.raises(SystemExit) as exc:
        engine.main(["nonsense"])
    assert exc.value.code == 2 and "unknown config(s): nonsense" in capsys.readouterr().err


def test_bench_compare_side_a_imports_the_checked_out_ref_not_the_installed_code():
    with tempfile.TemporaryDirectory() as tmp:
        tree = compare.checkout("HEAD", Path(tmp))
        try:
            compare.assert_imports_from(tree)  # raises SystemExit naming the files otherwise
            code = "import gateway_engine_plugins.rate_limit as m; print(m.__file__)"
            found = subprocess.run([sys.executable, "-c", code], cwd=tree, capture_output=True, text=True, check=True)
            assert Path(found.stdout.strip()).resolve().is_relative_to(tree.resolve())
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], capture_output=True)


def test_bench_aggregate_scenario_calls_three_backends_for_one_request(upstream, recorder):
    """The three-backend scenario answers with every backend's part (the bench itself only counts 200s)."""
    import httpx

    from gateway_engine import create_app
    from tests.servers import serve

    env = {"BENCH_UPSTREAM_URL": upstream, "BENCH_API_KEY": "k" * 32, "BENCH_JWT_SECRET": "s" * 32}
    with tempfile.TemporaryDirectory() as tmp:
        env["BENCH_LOG_FILE"] = str(Path(tmp) / "gateway.log")
        with serve(create_app(str(ROOT / "bench" / "configs" / "aggregate"), env)) as url:
            answer = httpx.get(url + "/api/gateway/page/items", headers={"x-api-key": "k" * 32})
    assert answer.status_code == 200, answer.text
    data = answer.json()["data"]
    assert list(data) == ["one", "two", "three"] and all(part["path"] == "/items" for part in data.values())
    assert [b["backend"] for b in answer.json()["meta"]["backends"]] == ["one", "two", "three"]
    assert [r["path"] for r in recorder.requests] == ["/items"] * 3


def test_bench_realtime_runs_end_to_end_at_a_tiny_size():
    """Runnable, not measured: a few sockets, a few messages; the figures are the coordinator's to take."""
    found = subprocess.run(
        [sys.executable, "-m", "bench.realtime", "--sockets", "6", "--client-procs", "2", "--rate", "20"]
        + ["--seconds", "0.5", "--fanout", "2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = found.stdout
    assert "sockets connected     6 / 6" in out, found.stderr[-2000:]
    assert "KB/socket" in out and "p99" in out and "frames/s" in out
    assert "PASS  every message delivered" in out and "12 frames of 2 broadcasts" in out


def test_bench_cpu_time_counts_work_and_not_waiting():
    """bench.compare's CPU per request: a process's on-CPU time grows with its work, not while it sleeps."""
    import os
    import time

    from bench import servers

    pid = os.getpid()
    before = servers.cpu_seconds([pid])
    time.sleep(0.3)
    slept = servers.cpu_seconds([pid]) - before
    began, burn = time.thread_time(), 0
    while time.thread_time() - began < 0.3:
        burn += 1
    worked = servers.cpu_seconds([pid]) - before - slept
    assert slept < 0.1 and worked >= 0.25
    assert servers.cpu_seconds([]) == 0 and servers.cpu_seconds([2**22 + 12345]) == 0  # no such process
