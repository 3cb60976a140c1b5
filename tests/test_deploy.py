"""deploy/compose.yaml, checked without a Docker engine: the official Compose Specification schema
(vendored in deploy/schema/), then what a schema cannot say: health checks, dependencies, secrets only
from the env file, mounted paths, pinned images, nginx's config, and the gateway config it runs."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest

from tests.deploy_support import DEPLOY, ROOT, VARIABLE, config_variables, env_example, load, strings, validate_config

COMPOSE = load(DEPLOY / "compose.yaml")
SERVICES = COMPOSE["services"]
SECRET_NAME = re.compile(r"(PASSWORD|SECRET|TOKEN|_KEY)$")
URL_PASSWORD = re.compile(r"://[^:/@\s]*:([^@\s]+)@")


def one_shots() -> set[str]:
    """Services others wait for to *finish* (`service_completed_successfully`)."""
    return {
        name
        for spec in SERVICES.values()
        for name, dep in (spec.get("depends_on") or {}).items()
        if isinstance(dep, dict) and dep.get("condition") == "service_completed_successfully"
    }


def test_compose_file_matches_the_compose_specification_schema():
    schema = json.loads((DEPLOY / "schema" / "compose-spec.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(COMPOSE), key=lambda e: list(e.path))
    assert not errors, [f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors]


def test_the_schema_rejects_a_broken_compose_file():
    """The vendored schema is the real one: a misspelt key fails it."""
    schema = json.loads((DEPLOY / "schema" / "compose-spec.json").read_text())
    broken = {"services": {"x": {"image": "redis:7.4.2-alpine", "helthcheck": {"test": ["CMD", "true"]}}}}
    assert list(jsonschema.Draft7Validator(schema).iter_errors(broken))


def test_the_stack_has_what_scale_out_needs():
    images = {name: spec.get("image", "") for name, spec in SERVICES.items()}
    gateways = [n for n, s in SERVICES.items() if s.get("command", [None, None])[:2] == ["gateway-engine", "serve"]]
    assert len(gateways) == 2
    assert any(s.get("command", [])[:2] == ["gateway-engine", "worker"] for s in SERVICES.values())
    assert any(s.get("command", [])[:2] == ["gateway-engine", "migrate"] for s in SERVICES.values())
    for engine in ("nginx", "postgres", "redis", "temporalio/temporal", "apache/kafka"):
        assert any(image.startswith(engine + ":") for image in images.values()), engine


def test_every_long_running_service_has_a_health_check():
    for name, spec in SERVICES.items():
        check = spec.get("healthcheck")
        if name in one_shots():  # it exits: the image's HEALTHCHECK (the gateway's /health) must not apply
            assert check == {"disable": True} and spec.get("restart") == "no", name
            continue
        assert check and not check.get("disable") and check["test"][0] in ("CMD", "CMD-SHELL"), name


def test_every_dependency_exists_and_waits_on_health_or_completion():
    for name, spec in SERVICES.items():
        for target, dep in (spec.get("depends_on") or {}).items():
            assert target in SERVICES, f"{name} depends on unknown {target}"
            expected = "service_completed_successfully" if target in one_shots() else "service_healthy"
            assert dep["condition"] == expected, (name, target)
    gateways = [s for s in SERVICES.values() if s.get("command", [])[:2] == ["gateway-engine", "serve"]]
    for spec in gateways:
        assert {"migrate", "postgres", "redis"} <= set(spec["depends_on"])


def test_no_literal_secret_only_variables_from_the_env_file():
    for name, spec in SERVICES.items():
        environment = spec.get("environment") or {}
        for key, value in environment.items():
            if SECRET_NAME.search(key):
                assert VARIABLE.fullmatch(str(value)), f"{name}: {key} is a literal"
        for text in strings(spec):
            for password in URL_PASSWORD.findall(text):
                assert VARIABLE.fullmatch(password), f"{name}: a password in a URL is a literal"
        command = spec.get("command") or []
        for flag, value in zip(command, command[1:], strict=False):
            if flag == "--requirepass":
                assert VARIABLE.fullmatch(value), name
    example = env_example()
    for key, value in example.items():
        if SECRET_NAME.search(key) and key != "TEMPORAL_API_KEY":
            assert value == "change-me", f".env.example must hold a placeholder for {key}"


def test_every_variable_compose_uses_is_in_the_env_file_template():
    used = {m for text in strings(COMPOSE) for m in VARIABLE.findall(text)}
    assert used and used <= set(env_example()), used - set(env_example())


def test_the_env_file_template_holds_only_what_is_used():
    used = {m for text in strings(COMPOSE) for m in VARIABLE.findall(text)} | config_variables()
    assert set(env_example()) <= used, set(env_example()) - used


def test_the_real_env_file_is_ignored_by_git():
    result = subprocess.run(["git", "check-ignore", "-q", "deploy/.env"], cwd=ROOT)
    assert result.returncode == 0


def test_mounted_paths_exist_and_config_is_read_only():
    for name, spec in SERVICES.items():
        for volume in spec.get("volumes") or []:
            source, target, *mode = volume.split(":")
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {source} is not in the repository"
                assert mode == ["ro"], f"{name}: {source} must be mounted read-only"
            else:
                assert source in COMPOSE["volumes"], f"{name}: unknown volume {source}"
        build = spec.get("build")
        if build:
            assert (DEPLOY / build["context"] / build["dockerfile"]).is_file()


def test_images_are_pinned_by_tag():
    for name, spec in SERVICES.items():
        image = spec["image"]
        repository, sep, tag = image.rpartition(":")
        assert sep and repository and tag not in ("", "latest"), f"{name}: {image} is not pinned"
        if "build" not in spec:
            assert re.match(r"\d+\.\d+", tag), f"{name}: {image} is not a release tag"


def test_the_gateway_config_compose_runs_passes_validate():
    """The config of the gateway services, with the environment compose gives them (from .env.example)."""
    example = env_example()
    environment = {
        k: VARIABLE.sub(lambda m: example[m.group(1)], str(v)) for k, v in SERVICES["gateway-1"]["environment"].items()
    }
    result = validate_config({**example, **environment})
    assert result.returncode == 0, result.stdout + result.stderr
    missing = validate_config({})
    assert missing.returncode == 1 and "STORE_URL" in missing.stdout + missing.stderr  # --strict sees unset secrets


def test_nginx_balances_both_gateways_and_retries_only_idempotent_requests():
    text = re.sub(r"#.*", "", (DEPLOY / "nginx.conf").read_text())  # directives only
    upstream = re.search(r"upstream gateways \{(.*?)\}", text, re.S)
    assert upstream is not None
    servers = re.findall(r"server ([\w-]+):8080", upstream.group(1))
    gateways = [n for n, s in SERVICES.items() if s.get("command", [])[:2] == ["gateway-engine", "serve"]]
    assert sorted(servers) == sorted(gateways)
    assert re.search(r"keepalive \d+;", upstream.group(1)) and "max_fails=" in upstream.group(1)
    assert re.search(r"proxy_next_upstream error timeout;", text)
    assert "non_idempotent" not in text
    assert "proxy_set_header Connection $connection_upgrade;" in text and "proxy_http_version 1.1;" in text


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed (.ci/run installs it)")
def test_nginx_accepts_its_config(tmp_path: Path):
    """`nginx -t` on the real file, the compose service names pointed at loopback (no DNS here)."""
    text = (DEPLOY / "nginx.conf").read_text()
    text = re.sub(r"server (gateway-\d+):8080", "server 127.0.0.1:8080", text)
    (tmp_path / "nginx.conf").write_text(text.replace("pid /tmp/nginx.pid;", f"pid {tmp_path}/nginx.pid;"))
    result = subprocess.run(
        ["nginx", "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"), "-e", str(tmp_path / "error.log")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr


def test_docker_compose_config_when_available():
    if (
        shutil.which("docker") is None
        or subprocess.run(["docker", "compose", "version"], capture_output=True).returncode
    ):
        pytest.skip("no `docker compose` here; the schema test above checks the structure")
    env = DEPLOY / ".env"
    created = not env.exists()
    if created:
        env.write_text((DEPLOY / ".env.example").read_text())
    try:
        result = subprocess.run(
            ["docker", "compose", "-f", str(DEPLOY / "compose.yaml"), "config", "-q"], capture_output=True, text=True
        )
    finally:
        if created:
            env.unlink()
    assert result.returncode == 0, result.stderr


def test_the_scale_out_page_states_each_fail_mode_default_as_the_schemas_do():
    from gateway_engine_plugins.auth import AuthPlugin
    from gateway_engine_plugins.rate_limit import RateLimitPlugin

    webhooks = json.loads((ROOT / "schemas" / "webhooks.schema.json").read_text())
    defaults = {
        "on_storage_error": RateLimitPlugin.options_schema["properties"]["on_storage_error"]["default"],
        "on_store_error": AuthPlugin.options_schema["properties"]["on_store_error"]["default"],
        "dedupe.on_store_error": webhooks["properties"]["dedupe"]["properties"]["on_store_error"]["default"],
    }
    rows = [
        line.split("|") for line in (ROOT / "docs" / "scale-out.md").read_text().splitlines() if line.startswith("| ")
    ]
    for option, default in defaults.items():
        [row] = [r for r in rows if r[3].strip() == f"`{option}`"]
        assert row[4].strip() == f"`{default}`", option
