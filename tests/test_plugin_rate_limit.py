"""rate_limit: windows, keys, counting failures only, and counters shared through a real Redis."""

from __future__ import annotations

import io
import json
import logging
import textwrap

import httpx
import pytest
from gateway_engine_plugins.rate_limit import LocalWindows, RateLimitPlugin
from limits.aio.strategies import MovingWindowRateLimiter

from gateway_engine import GatewayInfo, RequestContext
from gateway_engine.cli.main import run
from tests.servers import free_port, write_config

STUB_AUTH = textwrap.dedent('''
    from gateway_engine import GatewayError, Plugin

    class StubAuth(Plugin):
        """Stands in for auth (same priority): consumer and identity from test headers."""
        name = "stub_auth"
        priority = 1000
        options_schema = {"type": "object", "additionalProperties": False, "properties": {
            "required": {"type": "boolean", "default": True, "description": "401 without x-test-user."}}}

        async def on_request(self, ctx):
            user = ctx.headers.get("x-test-user")
            if user is None and self.options["required"]:
                return GatewayError(401, "UNAUTHORIZED", "no test user")
            ctx.consumer = user
            ctx.identity = {"sub": user, "client_id": ctx.headers.get("x-test-client"),
                            "platform": ctx.headers.get("x-test-platform")} if user else None
''')


@pytest.fixture
def stub_auth(tmp_path, monkeypatch):
    """A plugin at auth's priority, installed the way pip would (module + entry point)."""
    site = tmp_path / "stub_site"
    (site / "stub_auth_plugin").mkdir(parents=True)
    (site / "stub_auth_plugin" / "__init__.py").write_text(STUB_AUTH)
    info = site / "stub_auth_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: stub-auth-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[gateway_engine.plugins]\nstub_auth = stub_auth_plugin:StubAuth\n")
    monkeypatch.syspath_prepend(str(site))
    return site


def gateway_yaml(
    rate_limit: dict | None = None, *, auth: bool = False, storage: str = "memory://", extra: str = ""
) -> str:
    chain = ["request_id"] + ([{"stub_auth": {"required": False}}] if auth else [])
    chain += [{"rate_limit": rate_limit}] if rate_limit is not None else []
    return (
        f"version: 1\nbase_path: /api\ntrusted_proxies: 1\nrate_limit_storage: '{storage}'\n{extra}"
        f"plugins: {json.dumps(chain + ['envelope'])}\n"
    )


def backend(upstream: str, extra_routes: str = "") -> str:
    return (
        f"backend: svc\nprefix: /svc\nupstream: {{url: '{upstream}'}}\nroutes:\n"
        "  - {name: items, method: [GET, POST], path: /items}\n"
        "  - {name: other, method: GET, path: /other}\n"
        "  - {name: login, method: POST, path: '/login/{code}', upstream_path: '/status/{code}'}\n" + extra_routes
    )


def get(c: httpx.Client, url: str, ip: str = "203.0.113.1", **headers: str) -> httpx.Response:
    return c.get(url, headers={"x-forwarded-for": ip, **headers})


def test_rate_limit_memory_rejects_with_429_and_headers(gateway, upstream, recorder):
    gw = gateway(gateway_yaml({"limit": "3/minute", "key": "ip"}), {"svc": backend(upstream)})
    with httpx.Client() as c:
        ok = [get(c, gw + "/api/svc/items") for _ in range(3)]
        refused = get(c, gw + "/api/svc/items")
    assert [r.status_code for r in ok] == [200, 200, 200]
    assert [r.headers["ratelimit-remaining"] for r in ok] == ["2", "1", "0"]
    assert all(r.headers["ratelimit-limit"] == "3" and 0 <= int(r.headers["ratelimit-reset"]) <= 60 for r in ok)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "RATE_LIMITED"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.headers["ratelimit-limit"] == "3" and refused.headers["ratelimit-remaining"] == "0"
    assert len(recorder.requests) == 3


def test_rate_limit_route_shorthand_and_multi_unit_window(gateway, upstream):
    routes = "  - {name: slow, method: GET, path: /slow-budget, upstream_path: /items, rate_limit: '2/15 minutes'}\n"
    gw = gateway(gateway_yaml({"limit": "100/minute", "key": "ip"}), {"svc": backend(upstream, routes)})
    with httpx.Client() as c:
        statuses = [get(c, gw + "/api/svc/slow-budget").status_code for _ in range(3)]
        refused = get(c, gw + "/api/svc/slow-budget")
        other = get(c, gw + "/api/svc/items")
    assert statuses == [200, 200, 429]
    assert 60 < int(refused.headers["retry-after"]) <= 900  # a 15-minute window, not a 1-minute one
    assert refused.json()["error"]["details"] == {
        "limit": 2,
        "period": "15 minutes",
        "retry_after": int(refused.headers["retry-after"]),
        "retryAfter": int(refused.headers["retry-after"]),
    }
    assert other.headers["ratelimit-limit"] == "100"  # per-route counters: the other route is untouched
    assert other.headers["ratelimit-remaining"] == "99"


