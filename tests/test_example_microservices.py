"""The shipped microservices example (examples/microservices) over real HTTP: JWT everywhere but
/auth, admin-only /audit, identity forwarded and never spoofable, failed logins rate limited."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import httpx
import jwt
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway_engine import create_app
from tests.servers import serve

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "microservices"
SECRET = "example-jwt-secret-for-tests-only-0123456789"
SERVICES = ["users", "appointments", "medical", "referrals", "messages", "notifications", "audit"]


def auth_service(attempts: list[dict]) -> Starlette:
    async def login(request: Request) -> JSONResponse:
        body = await request.json()
        attempts.append(body)
        if body.get("password") != "right":
            return JSONResponse({"error": "invalid credentials"}, status_code=401)
        return JSONResponse({"token": "issued"})

    return Starlette(routes=[Route("/auth/login", login, methods=["POST"])])


@pytest.fixture
def example(tmp_path, upstream):
    attempts: list[dict] = []
    root = tmp_path / "microservices"
    shutil.copytree(EXAMPLE, root)
    with serve(auth_service(attempts)) as auth_url:
        env = {
            "JWT_SECRET": SECRET,
            "AUTH_SERVICE_URL": auth_url,
            **{f"{name.upper()}_SERVICE_URL": upstream for name in SERVICES},
        }
        with serve(create_app(str(root), env)) as gw:
            yield gw, attempts


def token(role: str = "user", sub: str = "u-42") -> str:
    now = int(time.time())
    return jwt.encode(
        {"sub": sub, "role": role, "email": f"{sub}@example.org", "iat": now, "exp": now + 300},
        SECRET,
        algorithm="HS256",
    )


def bearer(role: str = "user", sub: str = "u-42") -> dict[str, str]:
    return {"Authorization": f"Bearer {token(role, sub)}"}


def test_example_microservices_validates():
    from gateway_engine import load_config

    config = load_config(EXAMPLE, {"JWT_SECRET": SECRET})
    assert {r.backend for r in config.routes} == {"auth", *SERVICES}


@pytest.mark.parametrize("service", SERVICES[:-1])
def test_example_microservices_jwt_everywhere(example, recorder, service):
    gw, _ = example
    with httpx.Client() as c:
        assert c.get(f"{gw}/api/{service}/1").status_code == 401
        r = c.get(f"{gw}/api/{service}/1/details", headers={**bearer(), "X-User-Id": "admin", "X-User-Role": "admin"})
    assert r.status_code == 200
    sent = recorder.last
    assert sent["raw_path"] == f"/{service}/1/details"
    assert sent["headers"]["x-user-id"] == "u-42" and sent["headers"]["x-user-role"] == "user"
    assert "authorization" not in sent["headers"]


def test_example_microservices_audit_is_admin_only(example, recorder):
    gw, _ = example
    with httpx.Client() as c:
        denied = c.get(f"{gw}/api/audit/events", headers=bearer("user"))
        allowed = c.get(f"{gw}/api/audit/events", headers=bearer("admin", "root"))
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "FORBIDDEN"
    assert "admin" in denied.json()["error"]["message"]
    assert allowed.status_code == 200 and recorder.last["headers"]["x-user-role"] == "admin"


def test_example_microservices_login_is_public_and_counts_only_failures(example):
    gw, attempts = example
    with httpx.Client() as c:
        for _ in range(3):
            assert c.post(f"{gw}/api/auth/login", json={"user": "a", "password": "right"}).status_code == 200
        statuses = [
            c.post(f"{gw}/api/auth/login", json={"user": "a", "password": "wrong"}).status_code for _ in range(5)
        ]
        sixth = c.post(f"{gw}/api/auth/login", json={"user": "a", "password": "wrong"})
    assert statuses == [401] * 5
    assert sixth.status_code == 429 and int(sixth.headers["retry-after"]) >= 1
    assert sixth.json()["error"]["code"] == "RATE_LIMITED"
    assert len(attempts) == 8  # the sixth failure never reached the auth service
