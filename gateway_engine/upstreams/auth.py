"""Upstream authentication styles: how the gateway proves itself to a backend.

Secrets come from env at load time. Every style shipped here resolves to fixed
headers or query parameters, computed once; a per-request signer (``aws_sigv4``)
fits the same ``apply`` seam.
"""

from __future__ import annotations

import base64
from typing import Any, Mapping
from urllib.parse import quote

from gateway_engine.config.templates import compile_value
from gateway_engine.upstreams.credentials import UpstreamAuth


def build_upstream_auth(spec: Mapping[str, Any] | None, environ: Mapping[str, str]) -> UpstreamAuth:
    """Build the auth of one upstream from its (already env-interpolated) ``auth`` block."""
    if not spec or spec.get("style", "none") == "none":
        return UpstreamAuth()
    style = spec["style"]
    if style == "bearer":
        return UpstreamAuth([("authorization", f"Bearer {spec.get('token', '')}")], description="bearer")
    if style == "header":
        header = spec.get("header", "Authorization")
        value = f"{spec.get('prefix', '')}{spec.get('value', '')}"
        return UpstreamAuth([(header.lower(), value)], description=f"header {header}")
    if style == "basic":
        raw = f"{spec.get('username', '')}:{spec.get('password', '')}".encode()
        return UpstreamAuth([("authorization", "Basic " + base64.b64encode(raw).decode())], description="basic")
    if style == "query":
        param = spec.get("param", "key")
        return UpstreamAuth(query=f"{quote(param, safe='')}={quote(spec.get('value', ''), safe='')}",
                            description=f"query {param}")
    if style == "template":
        header = spec.get("header", "Authorization")
        value = compile_value(spec.get("value", ""), ["env"])({"env": dict(environ)})
        return UpstreamAuth([(header.lower(), str(value))], description=f"template {header}")
    if style == "aws_sigv4":
        from gateway_engine.upstreams.sigv4 import SigV4UpstreamAuth  # botocore is imported only by configs that sign

        return SigV4UpstreamAuth(access_key=spec.get("access_key", ""), secret_key=spec.get("secret_key", ""),
                                 region=spec.get("region", "us-east-1"), service=spec.get("service", "s3"),
                                 session_token=spec.get("session_token"))
    raise ValueError(f"unknown upstream auth style {style!r}")  # the schema enumerates the styles
