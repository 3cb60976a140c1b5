"""Project hygiene: one version, the license pyproject names, a changelog, and the pre-commit hooks we ship."""

from __future__ import annotations

import importlib.metadata
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

import gateway_engine
from tests.servers import write_config

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_project_hygiene_version_is_defined_once():
    project = PYPROJECT["project"]
    assert "version" not in project and "version" in project["dynamic"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "gateway_engine.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+([.-]?\w+)?", gateway_engine.__version__)
    assert importlib.metadata.version("gateway-engine") == gateway_engine.__version__


def test_project_hygiene_license_is_the_one_pyproject_names():
    assert PYPROJECT["project"]["license"] == "MIT"
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "WITHOUT WARRANTY OF ANY KIND" in text


def test_project_hygiene_changelog_keeps_a_changelog():
    text = (ROOT / "CHANGELOG.md").read_text()
    versions = re.findall(r"^## (.+)$", text, re.M)
    assert versions[0] == "Unreleased"
    assert any(v.startswith(gateway_engine.__version__) for v in versions[1:])
    assert "keepachangelog.com" in text
    for section in re.findall(r"^### (.+)$", text, re.M):
        assert section in {"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"}, section


HOOKS = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())


def _run_hook(hook: dict, config: Path) -> subprocess.CompletedProcess:
    command, *flags = shlex.split(hook["entry"])
    executable = Path(sys.executable).parent / command  # `language: python` installs the package's scripts
    return subprocess.run(
        [str(executable), *flags, "--config", str(config)], capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("hook", HOOKS, ids=lambda h: h["id"])
def test_project_hygiene_pre_commit_hook_runs_validate(hook, tmp_path):
    assert {"id", "name", "entry", "language"} <= hook.keys() and hook["language"] == "python"
    assert hook["pass_filenames"] is False  # validate checks a whole directory, not files one by one
    files = re.compile(hook["files"])
    for path in ("gateway.yaml", "routes.d/orders.yaml", "deploy/gw/webhooks.d/stripe.yml", "workflows.d/a.yaml"):
        assert files.search(path), path
    for path in ("README.md", "routes.d/notes.txt", "docker-compose.yaml"):
        assert not files.search(path), path
    backend = 'backend: orders\nprefix: /orders\nupstream: {url: "${ORDERS_URL:-http://127.0.0.1:9}"}\nroutes:\n  - {name: get, method: GET, path: /}\n'
    good = write_config(tmp_path / "good", "version: 1\nplugins: [request_id]\n", {"orders": backend})
    passed = _run_hook(hook, good)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    bad = write_config(tmp_path / "bad", "version: 1\nplugins: [request_id]\n", {"orders": backend + "colour: red\n"})
    failed = _run_hook(hook, bad)
    assert failed.returncode == 1 and "colour" in failed.stdout + failed.stderr
