"""ip_filter: allow/deny by address and CIDR (IPv4 and IPv6), deny wins, client IP via trusted_proxies."""

from __future__ import annotations

import io
import json

import httpx
import pytest
from gateway_engine_plugins.ip_filter import IpFilterPlugin

from gateway_engine import GatewayInfo
from gateway_engine.cli.main import run
from tests.servers import write_config


def gateway_yaml(options: dict, trusted_proxies: int = 1) -> str:
    chain = ["request_id", {"ip_filter": options}, "envelope"]
    return f"version: 1\nbase_path: /api\ntrusted_proxies: {trusted_proxies}\nplugins: {json.dumps(chain)}\n"


def backend(upstream: str) -> str:
    return (
        f"backend: svc\nprefix: /svc\nupstream: {{url: '{upstream}'}}\nroutes:\n"
        "  - {name: items, method: GET, path: /items}\n"
        "  - {name: open, method: GET, path: /open, plugins: {ip_filter: false}}\n"
    )


def status_from(c: httpx.Client, url: str, ip: str) -> int:
    return c.get(url, headers={"x-forwarded-for": ip}).status_code


def test_ip_filter_allow_list_with_deny_exception(gateway, upstream, recorder):
    options = {"allow": ["10.0.0.0/8", "2001:db8::/32", "192.0.2.7"], "deny": ["10.6.6.0/24"]}
    gw = gateway(gateway_yaml(options), {"svc": backend(upstream)})
    url = gw + "/api/svc/items"
    with httpx.Client() as c:
        allowed = [status_from(c, url, ip) for ip in ("10.1.2.3", "2001:db8::1", "192.0.2.7", "::ffff:10.9.9.9")]
        refused = c.get(url, headers={"x-forwarded-for": "10.6.6.6"})
        outside = [status_from(c, url, ip) for ip in ("192.0.2.8", "2001:db9::1", "not-an-ip")]
        unfiltered_route = status_from(c, gw + "/api/svc/open", "192.0.2.8")
    assert allowed == [200, 200, 200, 200]
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "IP_FORBIDDEN"
    assert "10.6.6.6" not in refused.text
    assert outside == [403, 403, 403]
    assert unfiltered_route == 200
    assert len(recorder.requests) == 5


def test_ip_filter_deny_only(gateway, upstream):
    gw = gateway(gateway_yaml({"deny": ["203.0.113.0/24", "2001:db8:bad::/48"]}), {"svc": backend(upstream)})
    url = gw + "/api/svc/items"
    with httpx.Client() as c:
        assert status_from(c, url, "203.0.113.50") == 403
        assert status_from(c, url, "2001:db8:bad::1") == 403
        assert status_from(c, url, "203.0.114.1") == 200
        assert status_from(c, url, "2001:db8:600d::1") == 200


def test_ip_filter_uses_the_peer_when_no_proxy_is_trusted(gateway, upstream):
    gw = gateway(gateway_yaml({"allow": ["10.0.0.0/8"]}, trusted_proxies=0), {"svc": backend(upstream)})
    with httpx.Client() as c:
        # a spoofed X-Forwarded-For is ignored: the TCP peer (127.0.0.1) is the client
        assert status_from(c, gw + "/api/svc/items", "10.1.1.1") == 403
    gw = gateway(gateway_yaml({"allow": ["127.0.0.1"]}, trusted_proxies=0), {"svc": backend(upstream)})
    with httpx.Client() as c:
        assert status_from(c, gw + "/api/svc/items", "10.1.1.1") == 200


def test_ip_filter_permits_unit():
    plugin = IpFilterPlugin(
        {"allow": [], "deny": ["::1", "127.0.0.0/8"]}, GatewayInfo(base_path="", settings={}, config_dir=".")
    )
    assert not plugin.permits("127.0.0.1") and not plugin.permits("::1") and not plugin.permits("::ffff:127.0.0.2")
    assert plugin.permits("128.0.0.1") and plugin.permits("garbage")  # deny-only: an unparsable address is not listed


@pytest.mark.parametrize(
    "options, message",
    [
        ({"allow": ["10.0.0.1/8"]}, "did you mean 10.0.0.0/8?"),
        ({"deny": ["300.1.1.1"]}, "deny: '300.1.1.1' is not an IP address or CIDR block"),
        ({"allow": ["2001:db8::/129"]}, "allow: '2001:db8::/129' is not an IP address or CIDR block"),
    ],
)
def test_ip_filter_check_options_refuses(options, message):
    problems = IpFilterPlugin.check_options({"allow": [], "deny": [], **options})
    assert len(problems) == 1 and message in problems[0]


def test_ip_filter_validate_reports_bad_cidr(tmp_path, upstream):
    root = write_config(
        tmp_path, "version: 1\nplugins:\n  - ip_filter:\n      allow: [10.0.0.0/33]\n", {"svc": backend(upstream)}
    )
    out = io.StringIO()
    assert run(["validate", "--config", str(root)], stdout=out) == 1
    assert (
        "gateway.yaml:3:5: plugins[0].ip_filter: allow: '10.0.0.0/33' is not an IP address or CIDR block"
        in out.getvalue()
    )
