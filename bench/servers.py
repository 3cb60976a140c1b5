"""Starting, probing and stopping the servers under test.

Every server runs in its own session (process group) so that stopping it also stops
whatever it forked (nginx workers, uvicorn worker processes); its output goes to files
so a chatty server can never block on a full pipe, and the tail of its stderr is what
a failed start reports.
"""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from .ceiling import BODY

REPO = Path(__file__).resolve().parent.parent
READY_DEADLINE = 30.0  # a spawned worker imports the engine before it serves: seconds on a busy machine
TASKSET = shutil.which("taskset")


class StartError(Exception):
    """A server exited or never answered its readiness URL in time."""


_handed_out: set[int] = set()  # ports chosen in this process: a run picks all its ports before it binds them


def free_port() -> int:
    """A free port never handed out before in this process (the kernel may offer one twice before it is bound)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def pinned(cmd: list[str], core: int | None) -> list[str]:
    """Prefix ``cmd`` with ``taskset -c core`` when there is a core and taskset exists."""
    return [TASKSET, "-c", str(core), *cmd] if core is not None and TASKSET else cmd


class Server:
    """One server process group on 127.0.0.1:port, its log files and the path that says it is up."""

    def __init__(
        self,
        name: str,
        cmd: list[str],
        port: int,
        ready_path: str,
        workdir: Path,
        env: dict | None = None,
        cwd: Path = REPO,
    ):
        self.name, self.cmd, self.env, self.cwd = name, cmd, env, cwd
        self.port, self.ready_path = port, ready_path
        self.base = f"http://127.0.0.1:{port}"
        self.stdout_path = workdir / f"{name}.out"
        self.stderr_path = workdir / f"{name}.err"
        self.proc: subprocess.Popen | None = None
        self.ready_deadline = READY_DEADLINE

    def start(self) -> None:
        self.start_only()
        self._wait_ready()

    def start_only(self) -> None:
        """Spawn the process; its output is appended, so a restarted server keeps its earlier lines."""
        with open(self.stdout_path, "ab") as out, open(self.stderr_path, "ab") as err:
            self.proc = subprocess.Popen(
                self.cmd,
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
            )

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_deadline
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise StartError(f"exited with code {self.proc.returncode}: {self.stderr_tail()}")
            if http_status(self.port, self.ready_path) == 200:
                return
            time.sleep(0.1)
        raise StartError(f"no 200 from {self.ready_path} within {self.ready_deadline:.0f}s: {self.stderr_tail()}")

    def stderr_tail(self, lines: int = 5) -> str:
        try:
            text = self.stderr_path.read_text(errors="replace").strip()
        except OSError:
            return ""
        return " | ".join(text.splitlines()[-lines:]) or "(no stderr)"

    def stop(self) -> None:
        """SIGTERM the group, give it 5 s, then SIGKILL whatever is left of it (orphaned workers too).

        The leader is reaped only at the end: until then its pid, which is the group id, cannot be
        reused, so the signals reach this server's processes and nothing else. A leader already reaped
        (it exited during start) is not signalled at all.
        """
        if self.proc is None or self.proc.returncode is not None:
            return  # never started, or already reaped: its pid (and group id) may belong to someone else now
        _signal_group(self.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not _exited(self.proc.pid):
            time.sleep(0.05)
        _signal_group(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=5)

    def rss(self) -> dict:
        """VmRSS of the server and each descendant (uvicorn workers), and their sum, in MB."""
        procs = []
        for pid in sorted(process_tree(self.proc.pid)):
            kb = vm_rss_kb(pid)
            if kb is not None:
                role = (
                    "main"
                    if pid == self.proc.pid
                    else ("resource_tracker" if "resource_tracker" in cmdline(pid) else "worker")
                )
                procs.append({"pid": pid, "role": role, "rss_mb": kb / 1024})
        return {"total_mb": sum(p["rss_mb"] for p in procs), "processes": procs}


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _exited(pid: int) -> bool:
    """Whether our child ``pid`` has exited, without reaping it (WNOWAIT)."""
    return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


def accepts(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:``port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def wait_accepting(port: int, process: subprocess.Popen, what: str, timeout: float = 30.0) -> None:
    """Return once ``process`` accepts connections on ``port``; StartError if it exits or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while not accepts(port):
        if process.poll() is not None:
            raise StartError(f"{what} exited with {process.returncode} before listening on {port}")
        if time.monotonic() > deadline:
            raise StartError(f"{what} did not listen on {port} within {timeout:.0f} s")
        time.sleep(0.05)


def http_status(port: int, path: str) -> int | None:
    """GET 127.0.0.1:port/path directly (no proxy settings apply) and return the status, or None."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    except OSError:
        return None
    finally:
        conn.close()


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants, found through the ppid field of /proc/*/stat."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def vm_rss_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def cpu_seconds(pids: list[int]) -> float:
    """Time the processes' threads have run on a CPU (user and kernel), from /proc/<pid>/task/*/schedstat in ns.

    It does not grow while a process waits for a core, so CPU time per request is the same on a busy
    machine as on a quiet one (within the cache effects), where requests per second are not.
    """
    total = 0
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").glob("*/schedstat"):
            try:
                total += int(task.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                pass  # a thread that just ended
    return total / 1e9


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


NGINX_CONF = """\
daemon off;
worker_processes 1;
pid nginx.pid;
error_log error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_timeout 65;
    keepalive_requests 10000000;
    client_body_temp_path tmp/body;
    proxy_temp_path tmp/proxy;
    fastcgi_temp_path tmp/fastcgi;
    uwsgi_temp_path tmp/uwsgi;
    scgi_temp_path tmp/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{ default_type application/json; return 200 '{body}'; }}
    }}
}}
"""


def nginx(workdir: Path, core: int | None) -> Server:
    """The upstream: nginx in its own prefix, answering BODY from memory."""
    prefix = workdir / "nginx"
    (prefix / "tmp").mkdir(parents=True)
    port = free_port()
    (prefix / "nginx.conf").write_text(NGINX_CONF.format(port=port, body=BODY))
    cmd = [shutil.which("nginx") or "nginx", "-p", f"{prefix}/", "-c", "nginx.conf", "-e", "error.log"]
    return Server("upstream", pinned(cmd, core), port, "/items", workdir)


# The gateway CLI runs uvicorn with these settings too (server_header=False included).
UVICORN_FLAGS = [
    "--loop",
    "uvloop",
    "--http",
    "httptools",
    "--no-access-log",
    "--log-level",
    "warning",
    "--no-server-header",
]


def ceiling(workdir: Path, core: int | None) -> Server:
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        "bench.ceiling:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *UVICORN_FLAGS,
    ]
    return Server("ceiling", pinned(cmd, core), port, "/api/gateway/health", workdir)


def gateway_command() -> list[str]:
    """The installed console script next to this interpreter, else ``python -m gateway_engine``."""
    script = Path(sys.executable).with_name("gateway-engine")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "gateway_engine"]


def gateway(
    slug: str, config: Path, workdir: Path, env: dict, workers: int, core: int | None, command: list[str] | None = None
) -> Server:
    """The gateway on ``config``; ``command`` runs it some other way (``gateway_command()`` by default)."""
    port = free_port()
    serve = ["serve", "--config", str(config), "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    return Server(
        slug, pinned([*(command or gateway_command()), *serve], core), port, "/api/gateway/health", workdir, env
    )
