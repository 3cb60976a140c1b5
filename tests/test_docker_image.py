"""The Docker image, checked without a Docker engine: the Dockerfile read as the builder reads it.

The config directories the image would hold are assembled from the Dockerfile's own COPY lines, then
validated by the real CLI; the HEALTHCHECK command runs against a real gateway; hadolint lints the file.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import free_port

ROOT = Path(__file__).resolve().parent.parent
TOUR_BACKEND = """\
backend: orders
prefix: /orders
upstream:
  url: ${ORDERS_URL:-http://127.0.0.1:9000}
  auth: {style: bearer, token: "${ORDERS_TOKEN}"}
routes:
  - {name: get-order, method: GET, path: "/{id}", upstream_path: "/v1/orders/{id}"}
"""


def instructions() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` in order, continuation lines joined, comments dropped."""
    out, pending = [], ""
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).strip().partition(" ")
        out.append((keyword.upper(), args.strip()))
        pending = ""
    return out


def env() -> dict[str, str]:
    found: dict[str, str] = {}
    for keyword, args in instructions():
        if keyword == "ENV":
            found.update(item.split("=", 1) for item in shlex.split(args))
    return found


def image_tree(tmp_path: Path) -> Path:
    """The image's filesystem as far as the final COPY lines build it (sources from the repository)."""
    image = tmp_path / "image"
    for keyword, args in instructions():
        if keyword == "COPY" and not args.startswith("--"):
            *sources, target = args.split()
            if not target.startswith("/etc/") and not target.startswith("/opt/"):
                continue  # the build's own /src copies
            for source in sources:
                dest = image / target.lstrip("/")
                if (ROOT / source).is_dir():
                    shutil.copytree(ROOT / source, dest)
                else:
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy(ROOT / source, dest)
        if keyword == "RUN":
            for part in args.split("&&"):
                words = part.split()
                if words[:2] == ["mkdir", "-p"]:
                    for d in words[2:]:
                        (image / d.lstrip("/")).mkdir(parents=True, exist_ok=True)
    return image


def validate(config: Path, *flags: str, environ: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(Path(sys.executable).parent / "gateway-engine"), "validate", "--config", str(config), *flags],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "GATEWAY_CONFIG"} | (environ or {}),
        timeout=120,
    )


def test_docker_image_user_routes_mounted_over_the_default_config_validate(tmp_path):
    """`docker run -v $PWD/routes.d:/etc/gateway/routes.d` with one's own backends: no demo route is missed."""
    image = image_tree(tmp_path)
    config = image / env()["GATEWAY_CONFIG"].lstrip("/")
    assert (config / "gateway.yaml").is_file() and (config / "routes.d").is_dir()
    shutil.rmtree(config / "routes.d")  # the mount replaces the directory
    (config / "routes.d").mkdir()
    (config / "routes.d" / "orders.yaml").write_text(TOUR_BACKEND)
    plain = validate(config)  # the image as built once referred to demo routes here: 30 errors
    assert plain.returncode == 0, plain.stdout + plain.stderr
    mounted = validate(config, "--strict", environ={"ORDERS_TOKEN": "t", "GATEWAY_API_KEY": "k"})
    assert mounted.returncode == 0, mounted.stdout + mounted.stderr
    assert "1 route(s)" in mounted.stdout
    (config / "routes.d" / "orders.yaml").unlink()  # an empty mount, or none: the image starts with no backend
    empty = validate(config)
    assert empty.returncode == 0, empty.stdout + empty.stderr


def test_docker_image_city_platform_is_opt_in_and_complete(tmp_path):
    image = image_tree(tmp_path)
    city = image / "opt/gateway-engine/city-platform"
    for part in ("gateway.yaml", "routes.d", "workflows.d", "webhooks.d"):
        assert (city / part).exists(), part
    result = validate(city, "--format", "json")
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["valid"] is True
    assert str(city.relative_to(image)) in (ROOT / "docs" / "docker.md").read_text()


