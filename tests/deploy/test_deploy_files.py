"""The shipped deployment files stay valid and name only real settings.

deploy/nginx/registry.conf passes `nginx -t` (as shipped, and with its TLS
example uncommented), deploy/docker-compose.yml passes `docker-compose config`
(1.29, Debian's: no Docker engine needed), every manifest in deploy/kubernetes
passes kubernetes-validate --strict, and every OCIREGISTRY_* variable and every
key of the ConfigMap's config.yml loads through ociregistry.config (unknown keys
are errors there), so none of these files can rot silently. A missing tool is a
failure, not a skip: run-tests.sh installs them.
"""

from __future__ import annotations

import datetime
import importlib.util
import os
import posixpath
import re
import secrets
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ociregistry.auth.htpasswd import Htpasswd
from ociregistry.config import ConfigError, Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
NGINX_CONF = DEPLOY / "nginx" / "registry.conf"
COMPOSE = DEPLOY / "docker-compose.yml"
KUBERNETES = DEPLOY / "kubernetes"
# The oldest and the newest Kubernetes the manifests are checked against.
KUBERNETES_VERSIONS = ("1.29.0", "1.37.0")
# Manifests deliberately left out of kustomization.yaml (applied on their own).
APPLIED_SEPARATELY = {"migrate-job.yaml"}
TLS_BEGIN = "# --- BEGIN TLS EXAMPLE"
TLS_END = "# --- END TLS EXAMPLE"


def _tool(name: str, package: str) -> str:
    path = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin" + os.pathsep + "/sbin"
    found = shutil.which(name, path=path)
    if found is None:
        pytest.fail(f"{name} is not installed: apt-get install {package} (run-tests.sh does)")
    return found


def _settings(config: dict[str, Any] | None, environ: dict[str, str], tmp_path: Path) -> Settings:
    """Load like `ociregistry serve` does; ConfigError names any unknown key."""
    config_file = tmp_path / "config.yml"
    config_file.write_text(yaml.safe_dump(config or {}))
    try:
        return load_settings(str(config_file), environ=environ)
    except ConfigError as exc:
        pytest.fail(f"not a valid registry configuration: {exc}")


# -- nginx --------------------------------------------------------------------------


def _upstream_hosts(text: str) -> list[str]:
    upstream = re.search(r"upstream\s+ociregistry\s*\{(.*?)\}", text, re.S)
    assert upstream, "no upstream ociregistry block"
    return re.findall(r"^\s*server\s+([\w.-]+):5000\b", upstream.group(1), re.M)


def _resolvable(text: str) -> str:
    """The compose service names resolve only inside its network: use loopback ports."""
    hosts = _upstream_hosts(text)
    for number, host in enumerate(hosts):
        pattern = rf"(\bserver\s+){re.escape(host)}:5000\b"
        text = re.sub(pattern, rf"\g<1>127.0.0.1:{50001 + number}", text)
    return text


def _split_tls_example(text: str) -> tuple[str, str]:
    """(the file without the TLS example, the example uncommented)."""
    head, rest = text.split(TLS_BEGIN, 1)
    block, _tail = rest.split(TLS_END, 1)
    lines = []
    for line in block.splitlines()[1:]:
        if line.startswith("# "):
            lines.append(line[2:])
        elif line == "#":
            lines.append("")
        else:
            assert line.startswith("##") or not line.strip(), f"stray line in the example: {line}"
    return head, "\n".join(lines) + "\n"


def _nginx_test(site: str, tmp_path: Path) -> None:
    """`nginx -t` on the site inside a minimal main configuration of our own."""
    nginx = _tool("nginx", "nginx")
    (tmp_path / "site.conf").write_text(site)
    main = tmp_path / "nginx.conf"
    main.write_text(
        f"pid {tmp_path}/nginx.pid;\n"
        "error_log stderr;\n"
        "events {}\n"
        "http {\n"
        f"    client_body_temp_path {tmp_path}/body;\n"
        f"    proxy_temp_path {tmp_path}/proxy;\n"
        f"    fastcgi_temp_path {tmp_path}/fastcgi;\n"
        f"    uwsgi_temp_path {tmp_path}/uwsgi;\n"
        f"    scgi_temp_path {tmp_path}/scgi;\n"
        "    access_log off;\n"
        f"    include {tmp_path}/site.conf;\n"
        "}\n"
    )
    result = subprocess.run(
        [nginx, "-t", "-p", str(tmp_path), "-e", "stderr", "-c", str(main)],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "test is successful" in result.stderr, result.stderr


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "registry.example.com")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ))
    return cert_file, key_file


