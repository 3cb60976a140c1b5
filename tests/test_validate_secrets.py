"""`validate` names a bad config value without printing what it resolved to (issue 13: D19)."""

from __future__ import annotations

import io
import json

from gateway_engine.cli.main import run
from tests.servers import write_config

GATEWAY = "version: 1\nbase_path: /api\nplugins: [request_id, envelope]\n"
ENV = {
    "X": "api.partner.example/v1?apikey=SECRETVALUE",
    "L": "SECRETVALUE4 per fortnight",
    "M": "SECRETVALUE5",
    "T": "SECRETVALUE6",
}


def validate(root, monkeypatch, fmt: str) -> tuple[int, str]:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    out = io.StringIO()
    code = run(["validate", "--config", str(root), "--format", fmt], stdout=out, stderr=out)
    return code, out.getvalue()


def test_validate_never_prints_a_resolved_secret(tmp_path, monkeypatch):
    root = write_config(
        tmp_path,
        GATEWAY,
        {
            "partner": (
                "backend: partner\nprefix: /partner\nupstream: {url: '${X}'}\n"
                "routes:\n  - {name: r, method: GET, path: /r}\n"
            ),
            "plugins": (
                "backend: other\nprefix: /other\nupstream: {url: 'http://127.0.0.1:9'}\n"
                "plugins: {rate_limit: {limit: '${L}'}, auth: {accept: ['${M}']}}\n"
                "routes:\n  - {name: r, method: GET, path: /r}\n"
            ),
            "timeout": (
                "backend: t\nprefix: /t\nupstream: {url: 'http://127.0.0.1:9', timeout: '${T}'}\n"
                "routes:\n  - {name: r, method: GET, path: /r}\n"
            ),
            "literal": (
                "backend: lit\nprefix: /lit\nupstream: {url: 'https://user:pw-LITERAL@api.partner.example/v1?apikey=LITERAL2'}\n"
                "routes:\n  - {name: r, method: GET, path: /r}\n"
            ),
        },
    )
    for fmt in ("text", "json"):
        code, out = validate(root, monkeypatch, fmt)
        assert code == 1
        assert "SECRETVALUE" not in out and "LITERAL" not in out, out
    errors = {(e["file"], e["path"]): e["message"] for e in json.loads(out)["errors"]}
    assert "must start with http:// or https://" in errors[("routes.d/partner.yaml", "upstream.url")]
    assert "${X}" in errors[("routes.d/partner.yaml", "upstream.url")]
    assert "not a rate limit" in errors[("routes.d/plugins.yaml", "plugins.rate_limit")]
    assert "is not one of" in errors[("routes.d/plugins.yaml", "plugins.auth.accept[0]")]
    assert "not a duration" in errors[("routes.d/timeout.yaml", "upstream.timeout")]
    assert "query" in errors[("routes.d/literal.yaml", "upstream.url")]