def test_docker_image_runs_as_a_numeric_user_with_exec_form_commands():
    found = dict(instructions())
    user = found["USER"]
    assert user.replace(":", "").isdigit() and not user.startswith("0"), user
    health = found["HEALTHCHECK"]
    exec_form = json.loads(health[health.index("CMD") + 3 :].strip())
    assert exec_form == ["python", "-m", "gateway_engine.cli.healthcheck"]
    assert json.loads(found["CMD"])[:2] == ["gateway-engine", "serve"]
    assert found["EXPOSE"] == env()["GATEWAY_PORT"]


def test_docker_image_hadolint_is_clean():
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    result = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def _ignored(path: str, rules: list[str]) -> bool:
    """Docker's .dockerignore reading: the last matching rule wins; a rule matching a parent matches too."""
    verdict = False
    parts = path.split("/")
    for rule in rules:
        negate = rule.startswith("!")
        pattern = rule.lstrip("!").rstrip("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatch(p, pattern) or fnmatch.fnmatch(p, pattern.removeprefix("**/")) for p in prefixes):
            verdict = not negate
    return verdict


def test_docker_image_build_context_holds_what_the_dockerfile_copies_and_nothing_else():
    rules = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for keyword, args in instructions():
        if keyword == "COPY":
            for source in args.split()[:-1]:
                assert not _ignored(source.rstrip("./") or source, rules), f"COPY {source} is excluded"
    for kept_out in (".git", ".venv/bin/python", "tests/conftest.py", "bench/__main__.py", "site/index.html"):
        assert _ignored(kept_out, rules), kept_out
    assert _ignored("gateway_engine/__pycache__/x.pyc", rules)


def _healthcheck(environ: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    return subprocess.run(
        [sys.executable, "-m", "gateway_engine.cli.healthcheck"],
        env=clean | environ,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_docker_image_healthcheck_reads_port_and_base_path(gateway):
    base = gateway("version: 1\nbase_path: /edge/v2\nplugins: [request_id, envelope]\n", {})
    port = base.rsplit(":", 1)[1]
    root = str(gateway.root)
    healthy = _healthcheck({"GATEWAY_CONFIG": root, "GATEWAY_PORT": port, "GATEWAY_HOST": "0.0.0.0"})
    assert healthy.returncode == 0, healthy.stderr
    # a proxy in the environment is not used for the loopback probe
    proxied = _healthcheck(
        {"GATEWAY_CONFIG": root, "GATEWAY_PORT": port, "HTTP_PROXY": f"http://127.0.0.1:{free_port()}"}
    )
    assert proxied.returncode == 0, proxied.stderr
    (gateway.root / "other").mkdir()
    (gateway.root / "other" / "gateway.yaml").write_text("version: 1\nbase_path: /elsewhere\n")
    wrong_base = _healthcheck({"GATEWAY_CONFIG": str(gateway.root / "other"), "GATEWAY_PORT": port})
    assert wrong_base.returncode == 1 and f":{port}/elsewhere/health" in wrong_base.stderr
    closed = _healthcheck({"GATEWAY_CONFIG": root, "GATEWAY_PORT": str(free_port())})
    assert closed.returncode == 1 and "did not answer 200" in closed.stderr


@pytest.mark.parametrize(
    ("environ", "url"),
    [
        ({}, "http://127.0.0.1:8080/health"),
        ({"GATEWAY_HOST": "::", "GATEWAY_PORT": "9000"}, "http://[::1]:9000/health"),
        ({"GATEWAY_HOST": "10.1.2.3"}, "http://10.1.2.3:8080/health"),
    ],
)
def test_docker_image_healthcheck_url_without_config(environ, url, tmp_path):
    from gateway_engine.cli.healthcheck import health_url

    assert health_url({"GATEWAY_CONFIG": str(tmp_path)} | environ) == url


def test_docker_image_healthcheck_follows_the_configured_liveness_view(tmp_path):
    from gateway_engine.cli.healthcheck import health_url

    (tmp_path / "gateway.yaml").write_text(
        "version: 1\nbase_path: /api/gateway\nhealth:\n  views:\n"
        "    - {path: /health, report: backends}\n    - {path: /health/live, report: liveness}\n"
    )
    assert health_url({"GATEWAY_CONFIG": str(tmp_path)}) == "http://127.0.0.1:8080/api/gateway/health/live"
