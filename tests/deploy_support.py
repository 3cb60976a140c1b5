"""What the deploy tests share: the files of deploy/, the env file template, and `validate` of the config."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
CONFIG = DEPLOY / "config"
KUBERNETES = DEPLOY / "kubernetes"
VARIABLE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?[-?+][^}]*)?\}")  # ${VAR}, ${VAR:-x}; never $${VAR}
REQUIRED = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)\}")  # without a default


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def load_all(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def env_example() -> dict[str, str]:
    """deploy/.env.example as compose reads it: NAME=value lines, comments and blank lines skipped."""
    out = {}
    for line in (DEPLOY / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, sep, value = line.partition("=")
            assert sep, f".env.example: {line!r} is not NAME=value"
            out[name.strip()] = value.strip()
    return out


def strings(node: Any) -> list[str]:
    """Every string in a YAML tree, keys included."""
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in strings(k) + strings(v)]
    if isinstance(node, list):
        return [s for item in node for s in strings(item)]
    return []


def config_variables(required_only: bool = False) -> set[str]:
    """The ${VAR}s the gateway config reads (only those without a default when ``required_only``)."""
    pattern = REQUIRED if required_only else VARIABLE
    return {m for path in CONFIG.rglob("*.yaml") for m in pattern.findall(path.read_text())}


def validate_config(environ: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`gateway-engine validate --strict` of deploy/config with exactly ``environ`` (plus PATH)."""
    env = {"PATH": os.environ.get("PATH", ""), **environ}
    return subprocess.run(
        [sys.executable, "-m", "gateway_engine", "validate", "--strict", "--config", str(CONFIG)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
