"""AWS Signature Version 4 for upstreams that speak an AWS API (S3, MinIO, ...), via botocore.

Each request is signed on its way out; a streamed body is signed as
``UNSIGNED-PAYLOAD`` (S3 accepts it) so uploads are never buffered to hash them.
Only ``host``, ``content-type`` and the ``x-amz-*`` headers are signed, so nothing
the HTTP client adds later can break the signature.
"""

from __future__ import annotations

import hashlib
from types import SimpleNamespace
from typing import Any

from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth, SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from gateway_engine.upstreams.credentials import UpstreamAuth

UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
_SIGNED = SimpleNamespace(s3={"payload_signing_enabled": True})
_UNSIGNED = SimpleNamespace(s3={"payload_signing_enabled": False})


class SigV4UpstreamAuth(UpstreamAuth):
    def __init__(
        self, *, access_key: str, secret_key: str, region: str, service: str, session_token: str | None = None
    ) -> None:
        super().__init__(
            description=f"aws_sigv4 {service}/{region}", secrets=(access_key, secret_key, session_token or "")
        )
        self.credentials = Credentials(access_key, secret_key, session_token)
        self.region = region
        self.service = service
        self.header_names = {"authorization", "x-amz-date", "x-amz-content-sha256", "x-amz-security-token"}
        self._signer = (S3SigV4Auth if service == "s3" else SigV4Auth)(self.credentials, service, region)

    def apply(self, method: str, url: str, headers: list[tuple[str, str]], body: Any) -> str:
        streamed = body is not None and not isinstance(body, (bytes, bytearray))
        signed = {"X-Amz-Content-SHA256": UNSIGNED_PAYLOAD if streamed else hashlib.sha256(body or b"").hexdigest()}
        for name, value in headers:
            if name == "content-type" or (name.startswith("x-amz-") and name not in self.header_names):
                signed[name] = value
        request = AWSRequest(method=method, url=url, headers=signed, data=b"" if streamed else (body or b""))
        # S3's signer recomputes the payload hash from the request; for a stream it must say UNSIGNED-PAYLOAD
        request.context["client_config"] = _UNSIGNED if streamed else _SIGNED
        request.context["payload_signing_enabled"] = not streamed
        self._signer.add_auth(request)
        headers[:] = [(k, v) for k, v in headers if k not in self.header_names and k != "host"]
        for name, value in request.headers.items():
            if name.lower() in self.header_names:
                headers.append((name.lower(), value))
        return url

    def presign(self, method: str, url: str, expires: int) -> str:
        """A URL anyone may call until it expires, carrying the signature in its query string."""
        signer = (S3SigV4QueryAuth if self.service == "s3" else SigV4QueryAuth)(
            self.credentials, self.service, self.region, expires=expires
        )
        request = AWSRequest(method=method, url=url, headers={})
        signer.add_auth(request)
        return request.url
