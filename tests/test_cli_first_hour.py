"""A new user's first hour with the CLI: --version, help for every flag, init, schema, serve from an empty
directory, --config given a gateway.yaml, and JSON process logs (startup and reload lines) from a real process."""

from __future__ import annotations

import argparse
import io
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from gateway_engine.cli.main import build_parser, run
from gateway_engine.cli.scaffold import installed_schemas
from tests.servers import free_port

CLI = [sys.executable, "-m", "gateway_engine"]


def cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_cli_first_hour_version():
    done = subprocess.run([*CLI, "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.startswith("gateway-engine ") and done.stdout.strip()[-1].isdigit()


def test_cli_first_hour_every_flag_has_help_and_its_default():
    parser = build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert set(commands.choices) >= {"serve", "validate", "routes", "explain", "hash-key", "init", "schema"}
    for name, sub in commands.choices.items():
        text = sub.format_help()
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help, f"{name} {action.option_strings or action.dest} has no help text"
            if action.option_strings and action.default not in (None, argparse.SUPPRESS):
                assert f"(default: {action.default})" in " ".join(text.split()), (name, action.dest)


def test_cli_first_hour_bad_log_level_is_a_usage_error_not_a_traceback():
    done = subprocess.run([*CLI, "serve", "--log-level", "loud"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "invalid choice: 'loud'" in done.stderr and "Traceback" not in done.stderr


def test_cli_first_hour_config_takes_a_gateway_yaml_path(tmp_path):
    assert cli("init", str(tmp_path / "cfg"))[0] == 0
    code, out, _ = cli("validate", "--config", str(tmp_path / "cfg" / "gateway.yaml"))
    assert code == 0 and out.startswith("ok: 2 file(s), 1 route(s)")
    (tmp_path / "other.yaml").write_text("version: 1\n")
    done = subprocess.run(
        [*CLI, "validate", "--config", str(tmp_path / "other.yaml")], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2 and "give the config directory or its gateway.yaml" in done.stderr


def test_cli_first_hour_init_writes_a_config_whose_schema_lines_resolve(tmp_path):
    root = tmp_path / "demo"
    code, out, _ = cli("init", str(root))
    assert code == 0 and "gateway-engine serve --config" in out
    yamls = [root / "gateway.yaml", *sorted((root / "routes.d").glob("*.yaml"))]
    assert len(yamls) == 2
    for path in yamls:
        first = path.read_text().splitlines()[0]
        assert first.startswith("# yaml-language-server: $schema=")
        target = (path.parent / first.split("=", 1)[1]).resolve()
        assert target.is_file() and json.loads(target.read_text())["$schema"].startswith("https://json-schema.org")
    for name, entry in installed_schemas().items():
        assert (root / "schemas" / f"{name}.schema.json").read_text() == entry.read_text("utf-8")
    gateway = (root / "gateway.yaml").read_text()
    assert all(p in gateway for p in ("request_id", "logging", "envelope"))
    assert cli("validate", "--config", str(root))[0] == 0
    # an existing config is never overwritten silently
    (root / "gateway.yaml").write_text(gateway + "# mine\n")
    code, _, err = cli("init", str(root))
    assert code == 1 and "already exist" in err and (root / "gateway.yaml").read_text().endswith("# mine\n")
    (root / "schemas" / "routes.schema.json").write_text("{}")
    assert cli("init", str(root), "--schemas-only")[0] == 0
    assert (root / "schemas" / "routes.schema.json").read_text() == installed_schemas()["routes"].read_text("utf-8")
    assert (root / "gateway.yaml").read_text().endswith("# mine\n")
    assert cli("init", str(root), "--force")[0] == 0 and (root / "gateway.yaml").read_text() == gateway


def test_cli_first_hour_schema_prints_and_locates():
    code, out, _ = cli("schema", "routes")
    assert code == 0 and json.loads(out)["title"]
    code, out, _ = cli("schema", "gateway", "--path")
    assert code == 0 and Path(out.strip()).is_file() and json.loads(Path(out.strip()).read_text())
    code, out, _ = cli("schema")
    assert code == 0 and {line.split("\t")[0] for line in out.splitlines()} >= {"gateway", "routes"}
    code, out, _ = cli("schema", "--path")
    assert code == 0 and (Path(out.strip()) / "gateway.schema.json").is_file()
    code, _, err = cli("schema", "nope")
    assert code == 1 and "no schema 'nope'" in err and "gateway" in err


def test_cli_first_hour_serve_in_an_empty_directory_points_at_init(tmp_path):
    done = subprocess.run([*CLI, "serve"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "gateway.yaml not found" in done.stderr and "gateway-engine init" in done.stderr


@pytest.mark.parametrize("stdin", ["", "\n", "   \n"])
def test_cli_first_hour_hash_key_refuses_empty_input(stdin, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code, out, err = cli("hash-key")
    assert code == 1 and out == "" and "no key on stdin" in err


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]  # fails on any non-JSON line


def test_cli_first_hour_init_then_serve_logs_json_and_each_reload(tmp_path):
    root = tmp_path / "demo"
    assert cli("init", str(root))[0] == 0
    port = free_port()
    proc = subprocess.Popen(
        [*CLI, "serve", "--config", str(root), "--port", str(port), "--no-watch"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}/api/gateway"

    def version() -> str | None:
        try:
            return httpx.get(url + "/health", timeout=1).json()["version"]
        except httpx.TransportError:
            return None

    def wait_version(unlike: str | None) -> str:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            seen = version()
            if seen is not None and seen != unlike:
                return seen
            time.sleep(0.05)
        raise AssertionError("no new version")

    try:
        first = wait_version(None)
        assert httpx.get(url + "/example/items/1").json()["error"]["code"] == "BACKEND_NOT_CONFIGURED"
        example = root / "routes.d" / "example.yaml"
        example.write_text(example.read_text().replace("/items/{id}", "/things/{id}", 1))
        proc.send_signal(signal.SIGHUP)
        second = wait_version(first)
        example.write_text("backend: [broken\n")
        proc.send_signal(signal.SIGHUP)
        time.sleep(1)  # a rejected reload changes nothing to wait for
        assert version() == second
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=15)
    process_lines = _json_lines(err)  # uvicorn's own lines are JSON too
    assert {line["logger"] for line in process_lines} >= {"uvicorn.error", "gateway_engine.config"}
    (startup,) = [line for line in process_lines if line.get("event") == "startup"]
    assert startup["version"] == first and startup["routes"] == 1
    assert startup["unconfigured"] == {"example": ["EXAMPLE_URL"]} and "EXAMPLE_URL" in startup["message"]
    reloads = [line for line in process_lines if line.get("event") == "reload"]
    assert [(r["result"], r["reason"]) for r in reloads] == [("success", "SIGHUP"), ("failure", "SIGHUP")]
    assert reloads[0]["version"] == second and reloads[1]["version"] == second and reloads[1]["errors"] >= 1
    assert any(line.get("event") == "reload_error" and "example.yaml" in line["message"] for line in process_lines)
    access = _json_lines(out)
    assert [(a["route"], a["status"]) for a in access] == [("get-item", 503)]


def test_cli_first_hour_gateway_config_env_takes_a_gateway_yaml_path(tmp_path, monkeypatch):
    assert cli("init", str(tmp_path / "cfg"))[0] == 0
    monkeypatch.setenv("GATEWAY_CONFIG", str(tmp_path / "cfg" / "gateway.yaml"))
    code, out, _ = cli("routes")
    assert code == 0 and "get-item" in out
