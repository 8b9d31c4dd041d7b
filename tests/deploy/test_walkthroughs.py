"""docs/deployment.md's walkthroughs work as written on this kind of machine (Debian 12,
root, Debian's PostgreSQL 15 and nginx, SeaweedFS's `weed` from PyPI): run their shell
blocks, push and pull through the result with skopeo, take it down with their own
teardown, and check nothing is left listening.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import requests

from tests.clients import images
from tests.clients.clitools import Skopeo, write_client_config
from tests.deploy import walkthrough
from tests.deploy.debian_services import DebianNginx, DebianPostgres


def _push_and_pull(tmp_path: Path, host: str, password: str) -> None:
    """skopeo pushes an image with the walkthrough's user and pulls back the same bytes."""
    home = tmp_path / "clients"
    skopeo = Skopeo(home, write_client_config(home))
    layout = tmp_path / "image"
    image = images.write_image(layout, secrets.token_hex(6), tag="v1")
    creds = f"admin:{password}"
    target = f"docker://{host}/walkthrough/app:v1"
    skopeo.copy(f"oci:{layout}:v1", target, "--dest-creds", creds)
    assert skopeo.run("inspect", "--tls-verify=false", "--creds", creds, "--raw",
                      target).stdout == image.manifest
    back = tmp_path / "pulled"
    skopeo.copy(target, f"oci:{back}:v1", "--src-creds", creds)
    for digest, data in image.blobs().items():
        assert images.layout_blob(back, digest) == data, digest
    # Without the user's password: refused (the walkthrough's registry requires sign-in).
    refused = skopeo.run("inspect", "--tls-verify=false", "--raw", target, check=False)
    assert refused.returncode != 0


def _default_site_answers(nginx: DebianNginx) -> None:
    response = requests.get(f"http://127.0.0.1:{nginx.default_site_port}/", timeout=30)
    assert response.headers.get("Server", "").startswith("nginx"), response.headers
    assert response.status_code in (200, 403, 404), response.status_code  # /var/www/html's


def test_single_node_walkthrough(tmp_path):
    (port,) = walkthrough.free_ports(1)
    home = tmp_path / "ociregistry"
    env = {"OCIR_HOME": str(home), "REGISTRY_PORT": str(port), "SRC": str(walkthrough.ROOT),
           "REGISTRY_PASSWORD": secrets.token_hex(12)}
    try:
        result = walkthrough.run("single-node", env)
        assert result.returncode == 0, walkthrough.failure(result, home / "run" / "*.log")
        assert f"registry on 127.0.0.1:{port}" in result.stdout
        _push_and_pull(tmp_path, f"127.0.0.1:{port}", env["REGISTRY_PASSWORD"])
    finally:
        down = walkthrough.run("single-node", env, teardown=True, timeout=300)
    assert down.returncode == 0, walkthrough.failure(down)
    assert not walkthrough.wait_ports_free([port]), "the registry still listens"
    assert not home.exists()


def test_cluster_walkthrough(tmp_path):
    """Three instances, Debian's PostgreSQL (a cluster of the test's own, Debian's
    pg_hba.conf) and nginx (Debian's configuration, default site included), SeaweedFS
    from the wheel."""
    weed = walkthrough.free_ports(4, spread=10000)
    registry_port, *instances = walkthrough.free_ports(
        4, avoid=frozenset([*weed, *(p + 10000 for p in weed)]))
    home = tmp_path / "ociregistry"
    postgres = DebianPostgres().start()
    nginx = None
    try:
        nginx = DebianNginx(tmp_path / "nginx").start()
        env = {
            "OCIR_HOME": str(home), "SRC": str(walkthrough.ROOT),
            "REGISTRY_PORT": str(registry_port),
            "INSTANCE_PORTS": " ".join(map(str, instances)),
            "PG_PORT": str(postgres.port), "NGINX_CONF": str(nginx.conf),
            "S3_PORT": str(weed[0]), "WEED_MASTER_PORT": str(weed[1]),
            "WEED_VOLUME_PORT": str(weed[2]), "WEED_FILER_PORT": str(weed[3]),
            "REGISTRY_PASSWORD": secrets.token_hex(12),
        }
        try:
            result = walkthrough.run("cluster", env)
            assert result.returncode == 0, walkthrough.failure(result, home / "run" / "*.log",
                                                               nginx.error_log)
            assert f"registry on port {registry_port}" in result.stdout
            _push_and_pull(tmp_path, f"127.0.0.1:{registry_port}", env["REGISTRY_PASSWORD"])
            # Debian's default site still answers beside it, on its own port.
            _default_site_answers(nginx)
            # Through nginx, round robin: every instance took a share of the requests.
            for i in range(1, len(instances) + 1):
                log = (home / "run" / f"instance-{i}.log").read_text(errors="replace")
                assert "/v2/walkthrough/app/" in log, f"instance {i} served nothing:\n{log}"
        finally:
            down = walkthrough.run("cluster", env, teardown=True, timeout=300)
        assert down.returncode == 0, walkthrough.failure(down)
        taken = walkthrough.wait_ports_free(
            [registry_port, *instances, *weed, *(p + 10000 for p in weed)])
        assert not taken, f"still listening after the teardown: {taken}"
        assert not home.exists()
        assert not (nginx.conf.parent / "conf.d" / "ociregistry.conf").exists()
        _default_site_answers(nginx)
    finally:
        if nginx is not None:
            nginx.stop()
        postgres.stop()
