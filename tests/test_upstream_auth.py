"""Every upstream auth style sends exactly the header or parameter its backend expects."""

from __future__ import annotations

import base64

import httpx
import pytest

GATEWAY = "version: 1\nbase_path: /api\nplugins: []\n"
ENV = {"TOKEN": "tok-123", "KEY": "key-1", "SECRET": "sec-2", "USER": "u", "PASS": "p:w"}


def routes(url: str, auth: str) -> str:
    return f'backend: b\nprefix: /b\nupstream:\n  url: "{url}"\n  auth: {auth}\nroutes:\n  - {{name: r, method: GET, path: /r, upstream_path: /r}}\n'


@pytest.mark.parametrize(
    "auth, header, expected",
    [
        ("{style: bearer, token: '${TOKEN}'}", "authorization", "Bearer tok-123"),
        ("{style: header, header: x-publishable-api-key, value: '${KEY}'}", "x-publishable-api-key", "key-1"),
        (
            "{style: header, header: Authorization, prefix: 'users API-Key ', value: '${KEY}'}",
            "authorization",
            "users API-Key key-1",
        ),
        (
            "{style: basic, username: '${USER}', password: '${PASS}'}",
            "authorization",
            "Basic " + base64.b64encode(b"u:p:w").decode(),
        ),
        (
            "{style: template, header: Authorization, value: 'token {{ env.KEY }}:{{ env.SECRET }}'}",
            "authorization",
            "token key-1:sec-2",
        ),
    ],
)
def test_upstream_auth_header_styles(gateway, upstream, recorder, auth, header, expected):
    gw = gateway(GATEWAY, {"b": routes(upstream, auth)}, env=ENV)
    with httpx.Client() as c:
        r = c.get(gw + "/api/b/r", headers={"authorization": "Bearer client"})
    assert r.status_code == 200
    assert recorder.last["headers"][header] == expected
    assert "Bearer client" not in recorder.last["headers"].values()


def test_upstream_auth_query_style(gateway, upstream, recorder):
    gw = gateway(GATEWAY, {"b": routes(upstream, "{style: query, param: api_key, value: '${KEY}'}")}, env=ENV)
    with httpx.Client() as c:
        c.get(gw + "/api/b/r?x=1")
    assert recorder.last["query"] == "x=1&api_key=key-1"


def test_upstream_auth_none_sends_nothing(gateway, upstream, recorder):
    gw = gateway(GATEWAY, {"b": routes(upstream, "{style: none}")}, env=ENV)
    with httpx.Client() as c:
        c.get(gw + "/api/b/r")
    assert "authorization" not in recorder.last["headers"]


def test_upstream_auth_template_with_unset_env_is_unconfigured(gateway, upstream, recorder):
    gw = gateway(GATEWAY, {"b": routes(upstream, "{style: template, value: 'token {{ env.NOPE }}'}")}, env=ENV)
    with httpx.Client() as c:
        r = c.get(gw + "/api/b/r")
    assert r.status_code == 503
    assert "NOPE" in r.json()["error"]["message"]
    assert recorder.requests == []


def test_upstream_auth_replaces_a_client_header_of_the_same_name(gateway, upstream, recorder):
    gw = gateway(
        GATEWAY, {"b": routes(upstream, "{style: header, header: x-publishable-api-key, value: '${KEY}'}")}, env=ENV
    )
    with httpx.Client() as c:
        c.get(gw + "/api/b/r", headers={"x-publishable-api-key": "pk_attacker"})
    assert recorder.last["headers"]["x-publishable-api-key"] == "key-1"
