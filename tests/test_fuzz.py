"""Property-based: random methods, paths, encodings, queries, headers and bodies through a real gateway.

Never a 500, every gateway error is the envelope, no secret or trace in any answer,
and no request reaches an upstream path outside its configured base.
"""

from __future__ import annotations

import contextlib
import http.client
import json
from urllib.parse import unquote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway_engine import create_app
from tests.servers import serve, write_config
from tests.upstream_app import Recorder, echo_app

SECRET = "s3cr3t-upstream-token-value"
GATEWAY = (
    "version: 1\nbase_path: /api\nplugins: [request_id, envelope]\nlimits: {request_body: 4096, header_bytes: 8192}\n"
)
ROUTES = """
backend: svc
prefix: /svc
upstream: {{url: "{url}/base", auth: {{style: bearer, token: "${{TOKEN}}"}}, timeout: 5s}}
routes:
  - {{name: item, method: [GET, DELETE], path: "/items/{{id}}", upstream_path: "/items/{{id}}"}}
  - {{name: rest, method: [GET, POST, PUT], path: "/files/{{rest:path}}", upstream_path: "/files/{{rest}}"}}
  - name: mapped
    method: POST
    path: /mapped
    upstream_path: /mapped
    request: {{body: {{name: "{{{{ body.name }}}}", n: "{{{{ body.n }}}}"}}, encoding: form}}
    response: {{data: "{{{{ body.body }}}}"}}
  - name: validated
    method: POST
    path: /validated
    upstream_path: /validated
    request: {{schema: {{type: object, required: [a], properties: {{a: {{type: integer}}}}}}}}
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    recorder = Recorder()
    with contextlib.ExitStack() as es:
        upstream = es.enter_context(serve(echo_app(recorder)))
        root = write_config(tmp_path_factory.mktemp("fuzz"), GATEWAY, {"svc": ROUTES.format(url=upstream)})
        gw = es.enter_context(serve(create_app(str(root), {"TOKEN": SECRET})))
        yield gw, recorder


hostile = st.sampled_from(
    [
        "..",
        ".",
        "%2e%2e",
        "%2F",
        "%00",
        "%ff",
        "%",
        "%zz",
        "a%2Fb",
        "@evil",
        "?",
        "#x",
        "%0d%0a",
        "%C3%A9",
        "x" * 300,
        "..;",
        "..;x",
        ".;",
        "..%2F",
        "%2e%2e%5c",
        "..%5C",
        "%252e%252e",
        "%252f",
        "a;b",
        "...",
        "..%20",
        "x%2F..%2F..",
        "%2e%2e%2f%2e%2e%2f",
    ]
)
segment = st.one_of(
    st.sampled_from(["items", "files", "mapped", "validated"]),
    hostile,
    st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="/?#"), max_size=12),
)
paths = st.one_of(
    st.lists(segment, min_size=0, max_size=5).map(lambda parts: "/api/svc/" + "/".join(parts)),
    st.tuples(st.sampled_from(["items", "files"]), st.lists(st.one_of(hostile, segment), min_size=1, max_size=3)).map(
        lambda t: f"/api/svc/{t[0]}/" + "/".join(t[1])
    ),  # a route's own path with hostile parameters
)
queries = st.one_of(
    st.just(""),
    st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="#"), max_size=40).map(
        lambda q: "?" + q
    ),
)
header_values = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60)
bodies = st.one_of(
    st.just(b""),
    st.binary(max_size=300),
    st.sampled_from(
        [
            b'{"name": "x", "n": 1}',
            b'{"a": 1}',
            b'{"a": "x"}',
            b"{bad",
            b"[]",
            b"null",
            b'{"name": {"deep": [1, 2]}}',
            b"x" * 5000,
        ]
    ),
)


def served_path(raw_path: str) -> str:
    """What an upstream that decodes (twice), maps ``\\`` to ``/``, drops ``;params`` and resolves dot-segments
    (``..``, ``...``, ``.. `` as Windows trims them) serves."""
    out: list[str] = []
    for segment in unquote(unquote(raw_path)).replace("\\", "/").split("/"):
        core = segment.split(";", 1)[0]
        if "." in core and not core.strip(". "):
            if core.strip(" ") != "." and out:
                out.pop()
        else:
            out.append(segment)
    return "/".join(out)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]),
    path=paths,
    query=queries,
    content_type=st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded", ""]),
    extra=st.dictionaries(
        st.sampled_from(
            ["X-Request-Id", "X-Forwarded-For", "Authorization", "x-api-key", "Accept-Encoding", "X-Custom"]
        ),
        header_values,
        max_size=3,
    ),
    body=bodies,
)
def test_fuzz_gateway_never_fails_open(stack, method, path, query, content_type, extra, body):
    gw, recorder = stack
    host, port = gw.split("//")[1].split(":")
    before = len(recorder.requests)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    headers = dict(extra)
    if content_type:
        headers["Content-Type"] = content_type
    try:
        conn.putrequest(method, path + query, skip_accept_encoding=True)
        for k, v in headers.items():
            conn.putheader(k, v)
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        status, data = response.status, response.read()
        response_headers = dict(response.getheaders())
    finally:
        conn.close()
    assert status != 500 and status < 500 or status in (502, 503, 504), (status, data)
    text = data.decode("utf-8", "replace")
    if status == 200 and data.startswith(b'{"success":true'):
        echoed = json.loads(data)
        if isinstance(echoed["data"], dict):
            echoed["data"].pop("headers", None)  # the echo upstream reflects what it received, credentials included
        text = json.dumps(echoed)
    assert SECRET not in text and "Traceback" not in text
    from_upstream = len(recorder.requests) > before
    code = None
    if method != "HEAD" and status >= 400 and data:
        payload = json.loads(data)
        code = payload["error"]["code"]
        assert payload["success"] is False and set(payload["error"]) <= {"code", "message", "details"}
        assert payload["meta"]["requestId"] == response_headers.get("x-request-id")
    for sent in recorder.requests[before:]:
        assert sent["raw_path"].startswith("/base/"), sent["raw_path"]
        assert ".." not in sent["raw_path"].split("/")
        assert served_path(sent["raw_path"]).startswith("/base/"), sent[
            "raw_path"
        ]  # as a normalising upstream reads it
        assert (
            "authorization" not in {k.lower() for k in extra}
            or sent["headers"].get("authorization") == f"Bearer {SECRET}"
        )
    if code in (
        "ROUTE_NOT_FOUND",
        "METHOD_NOT_ALLOWED",
        "BAD_PATH",
        "INVALID_JSON",
        "PAYLOAD_TOO_LARGE",
        "HEADERS_TOO_LARGE",
        "VALIDATION_ERROR",
        "UNSUPPORTED_MEDIA_TYPE",
    ):
        assert not from_upstream, (code, path)  # refused by the gateway: the upstream never saw it
