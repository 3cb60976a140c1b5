"""The stored-key format: shape, prefix and checksum decide before any lookup; only digests are kept."""

from __future__ import annotations

import hashlib
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway_engine.keys import keyformat
from gateway_engine.keys.settings import keys_settings


def test_keys_format_generated_keys_are_well_formed_and_distinct():
    keys = {keyformat.generate("rp") for _ in range(200)}
    assert len(keys) == 200
    for key in keys:
        assert key.startswith("rp_") and len(key) == 3 + 49
        assert keyformat.well_formed(key, frozenset({"rp"}))
        assert not keyformat.well_formed(key, frozenset({"gk"}))  # another gateway's prefix is not looked up
        assert keyformat.digest(key) == hashlib.sha256(key.encode()).hexdigest()
        assert keyformat.start_of(key) == key[:7]


@settings(max_examples=200, deadline=None)
@given(position=st.integers(min_value=3, max_value=51), replacement=st.sampled_from(keyformat.ALPHABET))
def test_keys_format_any_single_character_change_fails_the_checksum(position, replacement):
    key = keyformat.generate("gk")
    changed = key[:position] + replacement + key[position + 1 :]
    assert keyformat.well_formed(changed) == (changed == key)


@pytest.mark.parametrize(
    "presented",
    [
        "",
        "gk_",
        "gk",
        "GK_" + "a" * 49,
        "gk-" + "a" * 49,
        "gk_" + "a" * 48,
        "gk_" + "a" * 50,
        "gk_" + "é" * 49,
        "g k_" + "a" * 49,
    ],
)
def test_keys_format_malformed_keys_are_refused(presented):
    assert not keyformat.well_formed(presented)


def test_keys_format_prefixes_are_checked():
    with pytest.raises(ValueError, match="prefix"):
        keyformat.generate("Bad_Prefix")
    for section, message in [
        ({"prefix": "9gk"}, "prefix"),
        ({"accept_prefixes": ["ok", "NOT OK"]}, "accept_prefixes"),
        ({"rotation_grace": "soon"}, "rotation_grace"),
        ({"key_rate_limit": {"min": 10, "max": 5}}, "key_rate_limit"),
    ]:
        with pytest.raises(ValueError, match=message):
            keys_settings(section)
    settings_ = keys_settings({"prefix": "rp", "accept_prefixes": ["gk"], "rotation_grace": "1h"})
    assert settings_.accept_prefixes == {"rp", "gk"} and settings_.rotation_grace == 3600


async def test_keys_format_a_cached_key_is_checked_once_and_a_malformed_one_every_time(monkeypatch):
    """The verifier checks shape and checksum only for a key it has not cached: a digest found in the cache
    is that of a key that passed the check. A malformed key is refused every time, never looked up or cached."""
    from gateway_engine.keys import verifier as verifier_module
    from gateway_engine.keys.verifier import StoredKeyVerifier

    key = keyformat.generate("gk")
    row = {
        "id": "key_1",
        "name": "shop",
        "status": "active",
        "platform_active": True,
        "client_active": None,
        "owner_kind": "platform",
        "platform_code": "shop",
        "platform_id": "plt_1",
        "client_id": None,
        "client_external_id": None,
        "scopes": ["*"],
        "roles": [],
        "rate_limit": None,
        "expires_at": None,
    }
    digests: list[str] = []
    checked: list[str] = []

    async def lookup(digest: str):
        digests.append(digest)
        return row if digest == keyformat.digest(key) else None

    shape_and_checksum = keyformat.well_formed

    def well_formed(presented, prefixes=None):
        checked.append(presented)
        return shape_and_checksum(presented, prefixes)

    monkeypatch.setattr(verifier_module.keyformat, "well_formed", well_formed)
    verifier = StoredKeyVerifier(keys_settings({}), lookup, lambda key_id, now: None)
    statuses = [(await verifier.verify(key)).status for _ in range(3)]
    flipped = key[:-1] + ("A" if key[-1] != "A" else "B")
    refused = [(await verifier.verify(flipped)).status for _ in range(2)]
    assert statuses == ["VALID"] * 3 and refused == ["MALFORMED"] * 2
    assert checked == [key, flipped, flipped]
    assert digests == [keyformat.digest(key)] and len(verifier) == 1


def test_keys_usage_day_is_the_utc_date_of_the_moment():
    from gateway_engine.keys.usage import day_of

    midnight = 1_796_428_800.0  # 2026-12-05T00:00:00Z
    for moment in (midnight - 0.001, midnight, midnight + 0.5, midnight + 86_399.999, 0.0, 951_782_400.0):
        assert day_of(moment) == time.strftime("%Y-%m-%d", time.gmtime(moment))
    assert day_of(midnight - 0.001) == "2026-12-04" and day_of(midnight) == "2026-12-05"
