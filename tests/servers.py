"""Real servers for tests: any ASGI app under uvicorn on a free 127.0.0.1 port, in a thread."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import uvicorn


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve(app: Any, *, port: int | None = None, lifespan: str = "on", timeout: float = 10.0) -> Iterator[str]:
    """Run ``app`` under uvicorn (uvloop + httptools, as in production); yield its base URL."""
    port = port or free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        lifespan=lifespan,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=2,
        proxy_headers=False,
        server_header=False,
    )  # as `gateway-engine serve` runs it
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"server on port {port} did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)


def write_config(root: Path, gateway: str, backends: dict[str, str]) -> Path:
    """A config directory: ``gateway.yaml`` plus ``routes.d/<name>.yaml`` files."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "gateway.yaml").write_text(gateway)
    routes = root / "routes.d"
    routes.mkdir(exist_ok=True)
    for name, text in backends.items():
        (routes / f"{name}.yaml").write_text(text)
    return root
