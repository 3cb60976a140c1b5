"""routes.d/storage.yaml against a fake S3 API, and against a real one (moto_server, checking SigV4)."""

from __future__ import annotations

import hashlib
import re
from urllib.parse import parse_qsl, urlsplit

import pytest
from starlette.responses import Response

from tests.contracts.fakes import FakeBackend, failed, ok, route_names, start
from tests.s3_server import moto_server_binary, s3_server

ACCESS, SECRET = "AKIACITYGATEWAY", "city-secret-key/+x"
SIGV4 = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=AKIACITYGATEWAY/\d{8}/me-central-1/s3/aws4_request, "
    r"SignedHeaders=([a-z0-9;-]+), Signature=[0-9a-f]{64}$"
)
PDF = b"%PDF-1.7 permit " * 4096


def s3_error(status, code, message):
    xml = f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>{message}</Message></Error>'
    return Response(xml, status_code=status, media_type="application/xml")


def signed(headers):
    """What S3 requires of a header-signed request (the signature itself is checked by the moto test)."""
    match = SIGV4.match(headers.get("authorization", ""))
    return bool(match) and {"host", "x-amz-content-sha256", "x-amz-date"} <= set(match.group(1).split(";"))


def fake_s3() -> FakeBackend:
    fake = FakeBackend(signed, s3_error(403, "AccessDenied", "Access Denied"))
    objects: dict[tuple[str, str], tuple[bytes, str]] = {}
    fake.objects = objects

    @fake.route("/{bucket}/{key:path}", "PUT", "GET", "DELETE")
    async def obj(request, rec):
        key = (request.path_params["bucket"], request.path_params["key"])
        declared = rec["headers"].get("x-amz-content-sha256")
        if declared != "UNSIGNED-PAYLOAD" and declared != hashlib.sha256(rec["body"]).hexdigest():
            return s3_error(
                400,
                "XAmzContentSHA256Mismatch",
                "The provided 'x-amz-content-sha256' header does not match what was computed.",
            )
        if request.method == "PUT":
            objects[key] = (rec["body"], rec["headers"].get("content-type", "binary/octet-stream"))
            return Response(status_code=200, headers={"ETag": '"9b2cf535f27731c974343645a3985328"'})
        if request.method == "DELETE":
            objects.pop(key, None)
            return Response(status_code=204)
        if key not in objects:
            return s3_error(404, "NoSuchKey", "The specified key does not exist.")
        return Response(objects[key][0], media_type=objects[key][1])

    return fake


@pytest.fixture
def s3fake(gateway):
    fake = fake_s3()
    with fake.serve() as url:
        yield (
            fake,
            url,
            start(
                gateway,
                "storage",
                {
                    "MINIO_ENDPOINT": url,
                    "MINIO_ACCESS_KEY": ACCESS,
                    "MINIO_SECRET_KEY": SECRET,
                    "MINIO_BUCKET": "city-files",
                    "MINIO_REGION": "me-central-1",
                },
            ),
        )


def chunks(data, size=16384):
    for i in range(0, len(data), size):
        yield data[i : i + size]


