"""``python -m bench.cluster``: three gateways behind nginx on one Redis and one PostgreSQL, restarted one at a
time under a steady wrk load; then shared rate limits, key revocation, webhook delivery and realtime checked.

Everything runs on 127.0.0.1, each process in its own session, started and stopped by this process only
(a rolling restart sends SIGTERM to the pid it started). See docs/cluster-test.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from . import cluster_probes as probes
from . import servers, wrk
from .cluster_config import POST_LUA, secrets_env, write_config
from .cluster_report import checks, table
from .cluster_services import Postgres, Receiver, Redis, lb_access_counts, lb_upstream_errors, load_balancer

INSTANCES = 3


@dataclass
class Options:
    duration: float = 20.0  # the least time wrk runs; it runs on until the restarts are done
    connections: int = 16
    rate_limit: int = 20  # the per-key limit per minute the shared counter must hold across instances
    gap: float = 2.0  # seconds between one instance being back and the next one's SIGTERM
    drain_timeout: float = 10.0
    revocation_bound: float = 1.0  # a revoked key is refused everywhere within this
    start_deadline: float = 60.0
    log_level: str = "warning"
    workdir: Path | None = None  # run here and keep it (logs, config); default: a temporary directory


class Cluster:
    """The engines, the upstream, three gateways on one config directory, and the load balancer."""

    def __init__(self, workdir: Path, options: Options) -> None:
        self.workdir, self.options = workdir, options
        self.postgres, self.redis = Postgres(), Redis(workdir)
        self.upstream = servers.nginx(workdir, None)
        self.secrets = secrets_env()
        self.config = write_config(workdir / "config")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "CLUSTER_"))}
        self.env = {
            **env,
            **self.secrets,
            "CLUSTER_STORE_URL": self.postgres.url,
            "CLUSTER_REDIS_URL": self.redis.url,
            "CLUSTER_UPSTREAM_URL": self.upstream.base,
        }
        self.gateways = [self._gateway(i) for i in range(1, INSTANCES + 1)]
        self.lb = load_balancer(workdir, [g.port for g in self.gateways])
        self.started: list[Any] = []

    def _gateway(self, n: int) -> servers.Server:
        port = servers.free_port()
        cmd = [
            *servers.gateway_command(),
            "serve",
            "--config",
            str(self.config),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-watch",
            "--log-level",
            self.options.log_level,
            "--drain-timeout",
            str(self.options.drain_timeout),
            "--data",
            str(self.workdir / f"data-{n}"),
        ]
        server = servers.Server(f"gateway-{n}", cmd, port, "/api/health", self.workdir, self.env)
        server.ready_deadline = self.options.start_deadline
        return server

    def start(self) -> None:
        for part in (self.postgres, self.redis, self.upstream):
            self.started.append(part)  # first: a part that fails to start is still cleaned up
            part.start()
        for gateway in self.gateways:  # together: the store's migration lock orders them
            gateway.start_only()
            self.started.append(gateway)
        for gateway in self.gateways:
            gateway._wait_ready()
        self.lb.start()
        self.started.append(self.lb)

    def stop(self) -> None:
        for part in reversed(self.started):
            try:
                part.stop()
            except Exception as exc:  # keep stopping the rest
                print(f"stopping {type(part).__name__}: {exc}", file=sys.stderr)
        self.started.clear()

    @property
    def bases(self) -> list[str]:
        return [g.base for g in self.gateways]


def restart(gateway: servers.Server, timeout: float) -> dict[str, Any]:
    """SIGTERM the instance's own pid, wait for its drain and exit, start it again and wait for /health."""
    assert gateway.proc is not None
    began = time.monotonic()
    gateway.proc.send_signal(signal.SIGTERM)
    try:
        code = gateway.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        gateway.proc.kill()
        code = gateway.proc.wait(10)
    exited = time.monotonic()
    gateway.start()
    return {
        "instance": gateway.name,
        "exit_code": code,
        "drain_s": round(exited - began, 2),
        "start_s": round(time.monotonic() - exited, 2),
    }


