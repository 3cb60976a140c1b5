"""For the workflow tests: a real Temporal dev server, recording fake backends, JWTs, polling."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import orjson

from gateway_engine import load_config
from gateway_engine.workflows.client import connect
from gateway_engine.workflows.worker import build_worker, connection_for
from tests.servers import free_port

ROOT = Path(__file__).resolve().parent.parent
JWT_SECRET = "wf-secret-5d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c"
ADMIN_KEY = "wf-admin-key-0123456789abcdef0123456789"
PLAIN_KEY = "wf-plain-key-0123456789abcdef0123456789"


def temporal_binary() -> str:
    found = Path(sys.executable).parent / "temporal"
    return str(found) if found.exists() else (shutil.which("temporal") or "temporal")


@contextlib.contextmanager
def temporal_server(port: int | None = None, timeout: float = 20.0) -> Iterator[str]:
    """``temporal server start-dev`` on a free 127.0.0.1 port (in memory); yields ``host:port``."""
    port = port or free_port()
    proc = subprocess.Popen(
        [
            temporal_binary(),
            "server",
            "start-dev",
            "--headless",
            "--ip",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "error",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("the Temporal dev server did not start")
            time.sleep(0.05)
        _wait_for_default_namespace(port, deadline, proc)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_for_default_namespace(port: int, deadline: float, proc: subprocess.Popen) -> None:
    """The frontend's port opens before it serves the ``default`` namespace: a call in between fails
    (seen in CI under load as a 502 from the first call). Ready is when the namespace can be described."""
    describe = [temporal_binary(), "operator", "namespace", "describe", "--namespace", "default"]
    while True:
        with contextlib.suppress(subprocess.TimeoutExpired):
            done = subprocess.run([*describe, "--address", f"127.0.0.1:{port}"], capture_output=True, timeout=5)
            if done.returncode == 0:
                return
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError("the Temporal dev server did not serve its default namespace")
        time.sleep(0.05)


class FakeBackends:
    """One ASGI app (serve it with ``lifespan="off"``) standing in for every backend: records each call; answers come from ``answer``
    (method, path, body) -> (status, json | text, headers); ``fail`` and ``hold`` override per path."""

    def __init__(self, answer: Callable[[str, str, Any], tuple[int, Any, dict[str, str]]]) -> None:
        self.answer = answer
        self.calls: list[dict[str, Any]] = []
        self.fail: dict[str, tuple[int, Any]] = {}  # path -> (status, body), every time
        self.hold: dict[str, threading.Event] = {}  # path -> answered once the event is set
        self.lock = threading.Lock()

    def paths(self, method: str | None = None) -> list[str]:
        with self.lock:
            return [c["path"] for c in self.calls if method is None or c["method"] == method]

    def bodies(self, path: str) -> list[Any]:
        with self.lock:
            return [c["body"] for c in self.calls if c["path"] == path]

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        raw = b"".join(chunks)
        try:
            body = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            body = raw.decode()
        path = scope["path"]
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        with self.lock:
            self.calls.append(
                {
                    "method": scope["method"],
                    "path": path,
                    "query": scope["query_string"].decode(),
                    "body": body,
                    "headers": headers,
                }
            )
        if path in self.hold:
            await asyncio.to_thread(self.hold[path].wait, 30)
        if path in self.fail:
            status, payload, extra = *self.fail[path], {}
        else:
            status, payload, extra = self.answer(scope["method"], path, body)
        data = payload.encode() if isinstance(payload, str) else orjson.dumps(payload)
        content_type = "text/plain" if isinstance(payload, str) else "application/json"
        out = [(b"content-type", content_type.encode())] + [(k.encode(), v.encode()) for k, v in extra.items()]
        await send({"type": "http.response.start", "status": status, "headers": out})
        await send({"type": "http.response.body", "body": data})


def token(user: str, **claims: Any) -> str:
    return jwt.encode({"sub": user, "exp": int(time.time()) + 3600, **claims}, JWT_SECRET, algorithm="HS256")


def as_user(user: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token(user)}"}


ADMIN = {"x-api-key": ADMIN_KEY}


def gateway_yaml() -> str:
    return f"""version: 1
base_path: /api/gateway
plugins: [request_id, {{auth: {{accept: [api_key, jwt]}}}}, envelope]
auth:
  api_keys:
    - {{name: ops, key: "{ADMIN_KEY}", scopes: ["workflows:admin"]}}
    - {{name: reader, key: "{PLAIN_KEY}", scopes: [catalog]}}
  jwt: {{secret: "${{JWT_SECRET}}", algorithms: [HS256]}}
"""


async def wait_for(
    client: httpx.AsyncClient,
    workflow_id: str,
    headers: dict[str, str],
    done: Callable[[dict], bool] = lambda d: d["status"] != "running",
    timeout: float = 20.0,
) -> dict:
    """Poll ``GET /workflows/{id}`` until ``done`` holds (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        reply = await client.get(f"/api/gateway/workflows/{workflow_id}", headers=headers)
        assert reply.status_code == 200, reply.text
        data = reply.json()["data"]
        if done(data):
            return data
        if time.monotonic() > deadline:
            raise AssertionError(f"workflow {workflow_id} still {data['status']} at step {data.get('step')}")
        await asyncio.sleep(0.05)


async def wait_until(check: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


@dataclass
class Stack:
    """A running gateway over a config directory whose workflows use ``queue``, and its fake backends."""

    root: Path
    url: str
    env: dict[str, str]
    queue: str
    fake: FakeBackends


@contextlib.asynccontextmanager
async def running_worker(stack: Stack, **options: Any):
    """The real worker (``gateway-engine worker`` builds the same) in this event loop."""
    config = load_config(stack.root, stack.env)
    client = await connect(connection_for(config))
    await config.startup()
    try:
        async with build_worker(client, config, stack.queue, **options):
            yield
    finally:
        await config.shutdown()


async def start(http: httpx.AsyncClient, workflow: str, headers: dict[str, str], **body: Any) -> httpx.Response:
    return await http.post("/api/gateway/workflows/start", json={"workflow": workflow, **body}, headers=headers)
