"""Reserved headers (identity, credentials, forwarding) cannot be spoofed by a spelling the upstream reads as the same,
nor made ambiguous by sending them twice.

CGI/WSGI servers map a header name to ``HTTP_`` + upper-case with ``-`` → ``_``, so ``X-User_Id`` and ``X_User_Id``
both become ``HTTP_X_USER_ID``. The gateway strips every client header whose name, normalised that way, is a
reserved one; the upstream sees exactly the gateway's value.
"""

from __future__ import annotations

import socket
import time

import httpx
import jwt
import pytest
from uvicorn.middleware.wsgi import WSGIMiddleware

from tests.servers import serve

SECRET = "hs-secret-2b7f0c9e8d1a6b5c4f3e2d1c0b9a8f7e6d5c4b3a"
API_KEY = "key-7c1e9a3b5d7f9b1d3f5a7c9e1b3d5f7a"
ENV = {"JWT_SECRET": SECRET, "WEB_KEY": API_KEY}
GATEWAY = """version: 1
base_path: /api
plugins: [request_id, {auth: {accept: [jwt, api_key], forward_identity: {enabled: true}}}, envelope]
auth:
  api_keys:
    - {name: web, key: "${WEB_KEY}", scopes: ["*"], roles: [service]}
  jwt: {secret: "${JWT_SECRET}", algorithms: [HS256], roles_claim: roles}
"""
# every header name the gateway reserves on these routes: identity it forwards, credentials, forwarding, request id
RESERVED = {
    "x-user-id",
    "x-user-role",
    "x-user-email",
    "x-client-id",
    "x-platform-id",
    "authorization",
    "x-api-key",
    "cookie",
    "client-x-api-key",
    "x-real-ip",
    "x-client-ip",
    "true-client-ip",
    "cf-connecting-ip",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "forwarded",
    "x-request-id",
}
SPOOFS = [
    ("X-User-Id", "admin"),
    ("X-User_Id", "admin"),
    ("X_User_Id", "admin"),
    ("x_user_id", "admin"),
    ("X_User_Role", "admin"),
    ("X-User_Email", "boss@example.test"),
    ("X_Client_Id", "acme"),
    ("X-Real-IP", "6.6.6.6"),
    ("X_Real_IP", "6.6.6.6"),
    ("X_Forwarded_For", "6.6.6.6"),
    ("X-Forwarded_Host", "evil.example"),
    ("Forwarded", "for=6.6.6.6"),
    ("X_Request_Id", "forged"),
    ("X-Client-IP", "6.6.6.6"),
    ("True-Client-IP", "6.6.6.6"),
    ("CF_Connecting_IP", "6.6.6.6"),
    ("X_API_KEY", "another-key"),
    ("Client_X_Api_Key", "c"),
    ("X_Custom_Header", "kept"),
]


def routes(url: str) -> str:
    return f"""backend: svc
prefix: /svc
upstream: {{url: "{url}"}}
routes:
  - {{name: me, method: GET, path: /me}}
  - {{name: open, method: GET, path: /open, auth: none}}
"""


def token(sub: str = "real-user") -> str:
    return jwt.encode({"sub": sub, "roles": ["user"], "exp": int(time.time()) + 600}, SECRET, algorithm="HS256")


def normalised(name: str) -> str:
    return name.lower().replace("_", "-")


@pytest.fixture
def wsgi_upstream():
    """A WSGI application, as Flask or Django would see the request: the environ's HTTP_* keys."""
    seen: list[dict[str, str]] = []

    def app(environ, start_response):
        seen.append({k: v for k, v in environ.items() if k.startswith("HTTP_")})
        start_response("200 OK", [("content-type", "application/json")])
        return [b"{}"]

    with serve(WSGIMiddleware(app), lifespan="off") as url:
        yield url, seen