def _server_blocks(text: str) -> list[str]:
    """The bodies of the top-level server { } blocks (nginx comments removed)."""
    text = re.sub(r"#[^\n]*", "", text)
    blocks, depth, start = [], 0, None
    for match in re.finditer(r"\bserver\s*\{|\{|\}", text):
        token = match.group(0)
        if token != "}":
            if depth == 0 and token.startswith("server"):
                start = match.end()
            depth += 1
        else:
            depth -= 1
            if depth == 0 and start is not None:
                blocks.append(text[start:match.start()])
                start = None
    return blocks


def _proxying(block: str) -> list[str]:
    """The directives that decide how requests are passed on, normalised."""
    return sorted(
        " ".join(line.split())
        for line in block.splitlines()
        if re.match(r"\s*(proxy_|client_|send_timeout|large_client_header_buffers|location|return)",
                    line)
    )


def test_nginx_config_as_shipped_passes_nginx_t(tmp_path):
    _nginx_test(_resolvable(NGINX_CONF.read_text()), tmp_path)


def test_nginx_tls_example_passes_nginx_t(tmp_path):
    cert, key = _self_signed(tmp_path)
    head, example = _split_tls_example(_resolvable(NGINX_CONF.read_text()))
    assert "listen 443 ssl" in example
    example = (example.replace("/etc/nginx/tls/tls.crt", str(cert))
               .replace("/etc/nginx/tls/tls.key", str(key)))
    _nginx_test(head + example, tmp_path)


def test_nginx_tls_example_proxies_like_the_plain_server():
    head, example = _split_tls_example(NGINX_CONF.read_text())
    (plain,) = _server_blocks(head)
    tls = next(block for block in _server_blocks(example) if "listen 443" in block)
    assert _proxying(tls) == _proxying(plain)


def test_nginx_streams_bodies_and_balances_without_affinity():
    text = re.sub(r"#[^\n]*", "", NGINX_CONF.read_text())
    (plain,) = _server_blocks(text)
    for directive in (
        "client_max_body_size 0;", "proxy_request_buffering off;", "proxy_buffering off;",
        "proxy_http_version 1.1;", 'proxy_set_header Connection "";',
        "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "proxy_set_header X-Forwarded-Proto $scheme;",
        "proxy_set_header X-Forwarded-Host $http_host;",
    ):
        assert directive in plain, directive
    assert re.search(r"proxy_read_timeout\s+(\d+)s;", plain)
    assert int(re.search(r"proxy_read_timeout\s+(\d+)s;", plain).group(1)) >= 300
    upstream = re.search(r"upstream\s+ociregistry\s*\{(.*?)\}", text, re.S).group(1)
    assert re.search(r"^\s*keepalive\s+\d+;", upstream, re.M)
    assert not re.search(r"^\s*(ip_hash|hash|sticky|least_conn|random)\b", upstream, re.M)
    assert len(_upstream_hosts(text)) >= 2


# -- docker-compose -----------------------------------------------------------------


# The variables deploy/docker-compose.yml requires (it has no default for any secret).
COMPOSE_SECRETS = ("POSTGRES_PASSWORD", "S3_ACCESS_KEY", "S3_SECRET_KEY", "REGISTRY_UI_SECRET_KEY",
                   "REGISTRY_HTPASSWD_FILE")
# Names of settings and variables that hold a secret.
SECRET_NAME = re.compile(r"PASSWORD|SECRET|ACCESS_KEY|KEY_ID|TOKEN|PRIVATE", re.I)


def _compose_secrets(directory: Path) -> dict[str, str]:
    """A fresh random value for every secret, and an htpasswd file."""
    htpasswd = directory / "htpasswd"
    htpasswd.write_text("admin:$2b$04$" + "x" * 53 + "\n")
    return {
        "POSTGRES_PASSWORD": secrets.token_hex(12), "S3_ACCESS_KEY": secrets.token_hex(8),
        "S3_SECRET_KEY": secrets.token_hex(12), "REGISTRY_UI_SECRET_KEY": secrets.token_hex(16),
        "REGISTRY_HTPASSWD_FILE": str(htpasswd),
    }