def start_wrk(url: str, connections: int, key: str, longest: float, script: Path | None = None) -> subprocess.Popen:
    """wrk in the background; it stops at SIGINT (and prints its report) or after ``longest`` seconds."""
    cmd = [shutil.which("wrk") or "wrk", "--latency", "-t1", f"-c{connections}", f"-d{longest:.0f}s", "--timeout", "5s"]
    if script is not None:
        cmd += ["-s", str(script)]
    return subprocess.Popen(
        [*cmd, "-H", f"x-api-key: {key}", url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def stop_wrk(proc: subprocess.Popen) -> dict[str, Any]:
    proc.send_signal(signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    if "Requests/sec:" not in out:
        raise wrk.WrkError(f"wrk exit {proc.returncode}: {(out + err).strip()[-300:]}")
    return wrk.parse(out)


def run(options: Options) -> dict[str, Any]:
    """One cluster run; returns every figure (the checks are applied by ``cluster_report.checks``)."""
    with tempfile.TemporaryDirectory(prefix="gw-cluster-") as tmp:
        workdir = Path(tmp) if options.workdir is None else options.workdir
        workdir.mkdir(parents=True, exist_ok=True)
        cluster, receiver = Cluster(workdir, options), Receiver()
        loads: dict[str, subprocess.Popen] = {}
        try:
            began = time.monotonic()
            cluster.start()
            receiver.start()
            startup_s = round(time.monotonic() - began, 1)
            ops = cluster.secrets["CLUSTER_OPS_KEY"]
            probes.register_endpoint(cluster.lb.base, ops, receiver.url)
            (workdir / "post.lua").write_text(POST_LUA)
            url, half = f"{cluster.lb.base}/api/bench/items", max(1, options.connections // 2)
            loads["GET"] = start_wrk(url, options.connections - half, ops, options.duration + 300)
            loads["POST"] = start_wrk(url, half, ops, options.duration + 300, workdir / "post.lua")
            load_began = time.monotonic()
            time.sleep(1.0)
            emits, restarts, revocation = [], [], {}
            for i, gateway in enumerate(cluster.gateways):
                emits.append(probes.emit(cluster.lb.base, ops, i))
                restarts.append(restart(gateway, options.drain_timeout + 10))
                if i == 0:  # under load, with one instance freshly restarted
                    revocation = probes.revocation(cluster.bases, ops, bound=max(10.0, options.revocation_bound))
                time.sleep(options.gap)
            emits.append(probes.emit(cluster.lb.base, ops, INSTANCES))
            rate = probes.rate_limit(cluster.bases, ops, options.rate_limit)
            time.sleep(max(0.0, options.duration - (time.monotonic() - load_began)))
            load = {method: stop_wrk(proc) for method, proc in loads.items()}
            loads.clear()
            realtime = probes.realtime(
                cluster.bases, cluster.secrets["CLUSTER_JWT_SECRET"], cluster.secrets["CLUSTER_HOOK_SECRET"]
            )
            delivered = probes.wait_deliveries(receiver.received, sum(e == 200 for e in emits), timeout=30, settle=2)
            time.sleep(1.2)  # the LB flushes its access log every second
            logs = [g.stderr_path for g in cluster.gateways] + [g.stdout_path for g in cluster.gateways]
            return {
                "options": asdict(options),
                "startup_s": startup_s,
                "load": load,
                "lb": lb_access_counts(workdir),
                "lb_upstream_errors": lb_upstream_errors(workdir),
                "restarts": restarts,
                "log_errors": probes.scan_logs(logs),
                "rate_limit": rate,
                "revocation": revocation,
                "webhooks": {"emits": emits, "ids": delivered},
                "realtime": realtime,
            }
        finally:
            for proc in loads.values():
                proc.kill()
                proc.wait(10)
            receiver.stop()
            cluster.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cluster", description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=20.0, help="least seconds of wrk load (default 20)")
    parser.add_argument(
        "--connections", type=int, default=16, help="wrk connections through the LB, half GET, half POST (default 16)"
    )
    parser.add_argument("--rate-limit", type=int, default=20, help="the shared per-key limit per minute (default 20)")
    parser.add_argument("--gap", type=float, default=2.0, help="seconds between two instances' restarts (default 2)")
    parser.add_argument("--log-level", default="warning", help="the gateways' --log-level (default warning)")
    parser.add_argument("--workdir", type=Path, help="run in this directory and keep it (logs, config, LB log)")
    parser.add_argument("--out", type=Path, default=servers.REPO / "bench" / "results", help="where the JSON goes")
    args = parser.parse_args(argv)
    for tool in ("nginx", "wrk", "redis-server"):
        if shutil.which(tool) is None:
            print(f"{tool} is missing: apt-get install -y nginx wrk redis-server postgresql-15", file=sys.stderr)
            return 2
    options = Options(
        duration=args.duration,
        connections=args.connections,
        rate_limit=args.rate_limit,
        gap=args.gap,
        log_level=args.log_level,
        workdir=args.workdir,
    )
    results = run(options)
    results["checks"] = checks(results, options)
    print(table(results))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest-cluster.json").write_text(json.dumps(results, indent=2, default=str))
    return 0 if all(c["ok"] for c in results["checks"]) else 1


if __name__ == "__main__":
    sys.exit(main())