def test_a_wsgi_upstream_sees_exactly_the_real_user(gateway, wsgi_upstream):
    url, seen = wsgi_upstream
    gw = gateway(GATEWAY, {"svc": routes(url)}, ENV)
    r = httpx.get(gw + "/api/svc/me", headers=[("authorization", f"Bearer {token()}"), *SPOOFS])
    assert r.status_code == 200, r.text
    environ = seen[-1]
    assert environ["HTTP_X_USER_ID"] == "real-user"  # not "admin,real-user"
    assert environ["HTTP_X_USER_ROLE"] == "user"
    assert environ["HTTP_X_FORWARDED_FOR"] == "127.0.0.1"
    assert environ["HTTP_X_REQUEST_ID"] == r.headers["x-request-id"] != "forged"
    for name in (
        "HTTP_X_USER_EMAIL",
        "HTTP_X_CLIENT_ID",
        "HTTP_X_REAL_IP",
        "HTTP_FORWARDED",
        "HTTP_X_API_KEY",
        "HTTP_CLIENT_X_API_KEY",
        "HTTP_AUTHORIZATION",
        "HTTP_X_CLIENT_IP",
        "HTTP_TRUE_CLIENT_IP",
        "HTTP_CF_CONNECTING_IP",
    ):
        assert name not in environ, name
    assert environ["HTTP_X_CUSTOM_HEADER"] == "kept"  # an unreserved name with underscores is left alone
    assert not environ["HTTP_X_FORWARDED_HOST"].startswith("evil")


@pytest.mark.parametrize("path, credential", [("/api/svc/me", ("x-api-key", API_KEY)), ("/api/svc/open", None)])
def test_no_reserved_name_reaches_the_upstream_but_the_gateways_own(gateway, upstream, recorder, path, credential):
    gw = gateway(GATEWAY, {"svc": routes(upstream)}, ENV)
    r = httpx.get(gw + path, headers=[*([credential] if credential else []), *SPOOFS])
    assert r.status_code == 200, r.text
    sent = recorder.last["headers"]
    own = {"x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-request-id"}
    own |= {"x-user-role", "x-platform-id"} if credential else set()
    assert {name for name in sent if normalised(name) in RESERVED} == own  # the gateway's own, in its own spelling
    assert (sent.get("x-user-role"), sent.get("x-platform-id")) == (("service", "web") if credential else (None, None))
    assert not sent["x-forwarded-host"].startswith("evil")
    assert sent["x-forwarded-for"] == "127.0.0.1" and sent["x-request-id"] == r.headers["x-request-id"]
    assert sent["x_custom_header"] == "kept"


@pytest.mark.parametrize("line", [b"X-User-Id : admin", b"X-User-Id\t: admin", b" X-User-Id: admin"])
def test_whitespace_around_a_reserved_name_never_reaches_the_upstream(gateway, upstream, recorder, line):
    gw = gateway(GATEWAY, {"svc": routes(upstream)}, ENV)
    answer = raw_request(
        gw, b"GET /api/svc/open HTTP/1.1\r\nHost: x\r\nX-Other: 1\r\n" + line + b"\r\nConnection: close\r\n\r\n"
    )
    status = int(answer.split(b" ", 2)[1])
    assert status in (200, 400)
    for entry in recorder.requests:
        assert all("admin" not in v for k, v in entry["headers"].items() if normalised(k.strip()) in RESERVED)


@pytest.mark.parametrize(
    "lines",
    [
        [("x-api-key", API_KEY), ("x-api-key", API_KEY)],
        [("x-api-key", API_KEY), ("x-api-key", "key-of-someone-else")],
        [("x-api-key", "key-of-someone-else"), ("X-Api-Key", API_KEY)],
        [("authorization", f"Bearer {token()}"), ("authorization", f"Bearer {token('admin')}")],
        [("authorization", f"Bearer {token()}"), ("authorization", f"Bearer {token()}")],
    ],
)
def test_several_credential_lines_are_refused_not_picked_from(gateway, upstream, recorder, lines):
    gw = gateway(GATEWAY, {"svc": routes(upstream)}, ENV)
    r = httpx.get(gw + "/api/svc/me", headers=lines)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "AMBIGUOUS_CREDENTIALS"
    assert recorder.requests == []


def raw_request(base: str, head: bytes) -> bytes:
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(head)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    return answer


def test_two_host_lines_are_refused_not_forwarded_as_one(gateway, upstream, recorder):
    gw = gateway(GATEWAY, {"svc": routes(upstream)}, ENV)
    answer = raw_request(
        gw, b"GET /api/svc/open HTTP/1.1\r\nHost: shop.example\r\nHost: evil.example\r\nConnection: close\r\n\r\n"
    )
    assert answer.startswith(b"HTTP/1.1 400 ") and b"BAD_HOST" in answer
    assert recorder.requests == []
