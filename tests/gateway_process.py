"""``gateway-engine serve`` as a real process for tests: a free port, its output in a file, its health waited for.

It is stopped only through its own ``Popen`` handle (SIGTERM to that pid, SIGKILL after a bound), never by
name, port or process group, so a test can never signal a process it did not start.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

import httpx

from tests.servers import free_port


class GatewayProcess:
    """One ``serve`` process on 127.0.0.1; ``with GatewayProcess(...) as gw:`` starts it and always stops it."""

    def __init__(
        self,
        config: Path,
        log: Path,
        *,
        env: Mapping[str, str] | None = None,
        args: Sequence[str] = (),
        health: str = "/api/health",
        port: int | None = None,
    ) -> None:
        self.config, self.log, self.health = config, log, health
        self.env = {**os.environ, **(env or {})}
        self.args = list(args)
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> GatewayProcess:
        cmd = [sys.executable, "-m", "gateway_engine", "serve", "--config", str(self.config)]
        cmd += ["--port", str(self.port), "--no-watch", *self.args]
        with self.log.open("ab") as out:  # appended: a restarted gateway keeps its earlier lines
            self.proc = subprocess.Popen(cmd, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout: float = 60) -> None:
        """Until ``health`` answers 200 (a loaded machine starts a gateway slowly); fails with the log's tail."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(self.base + self.health, timeout=5, trust_env=False).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the gateway did not start: {self.log_text()[-3000:]}")
            time.sleep(0.05)

    def signal(self, sig: int) -> None:
        """Send ``sig`` to this gateway's own pid, if it still runs (Popen never signals a reaped pid)."""
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 15) -> int | None:
        """SIGTERM (the gateway drains), wait up to ``timeout``, then SIGKILL; the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        return self.proc.returncode

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def __enter__(self) -> GatewayProcess:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
