"""The WebSocket server settings of gateway.yaml reach uvicorn in ``serve``: each implementation serves the
realtime endpoint, and a client message above ``server.websocket_max_bytes`` is refused by the server itself."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from gateway_engine.compiled.compiler import load_config
from tests.realtime_support import ENV, bearer, subscribe, write_realtime_config, ws_url
from tests.test_realtime_scale_out import gateway_process


@pytest.mark.parametrize("implementation", ["wsproto", "websockets-sansio", "websockets"])
async def test_realtime_serve_uses_the_configured_websocket_server_and_its_size_limit(tmp_path: Path, implementation):
    root = write_realtime_config(tmp_path / "c")
    gateway = root / "gateway.yaml"
    extra = f"server: {{websocket_implementation: {implementation}, websocket_max_bytes: 2048}}\n"
    gateway.write_text(gateway.read_text() + extra)
    with gateway_process(root, tmp_path / "gw.log") as base:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(ws_url(base), headers=bearer("olga")) as ws:
                assert (await subscribe(ws, "payments:olga"))["type"] == "subscribed"
                await ws.send_str('{"type": "ping", "pad": "' + "x" * 4000 + '"}')  # under the app's 16 KB
                closed = await ws.receive(timeout=10)
                assert closed.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), closed
                assert ws.close_code == 1009


def test_realtime_websocket_server_settings_default_and_refusal(tmp_path: Path):
    root = write_realtime_config(tmp_path / "c")
    server = load_config(root, ENV).server
    assert (server.websocket_implementation, server.websocket_max_bytes) == ("wsproto", 1048576)
    gateway = root / "gateway.yaml"
    original = gateway.read_text()
    gateway.write_text(original + "server: {websocket_implementation: tornado}\n")
    with pytest.raises(Exception) as refused:
        load_config(root, ENV)
    assert "websocket_implementation" in str(refused.value)
    gateway.write_text(original + "server: {websocket_max_bytes: 10}\n")
    with pytest.raises(Exception) as small:
        load_config(root, ENV)
    assert "websocket_max_bytes" in str(small.value)


def test_a_config_that_opens_no_store_loads_no_sqlalchemy(tmp_path: Path):
    """~30 MB per worker: the store, the keys runtime, the outbound store side and the store commands load
    on first use, so ``serve`` of a config without stored keys, outbox or Kafka results pays none of it."""
    root = write_realtime_config(tmp_path / "c")
    script = (
        "import sys\n"
        "from gateway_engine import create_app\n"
        "from gateway_engine.cli.main import build_parser\n"
        "build_parser()\n"  # `serve` registers every command first
        f"create_app({str(root)!r}, {ENV!r})\n"
        "print(sorted(m for m in ('sqlalchemy', 'alembic') if m in sys.modules))\n"
    )
    found = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert found.returncode == 0, found.stderr[-2000:]
    assert found.stdout.strip().splitlines()[-1] == "[]"
