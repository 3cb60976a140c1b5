"""The client IP behind trusted proxies: every X-Forwarded-For line is one list (RFC 9110 5.3), read from the right.

A proxy such as HAProxy appends its own X-Forwarded-For line after the client's; the client must never be able to
pick its address by sending a line of its own, nor by sending something that is not an address.
"""

from __future__ import annotations

import json

import httpx
import pytest

from gateway_engine.runtime.client_address import client_ip as _client_ip


def gateway_yaml(plugin: dict, trusted_proxies: int = 1) -> str:
    chain = ["request_id", plugin, "envelope"]
    return f"version: 1\nbase_path: /api\ntrusted_proxies: {trusted_proxies}\nplugins: {json.dumps(chain)}\n"


def backend(upstream: str) -> str:
    return f"backend: svc\nprefix: /svc\nupstream: {{url: '{upstream}'}}\nroutes:\n  - {{name: items, method: GET, path: /items}}\n"


def test_rate_limit_per_ip_counts_the_address_the_proxy_appended(gateway, upstream, recorder):
    gw = gateway(gateway_yaml({"rate_limit": {"limit": "5/minute", "key": "ip"}}), {"svc": backend(upstream)})
    with httpx.Client() as c:
        # the client's own line changes every time; the proxy's line (the real client) stays the same
        statuses = [
            c.get(
                gw + "/api/svc/items",
                headers=[("x-forwarded-for", f"198.51.100.{i}"), ("x-forwarded-for", "203.0.113.9")],
            ).status_code
            for i in range(8)
        ]
    assert statuses == [200] * 5 + [429] * 3
    assert {r["headers"]["x-forwarded-for"] for r in recorder.requests} == {"203.0.113.9"}


def test_ip_filter_sees_the_address_the_proxy_appended(gateway, upstream, recorder):
    gw = gateway(gateway_yaml({"ip_filter": {"allow": ["10.0.0.0/8"]}}), {"svc": backend(upstream)})
    with httpx.Client() as c:
        forged = c.get(
            gw + "/api/svc/items", headers=[("x-forwarded-for", "10.1.1.1"), ("x-forwarded-for", "192.0.2.1")]
        )
        real = c.get(gw + "/api/svc/items", headers=[("x-forwarded-for", "192.0.2.1"), ("x-forwarded-for", "10.1.1.1")])
    assert forged.status_code == 403 and real.status_code == 200
    assert [r["headers"]["x-forwarded-for"] for r in recorder.requests] == ["10.1.1.1"]


def test_ip_filter_does_not_believe_an_entry_that_is_not_an_address(gateway, upstream):
    # a deny-only filter lets an unparsable address through, so a junk entry must not become the client IP
    gw = gateway(gateway_yaml({"ip_filter": {"deny": ["127.0.0.0/8"]}}), {"svc": backend(upstream)})
    with httpx.Client() as c:
        junk = c.get(gw + "/api/svc/items", headers={"x-forwarded-for": "not-an-ip"})
        empty = c.get(gw + "/api/svc/items", headers={"x-forwarded-for": ", ,"})
    assert junk.status_code == 403 and empty.status_code == 403  # the peer, 127.0.0.1, is the client


def scope(*lines: str) -> dict:
    return {"headers": [(b"x-forwarded-for", line.encode()) for line in lines]}


@pytest.mark.parametrize(
    "lines, trusted, expected",
    [
        (("198.51.100.1", "203.0.113.9"), 1, "203.0.113.9"),  # two lines are one list
        (("198.51.100.1, 203.0.113.9",), 1, "203.0.113.9"),
        (("198.51.100.1", "203.0.113.9, 192.0.2.2"), 2, "203.0.113.9"),  # N proxies: the Nth entry from the right
        (("198.51.100.1",), 2, "10.0.0.1"),  # fewer hops than proxies: not believed
        ((), 1, "10.0.0.1"),
        (("203.0.113.9, garbage",), 1, "10.0.0.1"),  # the chosen entry is not an address
        (
            (
                "198.51.100.1",
                ", 203.0.113.9 ,",
            ),
            1,
            "203.0.113.9",
        ),  # empty elements are ignored (RFC 9110 5.6.1)
        (("2001:DB8::1",), 1, "2001:db8::1"),
        (("[2001:db8::1]:4711",), 1, "2001:db8::1"),
        (("203.0.113.9:4711",), 1, "203.0.113.9"),
        (("203.0.113.9",), 0, "10.0.0.1"),
    ],
)
def test_client_ip_reads_every_line_from_the_right(lines, trusted, expected):
    assert _client_ip(scope(*lines), "10.0.0.1", trusted) == expected
