"""deploy/kubernetes/, checked offline: kubernetes-validate --strict against a pinned Kubernetes version,
then what the schemas cannot say: kustomization.yaml lists every file and every config file, the drain
fits in the grace period, the pods are locked down, and the probes and Secret match the config."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from gateway_engine.cli.main import build_parser
from tests.deploy_support import CONFIG, DEPLOY, KUBERNETES, config_variables, load, load_all

K8S_VERSION = "1.31"  # the oldest Kubernetes release still supported upstream when this was written; .ci/run too
FILES = sorted(KUBERNETES.glob("*.yaml"))
RESOURCES = {(doc["kind"], doc["metadata"]["name"]): doc for path in FILES for doc in load_all(path)}
KUSTOMIZATION = load(DEPLOY / "kustomization.yaml")
TEMPLATES = {"secret.example.yaml"}  # applied by hand, never by kustomize (placeholders)


def pod_specs() -> dict[str, dict[str, Any]]:
    return {
        name: doc["spec"]["template"]["spec"]
        for (kind, name), doc in RESOURCES.items()
        if kind in ("Deployment", "Job")
    }


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_manifest_is_valid_for_the_pinned_kubernetes_version(path: Path):
    for doc in load_all(path):
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_strict_validation_rejects_an_unknown_field():
    doc = load(KUBERNETES / "service.yaml")
    doc["spec"]["selectr"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_the_command_line_validator_accepts_every_file():
    """What .ci/run runs."""
    command = [sys.executable, "-m", "kubernetes_validate", "--strict", "-k", K8S_VERSION, "--quiet"]
    result = subprocess.run([*command, *map(str, FILES)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_kustomization_lists_every_manifest_but_the_secret_template():
    listed = {Path(r).name for r in KUSTOMIZATION["resources"]}
    assert all((DEPLOY / r).parent == KUBERNETES for r in KUSTOMIZATION["resources"])
    assert listed == {p.name for p in FILES} - TEMPLATES


def test_kustomization_generates_a_configmap_of_every_config_file():
    generated = {f for gen in KUSTOMIZATION["configMapGenerator"] for f in gen["files"]}
    on_disk = {str(p.relative_to(DEPLOY)) for p in CONFIG.rglob("*.yaml")}
    assert generated == on_disk


@pytest.mark.parametrize("name", ["gateway", "gateway-worker", "gateway-migrate"])
def test_the_pods_mount_every_generated_file_where_the_config_expects_it(name: str):
    """A projected volume rebuilds the config directory: each ConfigMap key at its folder/file path."""
    [volume] = [v for v in pod_specs()[name]["volumes"] if v["name"] == "config"]
    mounted = set()
    for source in volume["projected"]["sources"]:
        cm = source["configMap"]
        [gen] = [g for g in KUSTOMIZATION["configMapGenerator"] if g["name"] == cm["name"]]
        keys = {Path(f).name: str(Path(f).relative_to("config")) for f in gen["files"]}
        items = cm.get("items") or [{"key": k, "path": k} for k in keys]
        assert {i["key"] for i in items} == set(keys), cm["name"]
        mounted |= {i["path"] for i in items if keys[i["key"]] == i["path"]}
    assert mounted == {str(p.relative_to(CONFIG)) for p in CONFIG.rglob("*.yaml")}


def _serve_args() -> list[str]:
    [container] = pod_specs()["gateway"]["containers"]
    return container["args"]


def test_termination_grace_outlasts_the_prestop_and_the_sigterm_drain():
    spec = pod_specs()["gateway"]
    [container] = spec["containers"]
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    args = build_parser().parse_args(_serve_args()[1:])
    assert args.command == "serve" and args.drain_timeout > 0
    assert spec["terminationGracePeriodSeconds"] > float(command[1]) + args.drain_timeout


def test_every_pod_is_locked_down():
    for name, spec in pod_specs().items():
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert spec["automountServiceAccountToken"] is False, name
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True and context["allowPrivilegeEscalation"] is False, name
            assert context["capabilities"] == {"drop": ["ALL"]}, name
            assert container["resources"]["requests"] and container["resources"]["limits"]["memory"], name
            assert ":" in container["image"] and not container["image"].endswith(":latest"), name


def test_every_writable_path_is_an_empty_dir():
    """With a read-only root: the metrics files, the data directory and /tmp live on emptyDirs."""
    for name, spec in pod_specs().items():
        [container] = spec["containers"]
        volumes = {v["name"]: v for v in spec["volumes"]}
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        writable = {m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")}
        for m in container["volumeMounts"]:
            assert ("emptyDir" in volumes[m["name"]]) != bool(m.get("readOnly")), (name, m)
        assert {env["GATEWAY_DATA"], env["TMPDIR"]} <= writable, name
        if name == "gateway":
            assert env["PROMETHEUS_MULTIPROC_DIR"] in writable


def test_probes_call_the_configs_health_endpoint():
    base = load(CONFIG / "gateway.yaml")["base_path"]
    [container] = pod_specs()["gateway"]["containers"]
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["path"] == f"{base}/health", probe
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["GATEWAY_PORT"] == str(container["ports"][0]["containerPort"])
    annotations = RESOURCES[("Deployment", "gateway")]["spec"]["template"]["metadata"]["annotations"]
    metrics = load(CONFIG / "gateway.yaml").get("metrics", {})
    assert annotations["prometheus.io/path"] == metrics.get("path", "/metrics")
    assert annotations["prometheus.io/port"] == env["GATEWAY_PORT"]


def test_the_secret_template_holds_every_variable_the_config_needs():
    secret = RESOURCES[("Secret", "gateway-secrets")]
    for name, spec in pod_specs().items():
        [container] = spec["containers"]
        assert {"secretRef": {"name": "gateway-secrets"}} in container["envFrom"], name
        plain = {e["name"] for e in container.get("env", [])}
        missing = config_variables(required_only=True) - plain - set(secret["stringData"])
        assert not missing, (name, missing)
    for key, value in secret["stringData"].items():  # a template: placeholders, never a real secret
        if re.search(r"(PASSWORD|SECRET|TOKEN|_KEY)$", key) or "@" in value:
            assert value == "" or "change-me" in value, key


def test_service_pdb_and_autoscaler_select_the_gateway_pods():
    labels = RESOURCES[("Deployment", "gateway")]["spec"]["template"]["metadata"]["labels"]
    selects = [
        RESOURCES[("Service", "gateway")]["spec"]["selector"],
        RESOURCES[("PodDisruptionBudget", "gateway")]["spec"]["selector"]["matchLabels"],
    ]
    for selector in selects:
        assert selector.items() <= labels.items()
    hpa = RESOURCES[("HorizontalPodAutoscaler", "gateway")]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "gateway"}
    assert hpa["spec"]["minReplicas"] >= 2  # with maxUnavailable: 1, a drain never takes the last gateway
    job = RESOURCES[("Job", "gateway-migrate")]
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["gateway-engine", "migrate"]
