"""An upstream error page that echoes the request never hands the gateway's own credentials to the client (D7).

The upstream here is real: it answers every request with an error page that repeats the request's URL and
headers (decoded Basic credentials too), as HTML or JSON, and echoes the Authorization header back as a header.
"""

from __future__ import annotations

import base64
import html
import json
from urllib.parse import quote, quote_plus, unquote

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.servers import serve

TOKEN = "tok/en+bearer=value&1"
HEADER_SECRET = "hdr-Secret/42+x"
STATIC_SECRET = "static:partner/key=9"
ROUTE_SECRET = "route-key+from/env"
QUERY_SECRET = "q/k+ey=v&1 2"
USER, PASSWORD = "svc-user", "pa:ss/w+rd=1"
TEMPLATE_ID, TEMPLATE_SECRET = "tmpl-key-id", "tmpl/secret+part"
ACCESS_KEY, SECRET_KEY, SESSION_TOKEN = (
    "AKIAEXAMPLEKEY123",
    "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
    "FwoGZXIvYXdzE/session+token==",
)

ENV = {
    "TOKEN": TOKEN,
    "HEADER_SECRET": HEADER_SECRET,
    "STATIC_SECRET": STATIC_SECRET,
    "ROUTE_SECRET": ROUTE_SECRET,
    "QUERY_SECRET": QUERY_SECRET,
    "BASIC_USER": USER,
    "BASIC_PASSWORD": PASSWORD,
    "TEMPLATE_ID": TEMPLATE_ID,
    "TEMPLATE_SECRET": TEMPLATE_SECRET,
    "ACCESS_KEY": ACCESS_KEY,
    "SECRET_KEY": SECRET_KEY,
    "SESSION_TOKEN": SESSION_TOKEN,
}

AUTH = {
    "bearer": '{style: bearer, token: "${TOKEN}"}',
    "header": '{style: header, header: X-Api-Key, prefix: "Key ", value: "${HEADER_SECRET}"}',
    "basic": '{style: basic, username: "${BASIC_USER}", password: "${BASIC_PASSWORD}"}',
    "query": '{style: query, param: api_key, value: "${QUERY_SECRET}"}',
    "template": '{style: template, header: Authorization, value: "Token {{ env.TEMPLATE_ID }}:{{ env.TEMPLATE_SECRET }}"}',
    "aws_sigv4": (
        '{style: aws_sigv4, access_key: "${ACCESS_KEY}", secret_key: "${SECRET_KEY}", '
        'session_token: "${SESSION_TOKEN}", region: us-east-1, service: execute-api}'
    ),
}


def secret_forms(value: str) -> set[str]:
    return {value, quote(value, safe=""), quote_plus(value), json.dumps(value)[1:-1], html.escape(value)}


SECRETS = {
    "bearer": secret_forms(TOKEN),
    "header": secret_forms(HEADER_SECRET),
    "basic": secret_forms(PASSWORD)
    | secret_forms(f"{USER}:{PASSWORD}")
    | secret_forms(base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()),
    "query": secret_forms(QUERY_SECRET),
    "template": secret_forms(TEMPLATE_SECRET) | secret_forms(f"Token {TEMPLATE_ID}:{TEMPLATE_SECRET}"),
    "aws_sigv4": secret_forms(SESSION_TOKEN) | secret_forms(ACCESS_KEY),
}
ALWAYS = secret_forms(STATIC_SECRET) | secret_forms(ROUTE_SECRET)


def echo_error_app() -> Starlette:
    """Every request: an error page repeating the URL and headers; ``/json/...`` as JSON, else as HTML."""

    async def page(request: Request) -> Response:
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in request.scope["headers"]}
        url = str(request.url)
        seen = {"url": url, "decoded_query": unquote(request.scope["query_string"].decode()), "headers": headers}
        auth = headers.get("authorization", "")
        if auth.startswith("Basic "):
            decoded = base64.b64decode(auth[6:]).decode()
            seen["basic"] = {"decoded": decoded, "url_encoded": quote(decoded, safe="")}
        echo = {
            "x-echo-authorization": auth or headers.get("x-api-key", ""),
            "x-echo-url": url.encode().decode("latin-1"),
        }
        if request.url.path.startswith("/json"):
            return Response(
                json.dumps({"error": {"message": f"denied for {auth}", "seen": seen}}),
                status_code=500,
                media_type="application/json",
                headers=echo,
            )
        lines = [f"<p>{html.escape(k)}: {html.escape(str(v))}</p>" for k, v in seen.items()]
        lines += [f"<p>{k}: {v}</p>" for k, v in headers.items()]
        return Response(
            "<html><body>" + "".join(lines) + "</body></html>", status_code=500, media_type="text/html", headers=echo
        )

    return Starlette(routes=[Route("/{path:path}", page, methods=["GET", "POST"])])