def test_rate_limit_counts_only_failures(gateway, upstream, recorder):
    gw = gateway(gateway_yaml({"limit": "5/15 minutes", "key": "ip", "count": "failures"}), {"svc": backend(upstream)})
    with httpx.Client() as c:
        successes = [c.post(gw + "/api/svc/login/200").status_code for _ in range(8)]
        failures = [c.post(gw + "/api/svc/login/401") for _ in range(5)]
        sixth = c.post(gw + "/api/svc/login/401")
        success_after = c.post(gw + "/api/svc/login/200")
    assert successes == [200] * 8  # successful logins never use the budget
    assert [r.status_code for r in failures] == [401] * 5
    assert [r.headers["ratelimit-remaining"] for r in failures] == ["4", "3", "2", "1", "0"]
    assert sixth.status_code == 429 and success_after.status_code == 429
    assert sixth.json()["error"]["code"] == "RATE_LIMITED"
    assert 60 < int(sixth.headers["retry-after"]) <= 900
    assert len(recorder.requests) == 13  # the refused attempts never reached the upstream


def test_rate_limit_moving_window(gateway, upstream):
    gw = gateway(
        gateway_yaml({"limit": ["2/minute", "10/hour"], "key": "ip", "strategy": "moving-window"}),
        {"svc": backend(upstream)},
    )
    with httpx.Client() as c:
        responses = [get(c, gw + "/api/svc/items") for _ in range(3)]
    assert [r.status_code for r in responses] == [200, 200, 429]
    assert [r.headers["ratelimit-limit"] for r in responses] == ["2", "2", "2"]  # the tightest limit is reported
    assert 1 <= int(responses[2].headers["retry-after"]) <= 60
    plugin = RateLimitPlugin(
        {**defaults(), "strategy": "moving-window"}, GatewayInfo(base_path="", settings={}, config_dir=".")
    )
    assert isinstance(plugin.counters.limiter(plugin.strategy), MovingWindowRateLimiter)


def test_rate_limit_key_consumer_versus_ip(gateway, upstream, stub_auth):
    routes = "  - {name: by-ip, method: GET, path: /by-ip, upstream_path: /items, plugins: {rate_limit: {key: ip}}}\n"
    gw = gateway(gateway_yaml({"limit": "2/minute", "key": "consumer"}, auth=True), {"svc": backend(upstream, routes)})
    with httpx.Client() as c:
        # one consumer from two IPs shares one budget
        by_consumer = [
            get(c, gw + "/api/svc/items", ip, **{"x-test-user": "alice"}).status_code
            for ip in ("198.51.100.1", "198.51.100.2", "198.51.100.1")
        ]
        assert get(c, gw + "/api/svc/items", "198.51.100.1", **{"x-test-user": "bob"}).status_code == 200
        # anonymous callers fall back to their IP: two IPs, two budgets
        anonymous = [get(c, gw + "/api/svc/items", ip).status_code for ip in ("192.0.2.1", "192.0.2.1", "192.0.2.2")]
        # keyed by IP, the same consumer from two IPs gets two budgets
        by_ip = [
            get(c, gw + "/api/svc/by-ip", ip, **{"x-test-user": "alice"}).status_code
            for ip in ("198.51.100.1", "198.51.100.1", "198.51.100.2", "198.51.100.1")
        ]
    assert by_consumer == [200, 200, 429]
    assert anonymous == [200, 200, 200]
    assert by_ip == [200, 200, 200, 429]


def test_rate_limit_key_template_and_backend_scope(gateway, upstream, stub_auth):
    options = {"limit": "2/minute", "key": "{{ identity.platform }}:{{ ip }}", "scope": "backend"}
    gw = gateway(gateway_yaml(options, auth=True), {"svc": backend(upstream)})
    with httpx.Client() as c:

        def call(path: str, platform: str) -> int:
            return get(c, gw + path, "192.0.2.9", **{"x-test-user": "u", "x-test-platform": platform}).status_code

        web = [call("/api/svc/items", "web"), call("/api/svc/other", "web"), call("/api/svc/items", "web")]
        ios = [call("/api/svc/other", "ios"), call("/api/svc/items", "ios")]
    assert web == [200, 200, 429]  # the backend scope shares one budget across its routes
    assert ios == [200, 200]  # another platform, another counter


@pytest.mark.parametrize(
    "options, message",
    [
        ({"limit": "100/fortnight"}, "limit: '100/fortnight' is not a rate limit"),
        ({"limit": ["10/second", "0/minute"]}, "allows no request at all"),
        ({"key": "user"}, "key 'user' must be one of consumer, ip, route, client or a template"),
        ({"key": "{{ ip "}, "does not compile"),
    ],
)
def test_rate_limit_check_options_refuses(options, message):
    problems = RateLimitPlugin.check_options({**defaults(), **options})
    assert len(problems) == 1 and message in problems[0]


