"""A real upstream for integration tests: echoes what it received and records every request."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


class Recorder:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.counts: dict[str, int] = {}

    @property
    def last(self) -> dict[str, Any]:
        return self.requests[-1]


def echo_app(recorder: Recorder) -> Starlette:
    async def echo(request: Request) -> Response:
        body = await request.body()
        entry = {
            "method": request.method,
            "raw_path": request.scope["raw_path"].decode("latin-1"),
            "path": request.url.path,
            "query": request.scope["query_string"].decode("latin-1"),
            "headers": {k.decode("latin-1"): v.decode("latin-1") for k, v in request.scope["headers"]},
            "body": body.decode("utf-8", "replace"),
        }
        recorder.requests.append(entry)
        tag = request.headers.get("x-test-etag")  # lets a test see what happens to an upstream ETag
        return JSONResponse(entry, headers={"etag": tag} if tag else None)

    async def status(request: Request) -> Response:
        code = int(request.path_params["code"])
        recorder.requests.append({"path": request.url.path})
        return JSONResponse({"error": {"type": "test_error", "message": f"status {code}"}}, status_code=code)

    async def slow(request: Request) -> Response:
        recorder.counts["slow"] = recorder.counts.get("slow", 0) + 1  # on arrival: a test can wait for it
        await asyncio.sleep(float(request.query_params.get("s", "5")))
        return JSONResponse({"slow": True})

    async def download(request: Request) -> Response:
        size = int(request.query_params["bytes"])
        chunk = b"x" * 65536

        async def chunks():
            sent = 0
            while sent < size:
                n = min(len(chunk), size - sent)
                sent += n
                yield chunk[:n]

        return StreamingResponse(chunks(), media_type="application/octet-stream", headers={"content-length": str(size)})

    async def upload(request: Request) -> Response:
        total = 0
        async for chunk in request.stream():
            total += len(chunk)
        recorder.requests.append({"path": request.url.path, "received": total, "headers": dict(request.headers)})
        return JSONResponse({"received": total})

    async def flaky(request: Request) -> Response:
        """Fails with ``status`` for the first ``fail`` calls of a ``key``, then answers 200."""
        key = request.query_params["key"]
        recorder.counts[key] = recorder.counts.get(key, 0) + 1
        recorder.requests.append(
            {"path": request.url.path, "key": key, "method": request.method, "headers": dict(request.headers)}
        )
        if recorder.counts[key] <= int(request.query_params.get("fail", "1")):
            return JSONResponse({"error": "flaky"}, status_code=int(request.query_params.get("status", "503")))
        return JSONResponse({"ok": True, "calls": recorder.counts[key]})

    async def text(request: Request) -> Response:
        return Response("plain text", media_type="text/plain")

    async def not_json(request: Request) -> Response:
        return Response("{not json", media_type="application/json")

    return Starlette(
        routes=[
            Route("/status/{code:int}", status, methods=["GET", "POST"]),
            Route("/slow", slow),
            Route("/download", download),
            Route("/upload", upload, methods=["POST", "PUT"]),
            Route("/text", text),
            Route("/flaky", flaky, methods=["GET", "POST"]),
            Route("/not-json", not_json),
            Route("/{path:path}", echo, methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]),
        ]
    )