def routes(style: str, url: str) -> str:
    return f"""
backend: partner
prefix: /partner
upstream:
  url: "{url}"
  auth: {AUTH[style]}
  headers: {{X-Partner-Static: "${{STATIC_SECRET}}"}}
routes:
  - name: html
    method: GET
    path: /html
    upstream_path: /html/page
    request: {{headers: {{X-Route-Key: "{{{{ env.ROUTE_SECRET }}}}"}}}}
  - name: json
    method: GET
    path: /json
    upstream_path: /json/page
    request: {{headers: {{X-Route-Key: "{{{{ env.ROUTE_SECRET }}}}"}}}}
  - name: mapped
    method: GET
    path: /mapped
    upstream_path: /json/page
    request: {{headers: {{X-Route-Key: "{{{{ env.ROUTE_SECRET }}}}"}}}}
    response:
      error: {{code: UPSTREAM_DENIED, message: "{{{{ body.error.message }}}} {{{{ body.error.seen }}}}"}}
  - name: raw
    method: GET
    path: /raw
    upstream_path: /html/raw
    request: {{headers: {{X-Route-Key: "{{{{ env.ROUTE_SECRET }}}}"}}}}
    plugins: {{envelope: false}}
"""


@pytest.fixture(scope="module")
def echo_upstream():
    with serve(echo_error_app()) as url:
        yield url


@pytest.mark.parametrize("style", sorted(AUTH))
@pytest.mark.parametrize("path", ["/html", "/json", "/mapped", "/raw"])
def test_an_echoing_error_page_never_shows_the_gateways_credentials(gateway, echo_upstream, style, path):
    gw = gateway("version: 1\nplugins: [envelope]\n", {"partner": routes(style, echo_upstream)}, env=ENV)
    r = httpx.get(gw + "/partner" + path, timeout=30)
    assert r.status_code == 500  # the upstream's status, its page in the envelope (or raw)
    seen = r.text + "\n" + "\n".join(f"{k}: {v}" for k, v in r.headers.items())
    leaked = sorted(form for form in SECRETS[style] | ALWAYS if form in seen)
    assert leaked == [], seen[:3000]
    assert "****" in seen
    if path != "/raw":
        error = r.json()["error"]
        assert error["code"] == ("UPSTREAM_DENIED" if path == "/mapped" else "UPSTREAM_ERROR")
        assert "****" in json.dumps(error)


def test_the_echoed_page_keeps_what_is_not_secret(gateway, echo_upstream):
    gw = gateway("version: 1\nplugins: [envelope]\n", {"partner": routes("bearer", echo_upstream)}, env=ENV)
    details = httpx.get(gw + "/partner/json", timeout=30).json()["error"]["details"]
    assert details["error"]["message"] == "denied for Bearer ****"
    assert details["error"]["seen"]["headers"]["x-route-key"] == "****"
    assert details["error"]["seen"]["headers"]["x-partner-static"] == "****"
    assert details["error"]["seen"]["url"].endswith("/json/page")


def test_a_mapping_error_logs_no_credential_of_a_success_that_echoes_them(gateway, upstream, caplog):
    text = f"""
backend: partner
prefix: /partner
upstream:
  url: "{upstream}"
  auth: {AUTH["bearer"]}
routes:
  - name: broken
    method: GET
    path: /broken
    upstream_path: /anything
    response: {{data: "{{{{ each([1], body.headers.authorization) }}}}"}}
"""
    gw = gateway("version: 1\nplugins: [envelope]\n", {"partner": text}, env=ENV)
    with caplog.at_level("WARNING", logger="gateway_engine.proxy"):
        r = httpx.get(gw + "/partner/broken", timeout=30)
    assert (r.status_code, r.json()["error"]["code"]) == (502, "MAPPING_ERROR")
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "mapping failed" in logged and "Bearer ****" in logged
    assert not [form for form in SECRETS["bearer"] if form in logged + r.text]
