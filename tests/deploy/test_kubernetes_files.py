"""Every manifest in deploy/kubernetes passes kubernetes-validate --strict, names only
real settings (the ConfigMap's config.yml loads through ociregistry.config), requires
sign-in and ships no secret.
"""

from __future__ import annotations

import importlib.util
import posixpath
import re
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.support import (
    APPLIED_SEPARATELY,
    KUBERNETES,
    KUBERNETES_VERSIONS,
    ROOT,
    SECRET_NAME,
    settings_of,
)

# -- Kubernetes ---------------------------------------------------------------------


def _manifest_files() -> list[Path]:
    return sorted(p for p in KUBERNETES.glob("*.yaml") if p.name != "kustomization.yaml")


def _objects() -> dict[str, dict[str, Any]]:
    """Every object of the manifests, by kind (one object of each kind)."""
    found: dict[str, dict[str, Any]] = {}
    for path in _manifest_files():
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                assert document["kind"] not in found, f"two {document['kind']} objects"
                found[document["kind"]] = document
    return found


@pytest.mark.parametrize("manifest", _manifest_files(), ids=lambda p: p.name)
def test_manifest_passes_kubernetes_validate_strict(manifest):
    if importlib.util.find_spec("kubernetes_validate") is None:
        pytest.fail("kubernetes-validate is not installed: pip install -e '.[test]'")
    versions = [arg for version in KUBERNETES_VERSIONS for arg in ("-k", version)]
    result = subprocess.run(
        [sys.executable, "-m", "kubernetes_validate", "--strict", *versions, str(manifest)],
        capture_output=True, text=True, timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    # An unknown kind or apiVersion is only a warning there: not here.
    assert not re.search(r"^(WARN|ERROR|FATAL)", output, re.M), output
    documents = [d for d in yaml.safe_load_all(manifest.read_text()) if d]
    passed = re.findall(r"^INFO .* passed for resource", output, re.M)
    assert len(passed) == len(documents) * len(KUBERNETES_VERSIONS), output


def test_kustomization_lists_every_long_running_manifest():
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    names = {p.name for p in _manifest_files()}
    assert listed <= names, listed - names
    assert listed | APPLIED_SEPARATELY == names
    assert not listed & APPLIED_SEPARATELY


def _workloads(objects: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {kind: objects[kind]["spec"]["template"]["spec"] for kind in ("Deployment", "Job")}


SECRET_NAME_K8S = "ociregistry"
DEPLOYMENT_DOC = ROOT / "docs" / "deployment.md"


def _documented_secret_keys(text: str) -> set[str]:
    """The keys a `kubectl create secret generic ociregistry ...` command gives."""
    command = re.search(r"create secret generic ociregistry((?:[^\n]*\\\n)*[^\n]*)", text)
    assert command, "no `kubectl create secret generic ociregistry` command"
    return set(re.findall(r"--from-(?:literal|file)=([\w-]+)=", command.group(1)))


def _generated_secret() -> dict[str, str]:
    """What whoever deploys creates: generated values for the documented keys."""
    keys = _documented_secret_keys(DEPLOYMENT_DOC.read_text())
    values = {key: secrets.token_hex(16) for key in keys}
    values["database-url"] = (f"postgresql+psycopg://registry:{secrets.token_hex(8)}"
                              "@db.example.internal:5432/registry")
    return values


def _env(container: dict[str, Any], secret: dict[str, str]) -> dict[str, str]:
    """The container's variables, secrets taken from the generated Secret."""
    environ = {}
    for var in container.get("env", []):
        if "value" in var:
            environ[var["name"]] = var["value"]
        else:
            ref = var["valueFrom"]["secretKeyRef"]
            assert ref["name"] == SECRET_NAME_K8S, var["name"]
            assert ref["key"] in secret, f"{var['name']}: {ref['key']!r} is not documented"
            environ[var["name"]] = secret[ref["key"]]
    return environ


def test_configmap_and_environment_are_real_settings(tmp_path):
    objects = _objects()
    config = yaml.safe_load(objects["ConfigMap"]["data"]["config.yml"])
    for kind, pod in _workloads(objects).items():
        (container,) = pod["containers"]
        settings = settings_of(config, _env(container, _generated_secret()), tmp_path)
        assert settings.storage.driver == "s3", kind
        assert settings.database_url.startswith("postgresql+psycopg://"), kind
        assert settings.database.auto_migrate is False, kind
        assert settings.http.workers > 0, kind  # the default would count the node's cores
    deployment = _workloads(objects)["Deployment"]["containers"][0]
    names = {var["name"] for var in deployment["env"]}
    assert {"OCIREGISTRY_DATABASE__URL", "OCIREGISTRY_UI__SECRET_KEY"} <= names


def test_kubernetes_ships_no_secret(tmp_path):
    objects = _objects()
    assert "Secret" not in objects, "a Secret with values of ours is a default secret"
    # The configuration file alone holds no secret ...
    config = yaml.safe_load(objects["ConfigMap"]["data"]["config.yml"])
    alone = settings_of(config, {}, tmp_path)
    for name, value in (("ui.secret_key", alone.ui.secret_key),
                        ("storage.s3.secret_key", alone.storage.s3.secret_key),
                        ("storage.s3.access_key", alone.storage.s3.access_key),
                        ("metrics.password", alone.metrics.password),
                        ("database.url", alone.database.url)):
        assert not value, f"{name} has a value in the ConfigMap"
    # ... and every secret a pod gets comes from the Secret, by reference.
    for kind, pod in _workloads(objects).items():
        (container,) = pod["containers"]
        for var in container.get("env", []):
            if SECRET_NAME.search(var["name"]) or var["name"] == "OCIREGISTRY_DATABASE__URL":
                assert "secretKeyRef" in var.get("valueFrom", {}), f"{kind}: {var['name']}"
    # The Secret's keys are the ones the documented command creates (docs and the
    # comment of deployment.yaml say the same).
    documented = _documented_secret_keys(DEPLOYMENT_DOC.read_text())
    assert _documented_secret_keys((KUBERNETES / "deployment.yaml").read_text()) == documented


def test_kubernetes_requires_sign_in(tmp_path):
    objects = _objects()
    config = yaml.safe_load(objects["ConfigMap"]["data"]["config.yml"])
    pod = _workloads(objects)["Deployment"]
    (container,) = pod["containers"]
    settings = settings_of(config, _env(container, _generated_secret()), tmp_path)
    assert settings.auth.mode != "none", "no authentication"
    assert any("admin" in rule.actions for rule in settings.auth.rules)
    assert not any(rule.anonymous for rule in settings.auth.rules)
    # The htpasswd file is the Secret's "htpasswd" key, mounted where the config says.
    directory, name = posixpath.split(settings.auth.htpasswd)
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == directory)
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    assert volume["secret"]["secretName"] == SECRET_NAME_K8S
    assert {"key": "htpasswd", "path": name} in volume["secret"]["items"]
    assert "htpasswd" in _documented_secret_keys(DEPLOYMENT_DOC.read_text())
    # Nothing but the Ingress reaches the pods from outside the cluster.
    assert objects["Service"]["spec"]["type"] == "ClusterIP"


def test_workloads_mount_the_config_file_they_name():
    objects = _objects()
    configmap = objects["ConfigMap"]
    for kind, pod in _workloads(objects).items():
        (container,) = pod["containers"]
        args = container["args"]
        path = args[args.index("--config") + 1]
        volumes = {v["name"]: v for v in pod["volumes"]}
        mount = next(m for m in container["volumeMounts"]
                     if m["mountPath"] == posixpath.dirname(path))
        assert volumes[mount["name"]]["configMap"]["name"] == configmap["metadata"]["name"], kind
        assert posixpath.basename(path) in configmap["data"], kind
        config = yaml.safe_load(configmap["data"]["config.yml"])
        data_mount = [m for m in container["volumeMounts"] if m["mountPath"] == config["data_dir"]]
        assert data_mount and "emptyDir" in volumes[data_mount[0]["name"]], kind
        assert container["securityContext"]["readOnlyRootFilesystem"] is True, kind
        assert pod["serviceAccountName"] == objects["ServiceAccount"]["metadata"]["name"], kind
    job = _workloads(objects)["Job"]["containers"][0]
    assert job["command"] == ["ociregistry", "db", "upgrade"]
    assert job["image"] == _workloads(objects)["Deployment"]["containers"][0]["image"]


def test_objects_reference_each_other():
    objects = _objects()
    namespace = objects["Namespace"]["metadata"]["name"]
    for kind, obj in objects.items():
        if kind != "Namespace":
            assert obj["metadata"]["namespace"] == namespace, kind
    deployment = objects["Deployment"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= labels.items()
    assert deployment["spec"]["replicas"] == 3
    service = objects["Service"]
    assert service["spec"]["selector"] == selector
    job_labels = objects["Job"]["spec"]["template"]["metadata"]["labels"]
    assert not selector.items() <= job_labels.items(), "the Service would send traffic to the Job"
    assert objects["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == selector
    target = objects["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert objects["HorizontalPodAutoscaler"]["spec"]["minReplicas"] >= 2

    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    config = yaml.safe_load(objects["ConfigMap"]["data"]["config.yml"])
    assert ports["http"] == config["http"]["port"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert "memory" in container["resources"]["limits"]
    service_ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert service_ports["http"]["targetPort"] == "http"

    ingress = objects["Ingress"]
    annotations = ingress["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/proxy-body-size"] == "0"
    assert annotations["nginx.ingress.kubernetes.io/proxy-request-buffering"] == "off"
    assert annotations["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    paths = [p for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]]
    assert "/v2" in {p["path"] for p in paths}
    for path in paths:
        backend = path["backend"]["service"]
        assert backend["name"] == service["metadata"]["name"]
        assert backend["port"]["name"] in service_ports

