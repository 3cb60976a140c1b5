"""The stored-key format: shape, prefix and checksum decide before any lookup; only digests are kept."""

from __future__ import annotations

import hashlib

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
