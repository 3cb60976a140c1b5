"""auth plugin, JWTs, over real HTTP: HS/RS verification, claim checks, algorithm attacks, JWKS caching, accept order."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import time
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from gateway_engine_plugins.auth_jwt import JwtVerifier
from jwt.algorithms import RSAAlgorithm
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway_engine import ConfigErrors, load_config
from gateway_engine.cli.main import run
from tests.servers import serve, write_config

SECRET = "hs-secret-2b7f0c9e8d1a6b5c4f3e2d1c0b9a8f7e6d5c4b3a"
API_KEY = "key-7c1e9a3b5d7f9b1d3f5a7c9e1b3d5f7a"
ENV = {"JWT_SECRET": SECRET, "WEB_KEY": API_KEY}
ISSUER, AUDIENCE = "https://idp.example.test", "gateway"
HS_SECTION = f"""  jwt:
    secret: "${{JWT_SECRET}}"
    algorithms: [HS256]
    issuer: "{ISSUER}"
    audience: {AUDIENCE}
    required_claims: [exp, sub]
    roles_claim: roles
"""


def gateway_yaml(
    jwt_section: str = HS_SECTION, options: str = "{accept: [jwt], forward_identity: {enabled: true}}"
) -> str:
    return (
        f"version: 1\nbase_path: /api\nplugins: [request_id, {{auth: {options}}}, envelope]\n"
        f'auth:\n  api_keys:\n    - {{name: web, key: "${{WEB_KEY}}", scopes: ["*"]}}\n{jwt_section}'
    )


def routes(url: str) -> str:
    return f"""backend: svc
prefix: /svc
upstream: {{url: "{url}"}}
routes:
  - {{name: items, method: GET, path: /items, upstream_path: /items}}
  - {{name: me, method: GET, path: /me, upstream_path: /me, response: {{data: "{{{{ identity }}}}"}}}}
  - {{name: audit, method: GET, path: /audit, upstream_path: /audit, auth: {{roles: [admin]}}}}
  - {{name: orders, method: POST, path: /orders, upstream_path: /orders, auth: {{scopes: ["orders:write"]}}}}
"""


def claims(**overrides) -> dict:
    now = int(time.time())
    base = {
        "sub": "u-42",
        "email": "ana@example.test",
        "roles": ["user"],
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + 600,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def hs256(payload: dict, secret: str = SECRET) -> str:
    return jwt.encode(payload, secret, algorithm="HS256")


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forged(header: dict, payload: dict, mac_key: bytes | None) -> str:
    """A token built by hand, as an attacker would: ``alg: none`` or an HMAC over any key bytes."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    signature = b64(hmac.new(mac_key, signing_input.encode(), hashlib.sha256).digest()) if mac_key else ""
    return f"{signing_input}.{signature}"


def call(base: str, path: str, token: str | None = None, method: str = "GET", **headers: str) -> httpx.Response:
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    with httpx.Client() as c:
        return c.request(method, base + path, headers=headers)


@pytest.fixture(scope="module")
def rsa_keys():
    """Two RSA key pairs (generated once): signing keys for RS256 and a JWKS rotation."""
    return [rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(2)]


