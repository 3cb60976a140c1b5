"""Upstream authentication styles: how the gateway proves itself to a backend.

Secrets come from env at load time. Every style shipped here resolves to fixed
headers or query parameters, computed once; a per-request signer (``aws_sigv4``)
fits the same ``apply`` seam.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from gateway_engine.config.templates import compile_value, env_names
from gateway_engine.upstreams.credentials import UpstreamAuth


def build_upstream_auth(spec: Mapping[str, Any] | None, environ: Mapping[str, str]) -> UpstreamAuth:
    """Build the auth of one upstream from its (already env-interpolated) ``auth`` block."""
    if not spec or spec.get("style", "none") == "none":
        return UpstreamAuth()
    style = spec["style"]
    if style == "bearer":
        token = spec.get("token", "")
        return UpstreamAuth([("authorization", f"Bearer {token}")], description="bearer", secrets=(token,))
    if style == "header":
        header = spec.get("header", "Authorization")
        value = f"{spec.get('prefix', '')}{spec.get('value', '')}"
        return UpstreamAuth(
            [(header.lower(), value)], description=f"header {header}", secrets=(value, spec.get("value", ""))
        )
    if style == "basic":
        raw = f"{spec.get('username', '')}:{spec.get('password', '')}"
        encoded = base64.b64encode(raw.encode()).decode()
        return UpstreamAuth(
            [("authorization", "Basic " + encoded)],
            description="basic",
            secrets=(raw, encoded, spec.get("password", "")),
        )
    if style == "query":
        param = spec.get("param", "key")
        return UpstreamAuth(
            query=f"{quote(param, safe='')}={quote(spec.get('value', ''), safe='')}",
            description=f"query {param}",
            secrets=(spec.get("value", ""),),
        )
    if style == "template":
        header = spec.get("header", "Authorization")
        value = str(compile_value(spec.get("value", ""), ["env"])({"env": dict(environ)}))
        parts = tuple(environ.get(name, "") for name in env_names(spec.get("value", "")))
        return UpstreamAuth([(header.lower(), value)], description=f"template {header}", secrets=(value, *parts))
    if style == "aws_sigv4":
        from gateway_engine.upstreams.sigv4 import SigV4UpstreamAuth  # botocore is imported only by configs that sign

        return SigV4UpstreamAuth(
            access_key=spec.get("access_key", ""),
            secret_key=spec.get("secret_key", ""),
            region=spec.get("region", "us-east-1"),
            service=spec.get("service", "s3"),
            session_token=spec.get("session_token"),
        )
    raise ValueError(f"unknown upstream auth style {style!r}")  # the schema enumerates the styles