def _compose(*args: str, tmp_path: Path, environ: dict[str, str] | None = None
             ) -> subprocess.CompletedProcess[str]:
    docker_compose = _tool("docker-compose", "docker-compose")
    # Only what docker-compose needs, so the file's own defaults are what is checked.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path),
           **(environ or {})}
    return subprocess.run(
        [docker_compose, "--project-directory", str(DEPLOY), "-f", str(COMPOSE), *args],
        capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path,
    )


def _resolved(tmp_path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    environ = _compose_secrets(tmp_path)
    result = _compose("config", tmp_path=tmp_path, environ=environ)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout), environ


@pytest.fixture(scope="module")
def compose_config(tmp_path_factory) -> dict[str, Any]:
    """The compose file as docker-compose resolves it (with the required secrets given)."""
    return _resolved(tmp_path_factory.mktemp("compose"))[0]


def _registry_services(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: service for name, service in config["services"].items()
        if any(key.startswith("OCIREGISTRY_") for key in service.get("environment") or {})
    }


def _secret_values(config: dict[str, Any]) -> dict[str, str]:
    """Every secret of the resolved file, by "service.VARIABLE" (passwords in URLs too)."""
    found = {}
    for name, service in config["services"].items():
        for key, value in (service.get("environment") or {}).items():
            value = str(value)
            if SECRET_NAME.search(key):
                found[f"{name}.{key}"] = value
            password = urlsplit(value).password if "://" in value else None
            if password:
                found[f"{name}.{key} (password)"] = password
    return found