def public_pem(private_key) -> str:
    return (
        private_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


@pytest.fixture
def hs_gateway(gateway, upstream):
    return gateway(gateway_yaml(), {"svc": routes(upstream)}, env=ENV)


def test_auth_jwt_hs256_valid_forwards_identity(hs_gateway, recorder):
    token = hs256(claims())
    r = call(hs_gateway, "/api/svc/items", token, **{"X-User-Id": "admin"})
    assert r.status_code == 200
    seen = recorder.last["headers"]
    assert seen["x-user-id"] == "u-42" and seen["x-user-email"] == "ana@example.test" and seen["x-user-role"] == "user"
    assert "authorization" not in seen and token not in json.dumps(recorder.last)
    assert token not in r.text and SECRET not in r.text


def test_auth_jwt_identity_is_available_to_templates(hs_gateway):
    r = call(hs_gateway, "/api/svc/me", hs256(claims(scope="orders:read orders:write")))
    identity = r.json()["data"]
    assert identity["method"] == "jwt" and identity["user_id"] == identity["sub"] == "u-42" == identity["consumer"]
    assert identity["roles"] == ["user"] and identity["role"] == "user"
    assert identity["scopes"] == ["orders:read", "orders:write"] and identity["claims"]["iss"] == ISSUER
    assert identity["key_name"] is None and identity["client_id"] is None


def test_auth_jwt_identity_claims_by_default_names():
    verifier = JwtVerifier({"algorithms": ["HS256"], "secret": SECRET}, ".")
    fields = verifier.identity({"sub": 7, "role": "admin", "scope": ["a", "b"], "email": "e@example.test"})
    assert fields == {"user_id": "7", "email": "e@example.test", "roles": ["admin"], "scopes": ["a", "b"]}
    assert verifier.identity({})["roles"] == [] and verifier.identity({})["user_id"] is None


@pytest.mark.parametrize(
    "token, code, needle",
    [
        (lambda: hs256(claims(exp=int(time.time()) - 3600)), "TOKEN_EXPIRED", "expired"),
        (lambda: hs256(claims(nbf=int(time.time()) + 3600)), "INVALID_TOKEN", "not valid yet"),
        (lambda: hs256(claims(aud="someone-else")), "INVALID_TOKEN", "audience"),
        (lambda: hs256(claims(aud=None)), "INVALID_TOKEN", "'aud'"),
        (lambda: hs256(claims(iss="https://evil.example.test")), "INVALID_TOKEN", "issuer"),
        (lambda: hs256(claims(sub=None)), "INVALID_TOKEN", "'sub'"),
        (lambda: hs256(claims(exp=None)), "INVALID_TOKEN", "'exp'"),
        (
            lambda: hs256(claims(), secret="another-secret-of-sufficient-length-0123456789"),
            "INVALID_TOKEN",
            "signature",
        ),
        (lambda: "not.a.token", "INVALID_TOKEN", "malformed"),
        (lambda: forged({"alg": "none", "typ": "JWT"}, claims(), None), "INVALID_TOKEN", "algorithm"),
        (lambda: forged({"alg": "HS512", "typ": "JWT"}, claims(), SECRET.encode()), "INVALID_TOKEN", "algorithm"),
    ],
)
def test_auth_jwt_refused(hs_gateway, recorder, token, code, needle):
    token = token()
    r = call(hs_gateway, "/api/svc/items", token)
    assert r.status_code == 401
    error = r.json()["error"]
    assert error["code"] == code and needle in error["message"]
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert token not in r.text and SECRET not in r.text
    assert recorder.requests == []


def test_auth_jwt_leeway_tolerates_small_clock_skew(hs_gateway):
    assert call(hs_gateway, "/api/svc/items", hs256(claims(exp=int(time.time()) - 5))).status_code == 200


def test_auth_jwt_missing_and_non_bearer_credentials(hs_gateway, recorder):
    r = call(hs_gateway, "/api/svc/items")
    assert r.status_code == 401 and r.json()["error"]["code"] == "UNAUTHENTICATED"
    assert r.headers["www-authenticate"] == "Bearer"
    r = call(hs_gateway, "/api/svc/items", Authorization="Basic dXNlcjpwYXNz")
    assert r.status_code == 401 and r.json()["error"]["code"] == "INVALID_TOKEN"
    assert recorder.requests == []


def test_auth_jwt_roles_and_scopes_from_claims(hs_gateway, recorder):
    assert call(hs_gateway, "/api/svc/audit", hs256(claims())).status_code == 403
    assert call(hs_gateway, "/api/svc/audit", hs256(claims(roles=["auditor", "admin"]))).status_code == 200
    r = call(hs_gateway, "/api/svc/orders", hs256(claims(scope="orders:read")), method="POST")
    assert r.status_code == 403 and "orders:write" in r.json()["error"]["message"]
    assert (
        call(hs_gateway, "/api/svc/orders", hs256(claims(scope="orders:read orders:write")), method="POST").status_code
        == 200
    )


def test_auth_jwt_nested_roles_claim(gateway, upstream):
    section = HS_SECTION.replace("roles_claim: roles", "roles_claim: realm_access.roles")
    gw = gateway(gateway_yaml(section), {"svc": routes(upstream)}, env=ENV)
    assert call(gw, "/api/svc/audit", hs256(claims(realm_access={"roles": ["admin"]}))).status_code == 200
    assert call(gw, "/api/svc/audit", hs256(claims(roles=["admin"]))).status_code == 403


def test_auth_jwt_secret_unset_fails_closed(gateway, upstream, recorder):
    gw = gateway(gateway_yaml(), {"svc": routes(upstream)}, env={"WEB_KEY": API_KEY})
    r = call(gw, "/api/svc/items", hs256(claims()))
    assert r.status_code == 503 and r.json()["error"]["code"] == "AUTH_NOT_CONFIGURED"
    assert recorder.requests == []


def rs_section(extra: str, algorithms: str = "[RS256]") -> str:
    return f"  jwt:\n    algorithms: {algorithms}\n    audience: {AUDIENCE}\n{extra}"


def test_auth_jwt_rs256_with_public_key_and_algorithm_confusion(gateway, upstream, recorder, rsa_keys):
    pem = public_pem(rsa_keys[0])
    gw = gateway(
        gateway_yaml(rs_section('    public_key: "${JWT_PUBLIC_KEY}"\n')),
        {"svc": routes(upstream)},
        env={**ENV, "JWT_PUBLIC_KEY": pem},
    )
    assert call(gw, "/api/svc/items", jwt.encode(claims(), rsa_keys[0], algorithm="RS256")).status_code == 200
    assert call(gw, "/api/svc/items", jwt.encode(claims(), rsa_keys[1], algorithm="RS256")).status_code == 401
    confused = forged({"alg": "HS256", "typ": "JWT"}, claims(), pem.encode())  # HMAC keyed with the public PEM
    r = call(gw, "/api/svc/items", confused)
    assert r.status_code == 401 and r.json()["error"]["code"] == "INVALID_TOKEN"
    assert len(recorder.requests) == 1


def test_auth_jwt_mixed_families_never_share_keys(gateway, upstream, tmp_path, rsa_keys):
    pem = public_pem(rsa_keys[0])
    (tmp_path / "idp.pem").write_text(pem)
    section = rs_section(
        f'    secret: "${{JWT_SECRET}}"\n    public_key_file: "{tmp_path / "idp.pem"}"\n', "[HS256, RS256]"
    )
    gw = gateway(gateway_yaml(section), {"svc": routes(upstream)}, env=ENV)
    assert call(gw, "/api/svc/items", jwt.encode(claims(), rsa_keys[0], algorithm="RS256")).status_code == 200
    assert call(gw, "/api/svc/items", hs256(claims())).status_code == 200
    r = call(gw, "/api/svc/items", forged({"alg": "HS256"}, claims(), pem.encode()))
    assert r.status_code == 401 and "signature" in r.json()["error"]["message"]


class JwksServer:
    """A real identity provider's JWKS endpoint, counting how often the gateway fetches it."""

    def __init__(self) -> None:
        self.keys: list[dict] = []
        self.fetches = 0
        self.status = 200

    def add(self, private_key, kid: str) -> None:
        self.keys.append({**RSAAlgorithm.to_jwk(private_key.public_key(), as_dict=True), "kid": kid, "use": "sig"})

    def app(self) -> Starlette:
        async def jwks(request: Request) -> JSONResponse:
            self.fetches += 1
            return JSONResponse({"keys": self.keys}, status_code=self.status)

        return Starlette(routes=[Route("/.well-known/jwks.json", jwks)])


def jwks_gateway(gateway, upstream, idp_url: str, min_refresh: int) -> str:
    section = rs_section(f'    jwks_url: "{idp_url}/.well-known/jwks.json"\n    jwks_min_refresh: {min_refresh}\n')
    return gateway(gateway_yaml(section), {"svc": routes(upstream)}, env=ENV)


def rs256(private_key, kid: str, **overrides) -> str:
    return jwt.encode(claims(**overrides), private_key, algorithm="RS256", headers={"kid": kid})


def test_auth_jwt_jwks_is_cached_and_refreshed_on_unknown_kid(gateway, upstream, rsa_keys):
    idp = JwksServer()
    idp.add(rsa_keys[0], "k1")
    with serve(idp.app()) as idp_url:
        gw = jwks_gateway(gateway, upstream, idp_url, min_refresh=0)
        for _ in range(3):
            assert call(gw, "/api/svc/items", rs256(rsa_keys[0], "k1")).status_code == 200
        assert idp.fetches == 1
        idp.add(rsa_keys[1], "k2")  # the IdP rotates in a new key
        assert call(gw, "/api/svc/items", rs256(rsa_keys[1], "k2")).status_code == 200
        assert idp.fetches == 2
        assert call(gw, "/api/svc/items", rs256(rsa_keys[0], "k1")).status_code == 200
        assert idp.fetches == 2
        r = call(gw, "/api/svc/items", rs256(rsa_keys[0], "k3"))
        assert r.status_code == 401 and "kid" in r.json()["error"]["message"]


def test_auth_jwt_jwks_unknown_kids_do_not_hammer_the_idp(gateway, upstream, rsa_keys):
    idp = JwksServer()
    idp.add(rsa_keys[0], "k1")
    with serve(idp.app()) as idp_url:
        gw = jwks_gateway(gateway, upstream, idp_url, min_refresh=3600)
        assert call(gw, "/api/svc/items", rs256(rsa_keys[0], "k1")).status_code == 200
        for i in range(5):
            assert call(gw, "/api/svc/items", rs256(rsa_keys[1], f"attacker-{i}")).status_code == 401
        assert idp.fetches == 1


def test_auth_jwt_jwks_unavailable_is_503_and_not_retried_per_request(gateway, upstream, recorder, rsa_keys):
    idp = JwksServer()
    idp.status = 500
    with serve(idp.app()) as idp_url:
        gw = jwks_gateway(gateway, upstream, idp_url, min_refresh=3600)
        for _ in range(3):
            r = call(gw, "/api/svc/items", rs256(rsa_keys[0], "k1"))
            assert r.status_code == 503 and r.json()["error"]["code"] == "AUTH_UNAVAILABLE"
        assert idp.fetches == 1 and recorder.requests == []


def test_auth_accept_order_first_present_credential_decides(gateway, upstream, recorder):
    keys_first = gateway(gateway_yaml(options="{accept: [api_key, jwt]}"), {"svc": routes(upstream)}, env=ENV)
    good_token, bad_token = hs256(claims()), hs256(claims(), secret="x" * 40)
    r = call(keys_first, "/api/svc/items", good_token, **{"x-api-key": "wrong-key"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "INVALID_API_KEY"  # no fall-through to the valid JWT
    assert call(keys_first, "/api/svc/items", good_token).status_code == 200
    assert call(keys_first, "/api/svc/items", bad_token, **{"x-api-key": API_KEY}).status_code == 200
    jwt_first = gateway(gateway_yaml(options="{accept: [jwt, api_key]}"), {"svc": routes(upstream)}, env=ENV)
    r = call(jwt_first, "/api/svc/items", bad_token, **{"x-api-key": API_KEY})
    assert r.status_code == 401 and r.json()["error"]["code"] == "INVALID_TOKEN"
    assert call(jwt_first, "/api/svc/items", good_token, **{"x-api-key": "wrong-key"}).status_code == 200
    assert not {"authorization", "x-api-key"} & set(recorder.last["headers"])


def validate(tmp_path: Path, jwt_section: str) -> tuple[int, str]:
    backend = "backend: svc\nprefix: /svc\nupstream: {url: 'http://127.0.0.1:9'}\nroutes:\n  - {name: items, method: GET, path: /items}\n"
    root = write_config(tmp_path, gateway_yaml(jwt_section), {"svc": backend})
    out = io.StringIO()
    return run(["validate", "--config", str(root)], stdout=out), out.getvalue()


def test_auth_jwt_validate_needs_a_key_for_each_family(tmp_path):
    code, out = validate(tmp_path, "  jwt: {algorithms: [RS256]}\n")
    assert code == 1 and "gateway.yaml:7:" in out and "'jwks_url' is a required property" in out


def test_auth_jwt_validate_refuses_two_key_sources(tmp_path, rsa_keys):
    section = rs_section('    public_key: "${PEM}"\n    jwks_url: "https://idp.example.test/jwks"\n')
    backend = "backend: svc\nprefix: /svc\nupstream: {url: 'http://127.0.0.1:9'}\nroutes:\n  - {name: items, method: GET, path: /items}\n"
    root = write_config(tmp_path, gateway_yaml(section), {"svc": backend})
    with pytest.raises(ConfigErrors, match="set one of public_key, public_key_file, jwks_url"):
        load_config(root, {**ENV, "PEM": public_pem(rsa_keys[0])})
