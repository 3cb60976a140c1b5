"""``python -m bench.compare REF``: the gateway at a git ref (A) against the working tree (B).

Both gateways run side by side on one nginx upstream, pinned to the same core, and take
turns (A B, B A, A B, ...) with a short warm-up before every measured wrk run, so a slow
spell of the machine hits both alike. Each run also reports the gateway's CPU time per request
(its processes' on-CPU time over the requests wrk completed, user and kernel: the system calls
count too): unlike req/s it does not fall when other work takes the cores, so on a loaded machine
it is the figure to read. This is how docs/performance.md's "what each change bought"
figures are measured: a whole ``python -m bench`` run per side would put minutes of drift
between them.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from . import servers, wrk
from .__main__ import CONFIGS, LOAD_CORE, PATH, SERVER_CORE, Bench, ensure_tools, headers_for, parse_args

ROOT = Path(__file__).resolve().parent.parent


def checkout(ref: str, into: Path) -> Path:
    """A detached worktree of ``ref``, importable as the installed packages are named."""
    tree = into / "tree"
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), ref],
        check=True,
        capture_output=True,
        text=True,
    )
    (tree / "gateway_engine_plugins").symlink_to(tree / "plugins")  # what pyproject's package-dir maps
    (tree / "gateway_engine_schemas").symlink_to(tree / "schemas")
    return tree


def assert_imports_from(tree: Path) -> None:
    """Side A must really run the ref's code, not the installed (working tree) packages."""
    code = "import gateway_engine, gateway_engine_plugins; print(gateway_engine.__file__); print(gateway_engine_plugins.__file__)"
    files = subprocess.run(
        [sys.executable, "-c", code], cwd=tree, capture_output=True, text=True, check=True
    ).stdout.split()
    outside = [f for f in files if not Path(f).resolve().is_relative_to(tree.resolve())]
    if outside:
        raise SystemExit(f"side A would import {outside} instead of the checkout of the ref")


def gateway_at(tree: Path, slug: str, config: str, workdir: Path, env: dict) -> servers.Server:
    """``python -m gateway_engine`` run from the worktree: ``-m`` puts the current directory first on
    sys.path, so the engine and (through the symlinks) the plugins are imported from that ref."""
    port = servers.free_port()
    cmd = [
        sys.executable,
        "-m",
        "gateway_engine",
        "serve",
        "--config",
        str(CONFIGS / config),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    return servers.Server(slug, servers.pinned(cmd, SERVER_CORE), port, "/api/gateway/health", workdir, env, cwd=tree)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__.split("\n\n")[0])
    p.add_argument("ref", help="git ref of side A (e.g. HEAD~3, a commit, a branch); side B is the working tree")
    p.add_argument("--rounds", type=int, default=10, help="measured runs per side (default 10)")
    p.add_argument("--duration", type=float, default=5, help="seconds of each measured run (default 5)")
    p.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    p.add_argument("--config", choices=("bare", "full", "full-jwt"), default="full", help="bench config (default full)")
    args = p.parse_args(argv)
    ensure_tools()
    bench = Bench(parse_args([]))
    with tempfile.TemporaryDirectory(prefix="gateway-compare-") as tmp:
        tree = checkout(args.ref, Path(tmp))
        try:
            assert_imports_from(tree)
            upstream = bench.start("upstream", servers.nginx(bench.workdir, LOAD_CORE), path="/items")
            env = bench.gateway_env(upstream["server"])
            headers = headers_for(args.config, env)
            sides = {
                "A": bench.start(
                    f"A {args.ref}", gateway_at(tree, "compare-a", args.config, bench.workdir, env), PATH, headers
                ),
                "B": bench.gateway(args.config, env),
            }
            if any(t["error"] for t in sides.values()):
                return 1
            runs: dict[str, list[dict]] = {"A": [], "B": []}
            for i in range(args.rounds):
                for side in "AB" if i % 2 == 0 else "BA":
                    t = sides[side]
                    wrk.run(t["url"], 1, args.connections, t["headers"], LOAD_CORE)
                    pids = servers.process_tree(t["server"].proc.pid)
                    cpu = servers.cpu_seconds(pids)
                    run = wrk.run(t["url"], args.duration, args.connections, t["headers"], LOAD_CORE)
                    run["cpu_us"] = (servers.cpu_seconds(pids) - cpu) / max(1, run["requests"]) * 1e6
                    runs[side].append(run)
                    print(
                        f"round {i + 1}/{args.rounds}  {side}  {run['requests_per_sec']:8,.0f} req/s  "
                        f"p99 {run['p99_ms']:.2f} ms  CPU {run['cpu_us']:6.1f} µs/request  non-2xx {run['non_2xx_3xx']}",
                        flush=True,
                    )
        finally:
            bench.close()
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], capture_output=True)
    median = {s: statistics.median(r["requests_per_sec"] for r in runs[s]) for s in runs}
    cpu = {s: statistics.median(r["cpu_us"] for r in runs[s]) for s in runs}
    for side, label in (("A", args.ref), ("B", "working tree")):
        p99 = statistics.median(r["p99_ms"] for r in runs[side])
        print(
            f"{side} ({label}): median {median[side]:,.0f} req/s, median p99 {p99:.2f} ms, "
            f"median CPU {cpu[side]:.1f} µs/request"
        )
    print(f"B/A = {median['B'] / median['A']:.3f} (req/s); CPU per request B/A = {cpu['B'] / cpu['A']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