def test_compose_file_passes_docker_compose_config(tmp_path):
    result = _compose("config", "-q", tmp_path=tmp_path, environ=_compose_secrets(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "version" not in yaml.safe_load(COMPOSE.read_text())  # the Compose Specification


@pytest.mark.parametrize("missing", COMPOSE_SECRETS)
def test_compose_refuses_to_start_without_each_secret(tmp_path, missing):
    environ = _compose_secrets(tmp_path)
    del environ[missing]
    result = _compose("config", "-q", tmp_path=tmp_path, environ=environ)
    assert result.returncode != 0, f"starts without {missing}"
    assert missing in result.stderr and "make-secrets.sh" in result.stderr, result.stderr


def test_compose_ships_no_secret(tmp_path):
    """Resolved twice with different secrets: any secret that stays the same is fixed."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, given = _resolved(tmp_path / "a")
    second, _ = _resolved(tmp_path / "b")
    one, two = _secret_values(first), _secret_values(second)
    assert one.keys() == two.keys()
    fixed = {key: value for key, value in one.items() if two[key] == value}
    assert not fixed, f"secrets with a value of the file's own: {fixed}"
    # and each one is a value given from outside
    assert set(one.values()) <= set(given.values()), one
    # A variable of a secret has no default (a default is what a forgotten .env gets).
    for name, form in re.findall(r"\$\{(\w+)(\W?)", COMPOSE.read_text()):
        if SECRET_NAME.search(name) or name in COMPOSE_SECRETS:
            assert form in (":", "?"), f"${{{name}}}: not required"
    for name, rest in re.findall(r"\$\{(\w+)(:?[-?][^}]*)\}", COMPOSE.read_text()):
        if SECRET_NAME.search(name) or name in COMPOSE_SECRETS:
            assert rest.lstrip(":").startswith("?"), f"${{{name}{rest}}}: a default secret"


def test_compose_requires_sign_in(compose_config, tmp_path):
    for name, service in _registry_services(compose_config).items():
        environ = {k: str(v) for k, v in service["environment"].items()}
        settings = _settings(None, environ, tmp_path)
        assert settings.auth.mode != "none", f"{name}: no authentication"
        assert settings.auth.htpasswd == "/run/secrets/htpasswd", name
        assert [s["source"] for s in service["secrets"]] == ["htpasswd"], name
        assert any("admin" in rule.actions for rule in settings.auth.rules), name
        assert not any(rule.anonymous for rule in settings.auth.rules), name
    htpasswd = compose_config["secrets"]["htpasswd"]["file"]
    assert Path(htpasswd).name == "htpasswd", htpasswd


def test_compose_publishes_the_registry_only(compose_config):
    published = {name for name, service in compose_config["services"].items()
                 if service.get("ports")}
    assert published == {"nginx"}, published
    for name, service in _registry_services(compose_config).items():
        # Blobs stream through the registry: clients never need the store's port.
        assert service["environment"]["OCIREGISTRY_STORAGE__S3__REDIRECT"] == "false", name


def test_make_secrets_writes_what_compose_needs(tmp_path):
    """deploy/make-secrets.sh: a .env and an htpasswd that compose accepts, never twice."""
    script = tmp_path / "make-secrets.sh"
    shutil.copy(DEPLOY / "make-secrets.sh", script)
    env = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = subprocess.run(["sh", str(script), "root"], capture_output=True, text=True,
                            timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    password = re.search(r"sign in as: root\s+password: (\S+)", result.stdout).group(1)
    assert Htpasswd(str(tmp_path / "secrets" / "htpasswd")).verify("root", password)
    assert (tmp_path / ".env").stat().st_mode & 0o077 == 0
    environ = dict(line.split("=", 1) for line in (tmp_path / ".env").read_text().splitlines())
    assert set(COMPOSE_SECRETS) <= environ.keys() and environ["REGISTRY_ADMIN"] == "root"
    environ["REGISTRY_HTPASSWD_FILE"] = str(tmp_path / "secrets" / "htpasswd")
    result = _compose("config", tmp_path=tmp_path, environ=environ)
    assert result.returncode == 0, result.stderr
    rules = yaml.safe_load(result.stdout)["services"]["registry-1"]["environment"][
        "OCIREGISTRY_AUTH__RULES"]
    assert {"users": ["root"], "actions": ["admin"]} in yaml.safe_load(rules)
    # A second run overwrites nothing.
    again = subprocess.run(["sh", str(script)], capture_output=True, text=True, timeout=120,
                           env=env)
    assert again.returncode != 0 and "not overwritten" in again.stderr
    assert Htpasswd(str(tmp_path / "secrets" / "htpasswd")).verify("root", password)


def test_compose_registry_variables_are_real_settings(compose_config, tmp_path):
    services = _registry_services(compose_config)
    assert {"registry-init", "registry-1", "registry-2", "registry-3"} <= set(services)
    loaded = {}
    for name, service in services.items():
        environ = {k: str(v) for k, v in service["environment"].items()}
        settings = _settings(None, environ, tmp_path)
        assert settings.storage.driver == "s3", name
        assert settings.storage.s3.bucket and settings.storage.s3.endpoint_url, name
        assert settings.database_url.startswith("postgresql+psycopg://"), name
        assert settings.database.auto_migrate is False, name
        assert settings.http.trusted_proxies and settings.ui.secret_key, name
        assert settings.http.workers > 0, name  # the default would count the host's cores
        loaded[name] = settings
    # Identical instances: the same settings everywhere (the UI key included).
    assert len({s.model_dump_json() for s in loaded.values()}) == 1


def test_compose_topology(compose_config):
    services = compose_config["services"]
    registries = sorted(n for n in _registry_services(compose_config) if n != "registry-init")
    assert len(registries) >= 2
    assert sorted(_upstream_hosts(NGINX_CONF.read_text())) == registries
    for name in registries:
        assert services[name]["depends_on"]["registry-init"] == {
            "condition": "service_completed_successfully"}
        assert "ports" not in services[name], f"{name}: reachable only through nginx"
    init = services["registry-init"]
    assert init["restart"] == "no"
    assert "db" in init["command"][0] and "upgrade" in init["command"][0]
    assert services["postgres"]["image"].split(":")[1].startswith("15")
    mounts = [v for v in services["nginx"]["volumes"] if ":/etc/nginx/conf.d/" in v]
    assert mounts and Path(mounts[0].split(":")[0]) == NGINX_CONF
    # The registry-init script is valid Python.
    compile(init["command"][0], "registry-init", "exec")


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
        settings = _settings(config, _env(container, _generated_secret()), tmp_path)
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
    alone = _settings(config, {}, tmp_path)
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
    settings = _settings(config, _env(container, _generated_secret()), tmp_path)
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
