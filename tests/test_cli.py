"""The CLI as CI runs it: validate reports every error with file and line; routes hides secrets."""

from __future__ import annotations

import io
import json
from pathlib import Path

from gateway_engine.cli.main import run
from tests.servers import write_config

ROOT = Path(__file__).resolve().parent.parent

GOOD_GATEWAY = "version: 1\nbase_path: /api\nplugins: [request_id, envelope]\n"


def cli(*argv: str, stdin: str = "") -> tuple[int, str]:
    out = io.StringIO()
    import sys

    old = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        code = run(list(argv), stdout=out, stderr=out)
    finally:
        sys.stdin = old
    return code, out.getvalue()


def test_cli_validate_shipped_config_passes():
    code, out = cli("validate", "--config", str(ROOT))
    assert code == 0, out
    assert out.startswith("ok:")


def test_cli_validate_reports_every_error_with_file_and_line(tmp_path):
    root = write_config(
        tmp_path,
        GOOD_GATEWAY,
        {
            "typo": "backend: typo\nprefix: /typo\nupstream: {url: 'http://x'}\nroutes:\n  - name: a\n    method: GET\n    path: /a\n    upstream_pth: /a\n",
            "template": "backend: tpl\nprefix: /tpl\nupstream: {url: 'http://x'}\nroutes:\n  - name: a\n    method: GET\n    path: /a\n    response: {data: '{{ body.data | }}'}\n",
            "dup1": "backend: one\nprefix: /one\nupstream: {url: 'http://x'}\nroutes:\n  - {name: a, method: GET, path: /a}\n  - {name: b, method: GET, path: /a}\n",
            "yaml": "backend: broken\nprefix: /broken\nroutes: [\n",
        },
    )
    code, out = cli("validate", "--config", str(root))
    assert code == 1
    lines = out.strip().splitlines()
    assert any(
        l.startswith("routes.d/typo.yaml:8:5: routes[0].upstream_pth: unknown key 'upstream_pth'") for l in lines
    ), out
    assert any(
        l.startswith("routes.d/template.yaml:8:16: routes[0].response.data: template syntax error") for l in lines
    ), out
    assert any(
        l.startswith("routes.d/dup1.yaml:6:3: routes[b]: GET /api/one/a duplicates route one.a") for l in lines
    ), out
    assert any(l.startswith("routes.d/yaml.yaml:4:1: (root): invalid YAML") for l in lines), out
    assert lines[-1] == f"4 error(s) in {root}"


def test_cli_validate_semantic_errors(tmp_path):
    root = write_config(
        tmp_path,
        "version: 1\nplugins: [request_id, no_such_plugin]\n",
        {
            "a": "backend: a\nprefix: /a\nupstream: {url: 'http://x'}\nroutes:\n  - {name: r, method: GET, path: /r}\n",
            "c": "backend: c\nprefix: /c\nupstream: {url: 'http://x', timeout: 10 parsecs}\nroutes:\n  - {name: r, method: GET, path: /r}\n",
            "b": "backend: b\nprefix: /a/sub\nupstream: {url: 'http://x'}\nroutes:\n  - {name: r, method: GET, path: '/r/{id}', upstream_path: '/r/{uid}'}\n  - {name: t, method: GET, path: /t, response: {data: '{{ secrets.x }}'}}\n",
        },
    )
    code, out = cli("validate", "--config", str(root), "--format", "json")
    assert code == 1
    errors = json.loads(out)["errors"]
    messages = {(e["file"], e["path"]): e["message"] for e in errors}
    assert "unknown plugin 'no_such_plugin'" in messages[("gateway.yaml", "plugins[1]")]
    assert "is not valid" in messages[("routes.d/c.yaml", "upstream.timeout")]
    assert "overlaps prefix '/a'" in messages[("routes.d/b.yaml", "prefix")]
    assert "{uid}" in messages[("routes.d/b.yaml", "routes[0].upstream_path")]
    assert "unknown name(s) secrets" in messages[("routes.d/b.yaml", "routes[1].response.data")]
    assert all(e["line"] > 0 for e in errors)


def test_cli_validate_rejects_wrong_version_and_missing_gateway(tmp_path):
    root = write_config(tmp_path / "v", "version: 2\n", {})
    code, out = cli("validate", "--config", str(root))
    assert code == 1 and "found version 2; this engine reads version 1" in out
    code, out = cli("validate", "--config", str(tmp_path / "empty"))
    assert code == 1 and "gateway.yaml not found" in out


def test_cli_validate_strict_fails_on_unset_env(tmp_path, monkeypatch):
    root = write_config(
        tmp_path,
        GOOD_GATEWAY,
        {
            "a": "backend: a\nprefix: /a\nupstream: {url: '${A_URL_FOR_TEST}'}\nroutes:\n  - {name: r, method: GET, path: /r}\n"
        },
    )
    monkeypatch.delenv("A_URL_FOR_TEST", raising=False)
    assert cli("validate", "--config", str(root))[0] == 0
    code, out = cli("validate", "--config", str(root), "--strict")
    assert code == 1 and "A_URL_FOR_TEST is referenced but not set" in out
    monkeypatch.setenv("A_URL_FOR_TEST", "http://127.0.0.1:1")
    assert cli("validate", "--config", str(root), "--strict")[0] == 0


def test_cli_routes_never_shows_secrets(tmp_path, monkeypatch):
    monkeypatch.setenv("R_URL", "http://user:pw-secret@127.0.0.1:9")
    monkeypatch.setenv("R_TOKEN", "token-secret")
    root = write_config(
        tmp_path,
        GOOD_GATEWAY,
        {
            "r": "backend: r\nprefix: /r\nupstream: {url: '${R_URL}', auth: {style: bearer, token: '${R_TOKEN}'}}\nroutes:\n  - {name: get, method: GET, path: '/x/{id}', upstream_path: '/v1/x/{id}'}\n"
        },
    )
    code, out = cli("routes", "--config", str(root))
    assert code == 0
    assert "GET" in out and "/api/r/x/{id}" in out and "${R_URL}/v1/x/{id}" in out and "request_id,envelope" in out
    assert "secret" not in out


def test_cli_hash_key_strips_one_newline():
    import hashlib

    assert cli("hash-key", stdin="abc\n")[1].strip() == hashlib.sha256(b"abc").hexdigest()
    assert cli("hash-key", "--keep-newline", stdin="abc\n")[1].strip() == hashlib.sha256(b"abc\n").hexdigest()
