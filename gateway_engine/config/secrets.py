"""Masking the gateway's own credentials wherever upstream bytes reach a client, a log or ``explain``.

An upstream error page may echo the request it got, credentials included. The secrets an upstream
is sent, and the forms they travel in (URL-encoded, Base64 in Basic, JSON- or HTML-escaped by the
page that echoes them), are computed once at config load; masking is then a few ``replace`` calls,
done only on error answers.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, quote_plus

from gateway_engine.config.env import Interpolation
from gateway_engine.config.templates import env_names
from gateway_engine.foundation.errors import ConfigError

MASK = "****"
MIN_SECRET = 4  # shorter values (a region, a flag) would mask ordinary text and protect nothing


def secret_forms(values: Iterable[str]) -> tuple[str, ...]:
    """Every form of ``values`` worth masking, longest first (so ``user:pass`` goes before ``pass``)."""
    forms: set[str] = set()
    for value in values:
        if len(value) >= MIN_SECRET:
            forms.update(
                (
                    value,
                    quote(value, safe=""),
                    quote(value),
                    quote_plus(value),
                    json.dumps(value)[1:-1],
                    html.escape(value),
                )
            )
    return tuple(sorted(forms, key=len, reverse=True))


class Masker:
    """Replaces every form of a set of secrets with ``MASK``, in text, bytes and replies."""

    __slots__ = ("forms", "_raw")

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.forms = secret_forms(secrets)
        self._raw = tuple(f.encode() for f in self.forms)

    def __bool__(self) -> bool:
        return bool(self.forms)

    def text(self, text: str) -> str:
        for form in self.forms:
            if form in text:
                text = text.replace(form, MASK)
        return text

    def data(self, data: bytes) -> bytes:
        for form in self._raw:
            if form in data:
                data = data.replace(form, MASK.encode())
        return data

    async def scrub(self, reply: Any, limit: int) -> None:
        """Mask an upstream answer's headers and (buffered, at most ``limit`` bytes) body."""
        reply.headers = [(k, self.text(v)) for k, v in reply.headers]
        body = await reply.read(limit)
        masked = self.data(body)
        if masked is not body:
            reply.set_body(masked)


def upstream_secrets(backend: Mapping[str, Any], environ: Mapping[str, str], auth_secrets: Iterable[str]) -> list[str]:
    """What a backend's requests carry that the client must never see.

    The auth style's own secrets (with derived forms such as Basic's Base64), and the value of
    every variable the upstream block (url, auth, headers) or a route's request mapping reads,
    as ``${VAR}`` or ``{{ env.VAR }}``.
    """
    upstream = backend.get("upstream", {})
    written = {k: upstream.get(k) for k in ("url", "auth", "headers")}
    requests = [route.get("request", {}) for route in backend.get("routes", [])]
    names = Interpolation(environ)
    names.tree([written, requests])
    referenced = [*names.referenced, *env_names(written), *env_names(requests)]
    return [*auth_secrets, *(environ[n] for n in dict.fromkeys(referenced) if environ.get(n))]


def scrub_secrets(errors: list[ConfigError], values: Mapping[str, str]) -> None:
    """Replace every env value the config references (``name → value``) by ``${NAME}`` in the messages,
    so no error ever prints a resolved secret, whichever check wrote it."""
    found = sorted(((v, n) for n, v in values.items() if len(v) >= 6), key=lambda item: -len(item[0]))
    for error in errors:
        for value, name in found:
            for form in {value, repr(value)[1:-1], quote(value, safe="")}:
                if form in error.message:
                    error.message = error.message.replace(form, "${" + name + "}")