def test_rate_limit_validate_reports_bad_limit_with_location(tmp_path, upstream):
    routes = backend(upstream, "  - {name: bad, method: GET, path: /bad, rate_limit: 10/fortnight}\n")
    root = write_config(tmp_path, "version: 1\nplugins: [request_id, rate_limit]\n", {"svc": routes})
    out = io.StringIO()
    assert run(["validate", "--config", str(root)], stdout=out) == 1
    assert "routes.d/svc.yaml:8:42: routes[3].rate_limit: limit: '10/fortnight' is not a rate limit" in out.getvalue()


def defaults() -> dict:
    return {k: v["default"] for k, v in RateLimitPlugin.options_schema["properties"].items()}


# -- Redis ------------------------------------------------------------------------------
@pytest.mark.parametrize("strategy", ["fixed-window", "moving-window"])
def test_rate_limit_redis_budget_is_shared_by_two_instances(gateway, upstream, recorder, redis_url, strategy):
    config = gateway_yaml({"limit": "5/minute", "key": "ip", "strategy": strategy}, storage=redis_url)
    first, second = gateway(config, {"svc": backend(upstream)}), gateway(config, {"svc": backend(upstream)})
    with httpx.Client() as c:
        responses = [get(c, (first, second)[i % 2] + "/api/svc/items") for i in range(7)]
    assert [r.status_code for r in responses] == [200] * 5 + [429, 429]
    assert [r.headers["ratelimit-remaining"] for r in responses[:5]] == ["4", "3", "2", "1", "0"]
    assert len(recorder.requests) == 5


def test_rate_limit_redis_down_fails_open_or_closed(gateway, upstream, caplog):
    dead = f"redis://:s3cret-pass@127.0.0.1:{free_port()}"  # nothing listens there
    routes = "  - {name: strict, method: GET, path: /strict, upstream_path: /items, plugins: {rate_limit: {on_storage_error: closed}}}\n"
    gw = gateway(gateway_yaml({"limit": "1/minute", "key": "ip"}, storage=dead), {"svc": backend(upstream, routes)})
    with caplog.at_level(logging.WARNING, logger="gateway_engine.rate_limit"), httpx.Client() as c:
        open_ = [get(c, gw + "/api/svc/items") for _ in range(3)]
        closed = get(c, gw + "/api/svc/strict")
    assert [r.status_code for r in open_] == [200, 200, 200]
    assert "ratelimit-limit" not in open_[0].headers
    assert closed.status_code == 503
    assert closed.json()["error"]["code"] == "RATE_LIMIT_UNAVAILABLE"
    assert "rate limit storage redis://127.0.0.1" in caplog.text
    assert "s3cret" not in caplog.text and "s3cret" not in closed.text


def test_rate_limit_anonymous_template_key_falls_back_to_the_ip():
    plugin = RateLimitPlugin(
        {**defaults(), "key": "{{ consumer }}"}, GatewayInfo(base_path="", settings={}, config_dir=".")
    )
    ctx = RequestContext({"type": "http", "method": "GET", "path": "/", "headers": []}, None, None, {}, "192.0.2.1")
    assert plugin.identifiers(ctx)[2] == "ip:192.0.2.1"
    ctx.consumer = "alice"
    assert plugin.identifiers(ctx)[2] == "key:alice"


def test_rate_limit_with_the_real_auth_plugin_keys_by_key_name(gateway, upstream):
    auth = (
        "auth:\n  api_keys:\n    - {name: web, key: '${WEB_KEY}', scopes: ['*']}\n"
        "    - {name: mobile, key: '${MOBILE_KEY}', scopes: ['*']}\n"
    )
    config = (
        f"version: 1\nbase_path: /api\ntrusted_proxies: 1\n{auth}"
        "plugins: [request_id, {auth: {accept: [api_key]}}, {rate_limit: {limit: 2/minute}}, envelope]\n"
    )
    gw = gateway(config, {"svc": backend(upstream)}, {"WEB_KEY": "web-key-123456", "MOBILE_KEY": "mobile-key-123456"})
    with httpx.Client() as c:
        web = [
            get(c, gw + "/api/svc/items", ip, **{"x-api-key": "web-key-123456"}).status_code
            for ip in ("198.51.100.1", "198.51.100.2", "198.51.100.3")
        ]
        mobile = get(c, gw + "/api/svc/items", "198.51.100.1", **{"x-api-key": "mobile-key-123456"})
    assert web == [200, 200, 429]  # one consumer, three IPs, one budget
    assert mobile.status_code == 200 and mobile.headers["ratelimit-remaining"] == "1"


def test_rate_limit_local_windows_start_at_first_hit_end_on_time_and_sweep_ended_keys():
    windows = LocalWindows()
    assert windows.hit("a", 60, 1000.0) == (1, 1060.0)  # the window starts at the first hit
    assert windows.hit("a", 60, 1059.9) == (2, 1060.0)
    assert windows.hit("b", 10, 1001.0) == (1, 1011.0)  # keys count apart
    assert windows.hit("a", 60, 1060.0) == (1, 1120.0)  # the window has ended: a fresh one
    windows.hit("c", 60, 1200.0)  # a new window after a minute sweeps the ended ones
    assert set(windows._windows) == {"c"}
