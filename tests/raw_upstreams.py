"""Socket-level upstreams for the HTTP/1.1 client tests: an honest one parsed by h11, and scripted hostile ones."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable

import h11


class H11Upstream:
    """An honest keep-alive upstream: h11 frames every request, so it sees exactly what a strict server sees.

    ``requests`` holds ``(connection number, method, target, headers dict, body)`` per request;
    ``answer(request)`` gives ``(status, body)`` (default: 200 with a small JSON body).
    """

    def __init__(self, answer: Callable[[tuple], tuple[int, bytes]] | None = None) -> None:
        self.answer = answer or (lambda request: (200, b'{"ok":true}'))
        self.requests: list[tuple[int, str, str, dict[str, str], bytes]] = []
        self.errors: list[str] = []
        self.connections = 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(32)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn, self.connections), daemon=True).start()

    def _serve(self, sock: socket.socket, number: int) -> None:
        http = h11.Connection(h11.SERVER)
        request, body = None, b""
        with sock:
            while True:
                try:
                    event = http.next_event()
                except h11.RemoteProtocolError as exc:
                    self.errors.append(str(exc))
                    return
                if event is h11.NEED_DATA:
                    try:
                        data = sock.recv(65536)
                    except OSError:
                        return
                    http.receive_data(data)
                    if not data:
                        return
                elif isinstance(event, h11.Request):
                    request, body = event, b""
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in request.headers}
                    record = (number, request.method.decode(), request.target.decode("latin-1"), headers, body)
                    self.requests.append(record)
                    status, payload = self.answer(record)
                    sock.sendall(
                        http.send(
                            h11.Response(
                                status_code=status,
                                headers=[("content-type", "application/json"), ("content-length", str(len(payload)))],
                            )
                        )
                    )
                    sock.sendall(http.send(h11.Data(data=payload)) + http.send(h11.EndOfMessage()))
                    if http.our_state is not h11.DONE or http.their_state is not h11.DONE:
                        return
                    http.start_next_cycle()
                elif isinstance(event, h11.ConnectionClosed):
                    return

    def close(self) -> None:
        self.sock.close()


class RawUpstream:
    """Hands each accepted connection to ``handler(sock, number)``, one thread per connection."""

    def __init__(self, handler: Callable[[socket.socket, int], None]) -> None:
        self.handler = handler
        self.connections = 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(32)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._run, args=(conn, self.connections), daemon=True).start()

    def _run(self, sock: socket.socket, number: int) -> None:
        with sock:
            try:
                self.handler(sock, number)
            except OSError:
                pass

    def close(self) -> None:
        self.sock.close()


def read_request(sock: socket.socket, buffer: bytearray) -> bytes | None:
    """One request head (requests in these tests carry no body); None at EOF. Leftover bytes stay in ``buffer``."""
    while b"\r\n\r\n" not in buffer:
        data = sock.recv(65536)
        if not data:
            return None
        buffer += data
    end = buffer.index(b"\r\n\r\n") + 4
    head = bytes(buffer[:end])
    del buffer[:end]
    return head