def test_storage_upload_streams_a_signed_put(s3fake):
    fake, _, client = s3fake
    r = client.post(
        "/storage/upload",
        params={"key": "permits/2026/permit 7.pdf"},
        content=chunks(PDF),
        headers={"content-type": "application/pdf"},
    )
    assert ok(r, "minio", 201) == {"key": "permits/2026/permit 7.pdf", "etag": "9b2cf535f27731c974343645a3985328"}
    rec = fake.last
    assert rec["method"] == "PUT" and rec["raw_path"] == "/city-files/permits/2026/permit%207.pdf"
    assert rec["query"] == ""  # `key` is the gateway's, not S3's
    assert rec["headers"]["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD"  # streamed, never buffered to be hashed
    assert rec["headers"]["content-type"] == "application/pdf" and rec["body"] == PDF
    assert "x-api-key" not in rec["headers"]


@pytest.mark.parametrize("key", ["../etc/passwd", "a/../../b", "/absolute.txt", "a/..", "x\x01y", "", None])
def test_storage_upload_refuses_unsafe_keys(s3fake, key):
    fake, _, client = s3fake
    r = client.post("/storage/upload", params={} if key is None else {"key": key}, content=b"x")
    failed(r, "minio", 400, "INVALID_PARAMETER")
    assert fake.requests == []


def test_storage_get_answers_a_presigned_url_without_calling_s3(s3fake):
    fake, url, client = s3fake
    r = client.get("/storage/files/permits/2026/permit%207.pdf")
    data = ok(r, "minio")
    assert data["method"] == "GET" and re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", data["expiresAt"])
    assert data["url"].startswith(url + "/city-files/permits/2026/permit%207.pdf?")
    query = dict(parse_qsl(urlsplit(data["url"]).query))
    assert query["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256" and query["X-Amz-Expires"] == "900"
    assert (
        query["X-Amz-Credential"].startswith(ACCESS + "/")
        and "/me-central-1/s3/aws4_request" in query["X-Amz-Credential"]
    )
    assert re.fullmatch(r"[0-9a-f]{64}", query["X-Amz-Signature"])
    assert SECRET not in r.text and r.headers["cache-control"] == "no-store"
    assert fake.requests == []


def test_storage_stream_mode_and_delete(s3fake):
    fake, _, client = s3fake
    fake.objects[("city-files", "a/b.pdf")] = (PDF, "application/pdf")
    r = client.get("/storage/files/a/b.pdf", params={"mode": "stream"})
    assert r.status_code == 200 and r.content == PDF and r.headers["content-type"] == "application/pdf"
    assert fake.last["method"] == "GET" and fake.last["raw_path"] == "/city-files/a/b.pdf" and fake.last["query"] == ""
    assert (
        fake.last["headers"]["x-amz-content-sha256"]
        == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )
    assert ok(client.delete("/storage/files/a/b.pdf"), "minio") == {"key": "a/b.pdf", "deleted": True}
    assert fake.last["method"] == "DELETE" and fake.last["raw_path"] == "/city-files/a/b.pdf"
    error = failed(client.get("/storage/files/a/b.pdf", params={"mode": "stream"}), "minio", 404, "UPSTREAM_ERROR")
    assert "NoSuchKey" in error["details"]


def test_storage_paths_cannot_climb_out_of_the_bucket(s3fake):
    fake, _, client = s3fake
    assert client.get("/storage/files/a/%2e%2e/%2e%2e/other-bucket/x").status_code == 400
    assert client.delete("/storage/files/a/..%2F..%2Fx").status_code == 400
    assert fake.requests == []


def test_storage_every_route_has_a_contract():
    assert route_names("storage") == {"upload", "get-file", "delete-file"}


# -- against a real S3 API that verifies every signature -------------------------------------------

needs_moto = pytest.mark.skipif(moto_server_binary() is None, reason="moto_server comes with `pip install -e .[test]`")


@pytest.fixture(scope="module")
def s3():
    if moto_server_binary() is None:
        pytest.skip("moto_server comes with `pip install -e .[test]`")
    with s3_server() as server:
        yield server


def real_env(s3, secret=None):
    return {
        "MINIO_ENDPOINT": s3["url"],
        "MINIO_ACCESS_KEY": s3["access_key"],
        "MINIO_SECRET_KEY": secret or s3["secret_key"],
        "MINIO_BUCKET": "media",
        "MINIO_REGION": s3["region"],
    }


@needs_moto
def test_storage_real_s3_upload_download_delete(gateway, s3):
    import boto3

    client = start(gateway, "storage", real_env(s3))
    created = ok(
        client.post(
            "/storage/upload",
            params={"key": "city/permit 7.pdf"},
            content=chunks(PDF),
            headers={"content-type": "application/pdf"},
        ),
        "minio",
        201,
    )
    assert created["key"] == "city/permit 7.pdf" and created["etag"]
    direct = boto3.client(
        "s3",
        endpoint_url=s3["url"],
        region_name=s3["region"],
        aws_access_key_id=s3["access_key"],
        aws_secret_access_key=s3["secret_key"],
    )
    head = direct.head_object(Bucket="media", Key="city/permit 7.pdf")
    assert head["ContentLength"] == len(PDF) and head["ContentType"] == "application/pdf"
    got = client.get("/storage/files/city/permit%207.pdf", params={"mode": "stream"})
    assert got.status_code == 200 and got.content == PDF
    assert ok(client.delete("/storage/files/city/permit%207.pdf"), "minio")["deleted"] is True
    failed(client.get("/storage/files/city/permit%207.pdf", params={"mode": "stream"}), "minio", 404, "UPSTREAM_ERROR")


@needs_moto
def test_storage_real_s3_refuses_a_wrong_secret(gateway, s3):
    client = start(gateway, "storage", real_env(s3, secret="not-the-secret"))
    r = client.post("/storage/upload", params={"key": "x.txt"}, content=b"x")
    error = failed(r, "minio", 403, "FORBIDDEN")
    assert "SignatureDoesNotMatch" in error["details"] and "not-the-secret" not in r.text
