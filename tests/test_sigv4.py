"""aws_sigv4 upstream auth and presigned URLs against a real S3 API that verifies signatures."""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import parse_qsl, quote, urlsplit

import httpx
import pytest

from tests.s3_server import moto_server_binary, s3_server

pytestmark = pytest.mark.skipif(
    moto_server_binary() is None, reason="moto_server is installed by `pip install -e .[test]`"
)

GATEWAY = "version: 1\nbase_path: /api\nplugins: [envelope]\n"
ROUTES = """
backend: files
prefix: /files
upstream:
  url: ${S3_URL}
  auth: {style: aws_sigv4, access_key: "${S3_KEY}", secret_key: "${S3_SECRET}", region: us-east-1, service: s3}
routes:
  - name: put
    method: PUT
    path: "/objects/{key:path}"
    upstream_path: "/media/{key}"
  - name: get
    method: GET
    path: "/objects/{key:path}"
    upstream_path: "/media/{key}"
    presign: {expires: 5m, when: "{{ query.mode == 'url' }}"}
    plugins: {envelope: false}
  - name: delete
    method: DELETE
    path: "/objects/{key:path}"
    upstream_path: "/media/{key}"
"""


@pytest.fixture(scope="module")
def s3():
    with s3_server() as server:
        yield server


def env(s3, secret=None):
    return {"S3_URL": s3["url"], "S3_KEY": s3["access_key"], "S3_SECRET": secret or s3["secret_key"]}


def test_sigv4_streamed_upload_download_delete(gateway, s3):
    gw = gateway(GATEWAY, {"files": ROUTES}, env=env(s3))
    data = b"hello s3 " * 10000

    def chunks():
        for i in range(0, len(data), 8192):
            yield data[i : i + 8192]

    with httpx.Client(timeout=30) as c:
        put = c.put(gw + "/api/files/objects/dir/hello.txt", content=chunks(), headers={"content-type": "text/plain"})
        assert put.status_code == 200, put.text
        got = c.get(gw + "/api/files/objects/dir/hello.txt")
        assert got.status_code == 200 and got.content == data
        assert c.delete(gw + "/api/files/objects/dir/hello.txt").status_code == 204
        assert c.get(gw + "/api/files/objects/dir/hello.txt").status_code == 404


def test_sigv4_wrong_secret_is_rejected_by_s3(gateway, s3):
    gw = gateway(GATEWAY, {"files": ROUTES}, env=env(s3, secret="wrong-secret"))
    with httpx.Client(timeout=30) as c:
        r = c.put(gw + "/api/files/objects/x.txt", content=b"x")
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "UPSTREAM_ERROR"
    assert "SignatureDoesNotMatch" in str(r.json()["error"]["details"])
    assert "wrong-secret" not in r.text


def _expected_query_signature(url: str, secret: str) -> str:
    """SigV4 query signing recomputed from AWS's documented algorithm (independent of botocore).

    https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-query-string-auth.html
    """
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "X-Amz-Signature"]
    canonical_query = "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(query))
    canonical = "\n".join(["GET", parts.path, canonical_query, f"host:{parts.netloc}\n", "host", "UNSIGNED-PAYLOAD"])
    params = dict(query)
    date = params["X-Amz-Date"]
    scope = params["X-Amz-Credential"].split("/", 1)[1]
    to_sign = "\n".join(["AWS4-HMAC-SHA256", date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = ("AWS4" + secret).encode()
    for part in scope.split("/"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def test_sigv4_presigned_url_is_signed_as_aws_documents(gateway, s3):
    # moto_server cannot authorise presigned URLs while it checks signatures, so the
    # signature is recomputed here from the published algorithm instead.
    gw = gateway(GATEWAY, {"files": ROUTES}, env=env(s3))
    with httpx.Client(timeout=30) as c:
        r = c.get(gw + "/api/files/objects/dir/p%20q.txt", params={"mode": "url"})
    assert r.status_code == 200
    body = r.json()
    assert body["method"] == "GET" and body["expiresAt"].endswith("Z")
    assert s3["secret_key"] not in r.text
    url = body["url"]
    assert url.startswith(s3["url"] + "/media/dir/p%20q.txt?")
    params = dict(parse_qsl(urlsplit(url).query))
    assert params["X-Amz-Expires"] == "300" and params["X-Amz-Credential"].startswith(s3["access_key"] + "/")
    assert params["X-Amz-Signature"] == _expected_query_signature(url, s3["secret_key"])
    assert params["X-Amz-Signature"] != _expected_query_signature(url.replace("p%20q", "other"), s3["secret_key"])


def test_sigv4_declares_the_payload_hash_it_signed(gateway, upstream, recorder):
    """S3 and MinIO reject a request whose x-amz-content-sha256 does not match its body."""
    routes = ROUTES.replace("${S3_URL}", upstream)
    gw = gateway(GATEWAY, {"files": routes}, env={"S3_KEY": "AKIDEXAMPLE", "S3_SECRET": "secret"})
    with httpx.Client(timeout=30) as c:
        c.put(gw + "/api/files/objects/a.txt", content=b"buffered body")  # no retries configured: streamed as it comes
        sent = recorder.last["headers"]
        assert sent["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD"
        c.put(gw + "/api/files/objects/b.txt", content=iter([b"chunk-1", b"chunk-2"]))  # chunked: streamed
        assert recorder.last["headers"]["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD"
        c.delete(gw + "/api/files/objects/a.txt")
        assert recorder.last["headers"]["x-amz-content-sha256"] == hashlib.sha256(b"").hexdigest()
        assert recorder.last["headers"]["authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
