"""The verified-token cache of the JWT verifier: hits skip the signature check, every check still holds."""

from __future__ import annotations

import asyncio
import time

import jwt
from gateway_engine_plugins import auth_jwt
from gateway_engine_plugins.auth_jwt import JwtVerifier
from gateway_engine_plugins.jwt_cache import MAX_CACHED_TOKEN

from gateway_engine import GatewayError

SECRET = "cache-secret-0f1e2d3c4b5a69788796a5b4c3d2e1f0-9a8b7c6d5e4f30211203f4e5d6c7b8a9"


def verifier(**spec) -> JwtVerifier:
    return JwtVerifier({"secret": SECRET, "algorithms": ["HS256"], "leeway": 0, **spec}, ".")


def token(secret: str = SECRET, algorithm: str = "HS256", **claims) -> str:
    now = int(time.time())
    return jwt.encode({"sub": "u-1", "iat": now, "exp": now + 600, **claims}, secret, algorithm=algorithm)


def check(v: JwtVerifier, t: str):
    return asyncio.run(v.verify(t))


class CountingDecode:
    """Counts the real ``jwt.decode`` calls the verifier makes (each one a signature check)."""

    def __init__(self, monkeypatch):
        self.calls = 0
        real = jwt.decode

        def decode(*args, **kwargs):
            self.calls += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(auth_jwt.jwt, "decode", decode)


def test_jwt_cache_a_repeated_token_is_verified_once(monkeypatch):
    decodes = CountingDecode(monkeypatch)
    v, t = verifier(), token()
    first, second = check(v, t), check(v, t)
    assert first == second and first["sub"] == "u-1"
    assert decodes.calls == 1


def test_jwt_cache_hands_out_copies_so_a_caller_cannot_change_the_cached_claims():
    v, t = verifier(), token()
    check(v, t)["sub"] = "someone-else"
    assert check(v, t)["sub"] == "u-1"


def test_jwt_cache_an_expired_cached_token_is_refused_at_its_exp():
    v = verifier()
    exp = int(time.time()) + 2
    t = token(exp=exp)
    assert check(v, t)["exp"] == exp  # cached now
    while time.time() < exp + 0.05:
        time.sleep(0.05)
    refused = check(v, t)
    assert isinstance(refused, GatewayError) and refused.code == "TOKEN_EXPIRED"


def test_jwt_cache_keeps_the_leeway_of_an_uncached_check():
    v = verifier(leeway=60)
    t = token(exp=int(time.time()) - 10)  # expired, but within the leeway
    assert check(v, t)["sub"] == "u-1"
    assert check(v, t)["sub"] == "u-1"


def test_jwt_cache_a_token_not_yet_valid_is_not_accepted_early():
    v = verifier(cache_failure_ttl=30)
    t = token(nbf=int(time.time()) + 3600)
    for _ in range(3):
        refused = check(v, t)
        assert isinstance(refused, GatewayError) and refused.status == 401 and "not valid yet" in refused.message


def test_jwt_cache_a_refusal_is_kept_only_for_the_failure_ttl(monkeypatch):
    decodes = CountingDecode(monkeypatch)
    v = verifier(cache_failure_ttl=0.3)
    t = token(secret="another-secret-of-enough-length-1234567890")
    assert check(v, t).code == "INVALID_TOKEN"
    assert check(v, t).code == "INVALID_TOKEN"
    assert decodes.calls == 1  # the second came from the cache
    time.sleep(0.4)
    assert check(v, t).code == "INVALID_TOKEN"
    assert decodes.calls == 2


def test_jwt_cache_ttl_bounds_how_long_a_success_is_served(monkeypatch):
    decodes = CountingDecode(monkeypatch)
    v, t = verifier(cache_ttl=0.3), token()
    check(v, t)
    check(v, t)
    assert decodes.calls == 1
    time.sleep(0.4)
    check(v, t)
    assert decodes.calls == 2


def test_jwt_cache_another_audience_or_issuer_never_reuses_a_cached_result():
    t = token(aud="orders", iss="https://idp-a.test")
    orders = verifier(audience="orders", issuer="https://idp-a.test")
    assert check(orders, t)["aud"] == "orders"  # cached in this verifier
    for other in (
        verifier(audience="billing", issuer="https://idp-a.test"),
        verifier(audience="orders", issuer="https://idp-b.test"),
    ):
        refused = check(other, t)
        assert isinstance(refused, GatewayError) and refused.status == 401
    assert check(orders, t)["aud"] == "orders"


def test_jwt_cache_a_forged_token_sharing_a_prefix_is_not_a_hit():
    v, good = verifier(), token()
    assert check(v, good)["sub"] == "u-1"
    head, payload, signature = good.split(".")
    forged_signature = signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB")
    for forged in (f"{head}.{payload}.{forged_signature}", f"{head}.{payload}.{signature}x", f"{head}.{payload}."):
        refused = check(v, forged)
        assert isinstance(refused, GatewayError) and refused.status == 401


def test_jwt_cache_an_algorithm_outside_the_allowlist_is_refused_even_after_a_hit():
    t = token(algorithm="HS512")
    lenient = verifier(algorithms=["HS256", "HS512"])
    assert check(lenient, t)["sub"] == "u-1"
    refused = check(verifier(), t)  # HS256 only
    assert isinstance(refused, GatewayError) and "algorithm is not accepted" in refused.message


def test_jwt_cache_is_bounded_and_drops_the_least_recently_used():
    v = verifier(cache_size=3)
    tokens = [token(sub=f"u-{i}") for i in range(5)]
    for t in tokens[:3]:
        check(v, t)
    check(v, tokens[0])  # now the most recently used
    for t in tokens[3:]:
        check(v, t)
    assert len(v.cache) == 3
    assert set(v.cache._entries) == {tokens[0], tokens[3], tokens[4]}


def test_jwt_cache_size_zero_keeps_nothing_and_long_tokens_are_not_held():
    off = verifier(cache_size=0)
    check(off, token())
    assert len(off.cache) == 0
    v = verifier()
    long_token = token(padding="x" * MAX_CACHED_TOKEN)
    assert check(v, long_token)["sub"] == "u-1"
    assert len(v.cache) == 0
