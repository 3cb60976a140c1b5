"""``python -m bench``: measure the gateway against an nginx upstream and a Starlette ceiling.

Targets run in interleaved rounds (A B C D, A B C D, ...) so that a slow spell of the
machine spreads over all of them instead of sinking one; each measured run follows an
unmeasured warm-up. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from . import peers, report, servers, wrk

CONFIGS = Path(__file__).resolve().parent / "configs"
PATH = "/api/gateway/bench/items"
PATHS = {
    "bare": PATH,
    "full": PATH,
    "full-jwt": PATH,
    "full-stored": PATH,
    "aggregate": "/api/gateway/page/items",
}  # aggregate: three backends, one route
PIN = servers.TASKSET is not None and (os.cpu_count() or 1) >= 2
SERVER_CORE, LOAD_CORE = (0, 1) if PIN else (None, None)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Measure gateway-engine against an nginx upstream and a Starlette ceiling (see bench/README.md).",
    )
    p.add_argument("--duration", type=float, default=10, help="seconds of each measured run (default 10)")
    p.add_argument("--warmup", type=float, default=3, help="seconds of the warm-up before each run (default 3)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds, at least 3 (default 3)")
    p.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    p.add_argument("--quick", action="store_true", help="duration 3, warm-up 1, rounds 3")
    p.add_argument(
        "--workers-2",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also measure the full chain with --workers 2 (default on)",
    )
    p.add_argument(
        "--peers",
        action="store_true",
        help="measure the full chain with JWT beside the peers: a Starlette + aiohttp forwarder and the Express gateway",
    )
    p.add_argument(
        "--pin-upstream",
        action="store_true",
        help="run nginx on the server's core, so the server side has one core and wrk the other to itself",
    )
    p.add_argument("--soak", action="store_true", help="run only the soak against the full chain")
    p.add_argument("--soak-seconds", type=float, default=60, help="soak length (default 60)")
    p.add_argument("--soak-connections", type=int, default=64, help="soak connections (default 64)")
    p.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent / "results",
        help="directory for the JSON results (default bench/results)",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.duration, args.warmup, args.rounds = 3, 1, 3
    if args.rounds < 3:
        p.error("--rounds must be at least 3")
    return args


def ensure_tools() -> None:
    """apt-get install wrk and nginx if they are missing (this project's machines are Debian, as root)."""
    missing = [tool for tool in ("wrk", "nginx") if shutil.which(tool) is None]
    if missing:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update"], check=True, timeout=600, env=env)
        subprocess.run(["apt-get", "install", "-y", *missing], check=True, timeout=600, env=env)


def pinning_note(workers_2: bool, pin_upstream: bool = False) -> str:
    if not PIN:
        return "not pinned (taskset missing or fewer than 2 cores)"
    note = (
        "servers and nginx on core 0, wrk on core 1 (taskset)"
        if pin_upstream
        else "servers on core 0, wrk and nginx on core 1 (taskset)"
    )
    return note + "; the --workers 2 gateway is not pinned (wrk still on core 1)" if workers_2 else note


class Bench:
    """Owns the temp dir and every server started, so one ``close()`` tears everything down."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.workdir = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
        self.started: list[servers.Server] = []
        self.upstream_core = SERVER_CORE if getattr(args, "pin_upstream", False) else LOAD_CORE

    def close(self) -> None:
        for server in reversed(self.started):
            server.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def start(self, name: str, server: servers.Server, path: str = PATH, headers: dict | None = None) -> dict:
        """Start a server and return its target record; a failed start is recorded, not raised."""
        self.started.append(server)
        target = {
            "name": name,
            "url": server.base + path,
            "runs": [],
            "headers": headers or {},
            "server": server,
            "error": None,
        }
        try:
            server.start()
            print(f"started {name} (pid {server.proc.pid})", flush=True)
        except servers.StartError as e:
            target["error"] = f"failed to start: {e}"
            print(f"{name}: {target['error']}", flush=True)
        return target

    def gateway_env(self, upstream: servers.Server) -> dict:
        return {
            **os.environ,
            "BENCH_UPSTREAM_URL": upstream.base,
            "BENCH_API_KEY": secrets.token_urlsafe(24),
            "BENCH_JWT_SECRET": secrets.token_urlsafe(32),
            "BENCH_LOG_FILE": str(self.workdir / "gateway.log"),
            "BENCH_STORE_URL": f"sqlite:///{self.workdir / 'keys.db'}",
        }

    def stored_key(self, env: dict) -> str:
        """Issue the stored key the ``full-stored`` target authenticates with (through the CLI, as an operator would)."""
        cmd = [*servers.gateway_command(), "keys", "create", "--config", str(CONFIGS / "full-stored")]
        done = subprocess.run(
            [*cmd, "--name", "bench", "--scopes", "*"], env=env, capture_output=True, text=True, timeout=120
        )
        if done.returncode != 0:
            raise servers.StartError(f"keys create failed: {done.stderr.strip()[-500:]}")
        return json.loads(done.stdout)["key"]

    def upstream(self) -> dict:
        return self.start("upstream", servers.nginx(self.workdir, self.upstream_core), path="/items")

    def gateway(self, config: str, env: dict, workers: int = 1) -> dict:
        """The gateway on ``configs/<config>``; only a single worker is pinned (two need both cores)."""
        name = f"gateway {config}" + (f" --workers {workers}" if workers > 1 else "")
        core = SERVER_CORE if workers == 1 else None
        server = servers.gateway(f"gateway-{config}-{workers}", CONFIGS / config, self.workdir, env, workers, core)
        return self.start(name, server, PATHS[config], headers=headers_for(config, env))

    def gateway_stored(self, env: dict) -> dict:
        """The full chain with a stored key; a failed key issue is recorded like a failed start."""
        try:
            env = {**env, "BENCH_STORED_KEY": self.stored_key(env)}
        except (servers.StartError, subprocess.TimeoutExpired, ValueError, KeyError) as e:
            return {
                "name": "gateway full-stored",
                "url": "",
                "runs": [],
                "headers": {},
                "server": None,
                "error": str(e),
            }
        return self.gateway("full-stored", env)

    def measure(self, targets: list[dict]) -> None:
        """Interleaved rounds: a warm-up then a measured run per live target in each round."""
        a = self.args
        for rnd in range(1, a.rounds + 1):
            for t in targets:
                if t["error"]:
                    continue
                try:
                    wrk.run(t["url"], a.warmup, a.connections, t["headers"], LOAD_CORE)
                    run = wrk.run(t["url"], a.duration, a.connections, t["headers"], LOAD_CORE)
                    print(
                        f"round {rnd}/{a.rounds}  {t['name']:<26} {run['requests_per_sec']:>10,.0f} req/s"
                        f"  p99 {run['p99_ms']:.2f} ms",
                        flush=True,
                    )
                except wrk.WrkError as e:
                    run = {"error": str(e)}
                    print(f"round {rnd}/{a.rounds}  {t['name']:<26} {e}", flush=True)
                t["runs"].append(run)

    def benchmark(self) -> dict:
        a = self.args
        upstream = self.upstream()
        env = self.gateway_env(upstream["server"])
        targets = [
            upstream,
            self.start("ceiling", servers.ceiling(self.workdir, SERVER_CORE)),
            self.gateway("bare", env),
            self.gateway("full", env),
            self.gateway("full-jwt", env),
            self.gateway_stored(env),
            self.gateway("aggregate", env),
        ]
        self.measure(targets)
        self.record_rss(targets[2:])
        for t in targets[1:]:
            if t["server"] is not None:
                t["server"].stop()
        if a.workers_2:
            w2 = self.gateway("full", env, workers=2)
            self.measure([w2])
            self.record_rss([w2])
            w2["server"].stop()
            targets.append(w2)
        for t in targets:
            report.summarize(t)
        report.add_ratios(targets)
        return {"targets": targets, "checks": report.checks(targets)}

    @staticmethod
    def record_rss(targets: list[dict]) -> None:
        for t in targets:
            if not t["error"] and t["server"].proc.poll() is None:
                t["rss"] = t["server"].rss()

    def soak(self) -> dict:
        a = self.args
        upstream = self.upstream()
        gw = self.gateway("full", self.gateway_env(upstream["server"]))
        result = {"target": "gateway full", "seconds": a.soak_seconds, "connections": a.soak_connections}
        if upstream["error"] or gw["error"]:
            return {"soak": {**result, "error": upstream["error"] or gw["error"]}}
        script = self.workdir / "status.lua"
        script.write_text(wrk.STATUS_LUA)
        try:
            wrk.run(gw["url"], a.warmup, a.soak_connections, gw["headers"], LOAD_CORE)
            start = gw["server"].rss()
            run = wrk.run(gw["url"], a.soak_seconds, a.soak_connections, gw["headers"], LOAD_CORE, script)
        except wrk.WrkError as e:
            return {"soak": {**result, "error": str(e)}}
        if gw["server"].proc.poll() is not None:
            error = f"gateway exited during the soak: {gw['server'].stderr_tail()}"
            return {"soak": {**result, "error": error, "wrk": run}}
        end = gw["server"].rss()
        growth = (end["total_mb"] - start["total_mb"]) / start["total_mb"] * 100
        return {"soak": {**result, "wrk": run, "rss_start": start, "rss_end": end, "rss_growth_pct": growth}}

    def peers(self) -> dict:
        """One interleaved run of the ceiling, the forwarder, the full chain with JWT and the Express peer twice."""
        upstream = self.upstream()
        env = self.gateway_env(upstream["server"])
        targets = [
            upstream,
            self.start("ceiling", servers.ceiling(self.workdir, SERVER_CORE)),
            self.start("forwarder (Starlette + aiohttp)", peers.forwarder(self.workdir, env, SERVER_CORE)),
            self.gateway("full-jwt", env),
        ]
        bearer = {"Authorization": f"Bearer {peers.bench_token(env['BENCH_JWT_SECRET'])}"}
        try:
            installed = peers.install_express(peers.express_source())
        except peers.PeerError as e:
            targets.append({"name": "express", "url": "", "runs": [], "headers": {}, "server": None, "error": str(e)})
        else:
            for keyobject, label in ((True, "express (KeyObject)"), (False, "express (typical)")):
                peer = peers.express(installed, self.workdir, env, keyobject=keyobject, core=SERVER_CORE)
                targets.append(self.start(label, peer, path=peers.EXPRESS_PATH, headers=bearer))
        self.measure(targets)
        self.record_rss([t for t in targets if t["name"] == peers.REFERENCE])
        for t in targets:
            report.summarize(t)
        report.add_ratios(targets)
        peers.add_ratios_to(targets)
        return {"targets": targets, "checks": report.peer_checks(targets)}


def headers_for(config: str, env: dict) -> dict:
    """What a bench client sends to ``configs/<config>``: the API key, or a Bearer JWT, and an Origin."""
    if config in ("full", "aggregate"):
        return {"x-api-key": env["BENCH_API_KEY"], "Origin": "http://localhost:5000"}
    if config == "full-stored":
        return {"x-api-key": env["BENCH_STORED_KEY"], "Origin": "http://localhost:5000"}
    if config == "full-jwt":
        return {
            "Authorization": f"Bearer {peers.bench_token(env['BENCH_JWT_SECRET'])}",
            "Origin": "http://localhost:5000",
        }
    return {}


def soak_text(s: dict) -> str:
    head = f"Soak: {s['target']}, {s['seconds']:g} s at {s['connections']} connections"
    if "error" in s:
        return f"{head}\n  {s['error']}"
    w = s["wrk"]
    classes = " ".join(f"{k}={v}" for k, v in w.get("status_classes", {}).items())
    return "\n".join(
        [
            head,
            f"  requests completed: {w['requests']:,} ({w['requests_per_sec']:,.0f} req/s, "
            f"p50 {w['p50_ms']:.2f} ms, p99 {w['p99_ms']:.2f} ms)",
            f"  responses by status class: {classes or 'n/a'}; non-2xx/3xx (wrk): {w['non_2xx_3xx']}",
            f"  socket errors: {w['socket_errors_total']} ("
            + ", ".join(f"{k} {v}" for k, v in w["socket_errors"].items())
            + ")",
            f"  gateway RSS: {s['rss_start']['total_mb']:.1f} MB after warm-up -> {s['rss_end']['total_mb']:.1f} MB"
            f" at end ({s['rss_growth_pct']:+.1f}%)",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM becomes SystemExit so the finally below still tears the servers down.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ensure_tools()
    info = report.machine()
    settings = (
        {"soak_seconds": args.soak_seconds, "soak_connections": args.soak_connections, "warmup": args.warmup}
        if args.soak
        else {
            "duration": args.duration,
            "warmup": args.warmup,
            "rounds": args.rounds,
            "connections": args.connections,
            "workers_2": args.workers_2 and not args.peers,
            "peers": args.peers,
        }
    )
    settings["pinning"] = pinning_note(args.workers_2 and not (args.soak or args.peers), args.pin_upstream)
    print(report.header(info, settings), flush=True)
    bench = Bench(args)
    try:
        data = bench.soak() if args.soak else bench.peers() if args.peers else bench.benchmark()
    except KeyboardInterrupt:
        print("\ninterrupted: stopping the servers, nothing written", file=sys.stderr)
        return 130
    finally:
        bench.close()
    info["cpu_busy_pct_after_end"] = report.cpu_busy_pct()
    if info["cpu_busy_pct_after_end"] > 10:
        print(
            f"WARNING: the CPU was {info['cpu_busy_pct_after_end']:.0f}% busy after the servers stopped:"
            " other processes were probably running during the measurements too"
        )
    data = {"machine": info, "settings": settings, **data}
    if args.soak:
        print("\n" + soak_text(data["soak"]))
    else:
        for t in data["targets"]:
            del t["server"]
            t["headers"] = sorted(t["headers"])  # names only: the API key is a secret
        print(
            "\n"
            + report.table(data["targets"])
            + "\n\n"
            + report.rss_lines(data["targets"])
            + "\n\n"
            + report.checks_text(data["checks"])
        )
    suffix = "-soak" if args.soak else "-peers" if args.peers else ""
    path = report.write_json(data, args.out, suffix)
    print(f"\nwrote {path} and {path.with_name(f'latest{suffix}.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
