"""The lean wsproto protocol lets go of the upgrade's h11 state once the socket is open, and still works."""

from __future__ import annotations

import threading
import time
from typing import Any

import aiohttp
import uvicorn

from gateway_engine.runtime.websocket_protocol import LeanWSProtocol, websocket_protocol
from tests.servers import free_port

opened: list[LeanWSProtocol] = []


class Recording(LeanWSProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        opened.append(self)


async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    assert scope["type"] == "websocket"
    assert (await receive())["type"] == "websocket.connect"
    await send({"type": "websocket.accept"})
    while (message := await receive())["type"] == "websocket.receive":
        await send({"type": "websocket.send", "text": "echo:" + message["text"]})


async def test_an_open_socket_holds_no_handshake_state_and_still_echoes_and_closes():
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            echo, host="127.0.0.1", port=port, loop="uvloop", ws=Recording, lifespan="off", log_level="warning"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        assert thread.is_alive()
        time.sleep(0.01)
    try:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"ws://127.0.0.1:{port}/") as ws:
                await ws.send_str("one")
                assert await ws.receive_str(timeout=5) == "echo:one"
                handshake = opened[-1].conn.handshake
                assert handshake._h11_connection is None and handshake._initiating_request is None
                await ws.send_str("two")  # every later event goes to the open connection
                assert await ws.receive_str(timeout=5) == "echo:two"
                await ws.close()
            assert ws.close_code == 1000
    finally:
        server.should_exit = True
        thread.join(10)


def test_only_wsproto_gets_the_lean_protocol():
    assert websocket_protocol("wsproto") is LeanWSProtocol
    assert websocket_protocol("websockets-sansio") == "websockets-sansio"
