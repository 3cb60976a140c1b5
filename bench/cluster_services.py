"""The cluster test's shared engines and its edge: Redis, PostgreSQL, the nginx load balancer, a webhook receiver.

Each runs on a free 127.0.0.1 port and is stopped through the handle this process got when it started
it (a Popen, or PostgreSQL's own pid file in its private data directory), never by name or port.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from .servers import REPO, Server, StartError, free_port

PG_BIN = Path("/usr/lib/postgresql/15/bin")


class Redis:
    """redis-server in the foreground (no pid file to go stale), no persistence."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}"
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        cmd = [binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no"]
        self.server = Server("redis", [*cmd, "--dir", str(workdir)], self.port, "", workdir)

    def start(self) -> None:
        self.server.start_only()
        deadline = time.monotonic() + 15
        while not _redis_ping(self.port):
            if self.server.proc is not None and self.server.proc.poll() is not None:
                raise StartError(f"redis-server exited: {self.server.stderr_tail()}")
            if time.monotonic() > deadline:
                raise StartError("redis-server did not answer PING within 15s")
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.stop()


def _redis_ping(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _as_postgres(argv: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: then its commands run as the ``postgres`` user."""
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


class Postgres:
    """A private PostgreSQL 15 cluster (fsync off: a test database) in a directory of its own.

    Not inside the run's directory: that one is private to this user, and the server may run as ``postgres``.
    """

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="gw-cluster-pg-"))
        self.port = free_port()
        self.url = f"postgresql://gw@127.0.0.1:{self.port}/postgres"
        self.started = False

    def start(self) -> None:
        if not (PG_BIN / "pg_ctl").exists():
            raise StartError("PostgreSQL 15 is not installed (apt-get install postgresql-15)")
        data = self.root / "data"
        data.mkdir()
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
            shutil.chown(data, "postgres")
        initdb = [str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "gw"]
        _run(_as_postgres(initdb))
        options = f"-p {self.port} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300"
        start = [str(PG_BIN / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(data / "log"), "-w", "start"]
        _run(_as_postgres(start))
        self.started = True

    def stop(self) -> None:
        """``pg_ctl stop`` signals the postmaster named in this cluster's own data directory."""
        if self.started:
            stop = [str(PG_BIN / "pg_ctl"), "-D", str(self.root / "data"), "-m", "fast", "stop"]
            subprocess.run(_as_postgres(stop), capture_output=True, timeout=60)
            self.started = False
        shutil.rmtree(self.root, ignore_errors=True)


def _run(argv: list[str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise StartError(f"PostgreSQL did not start: {(done.stdout + done.stderr).strip()[-300:]}")


LB_CONF = """\
daemon off;
worker_processes 1;
pid nginx.pid;
error_log error.log warn;
events {{ worker_connections 4096; }}
http {{
    log_format cluster '$status $upstream_addr "$upstream_status"';
    access_log access.log cluster buffer=64k flush=1s;
    keepalive_timeout 65;
    keepalive_requests 10000000;
    client_body_temp_path tmp/body;
    proxy_temp_path tmp/proxy;
    fastcgi_temp_path tmp/fastcgi;
    uwsgi_temp_path tmp/uwsgi;
    scgi_temp_path tmp/scgi;
    upstream gateways {{
{servers}
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://gateways;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            # a draining instance refuses connects and closes idle keep-alive connections: try another
            proxy_next_upstream error timeout http_502 http_503;
            proxy_next_upstream_tries {tries};
            proxy_next_upstream_timeout 10s;
            proxy_connect_timeout 1s;
            proxy_read_timeout 15s;
        }}
    }}
}}
"""


def load_balancer(workdir: Path, gateway_ports: list[int]) -> Server:
    """nginx in front of the gateways, retrying a refused or broken upstream connection on another one."""
    prefix = workdir / "lb"
    (prefix / "tmp").mkdir(parents=True)
    port = free_port()
    servers = "\n".join(f"        server 127.0.0.1:{p} max_fails=1 fail_timeout=2s;" for p in gateway_ports)
    (prefix / "nginx.conf").write_text(LB_CONF.format(servers=servers, port=port, tries=len(gateway_ports)))
    cmd = [shutil.which("nginx") or "nginx", "-p", f"{prefix}/", "-c", "nginx.conf", "-e", "error.log"]
    return Server("lb", cmd, port, "/api/health", workdir)


def lb_access_counts(workdir: Path) -> dict[str, int]:
    """From the LB's access log: requests, those answered by a second upstream (retried), and by status class."""
    counts = {"requests": 0, "retried": 0, "2xx": 0, "other": 0}
    path = workdir / "lb" / "access.log"
    if not path.exists():
        return counts
    for line in path.read_text(errors="replace").splitlines():
        status, _, rest = line.partition(" ")
        counts["requests"] += 1
        counts["retried"] += "," in rest
        counts["2xx" if status.startswith("2") else "other"] += 1
    return counts


_UPSTREAM_ERRORS = {
    "refused": "Connection refused",
    "closed_early": "prematurely closed",
    "reset": "reset by peer",
    "timed_out": "timed out",
}


def lb_upstream_errors(workdir: Path) -> dict[str, int]:
    """Why the LB had to try another instance, from its error log: refused connects, connections the gateway
    closed before answering, resets, timeouts, anything else."""
    counts = dict.fromkeys([*_UPSTREAM_ERRORS, "other"], 0)
    path = workdir / "lb" / "error.log"
    if path.exists():
        for line in path.read_text(errors="replace").splitlines():
            if "[error]" not in line or "upstream" not in line:
                continue
            kind = next((k for k, text in _UPSTREAM_ERRORS.items() if text in line), "other")
            counts[kind] += 1
    return counts


class Receiver:
    """A webhook receiver on 127.0.0.1: records each POST's ``webhook-id`` and answers 200."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # the http.server API names it
                self.rfile.read(int(self.headers.get("content-length") or 0))
                with receiver.lock:
                    receiver.ids.append(self.headers.get("webhook-id", ""))
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        if self.thread.is_alive():  # shutdown() would wait forever for a loop that never ran
            self.httpd.shutdown()
        self.httpd.server_close()

    def received(self) -> list[str]:
        with self.lock:
            return list(self.ids)


__all__ = ["REPO", "Postgres", "Receiver", "Redis", "lb_access_counts", "lb_upstream_errors", "load_balancer"]
