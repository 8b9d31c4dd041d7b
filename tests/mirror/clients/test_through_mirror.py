"""Real clients pull through the mirror, configured as users configure them.

Upstreams (all real, all on 127.0.0.1):
- ``hub``: CNCF Distribution with htpasswd, standing in for Docker Hub: the mirror's
  default upstream, ``hosts: [docker.io]``, prefix ``dockerhub``;
- ``quay``: this registry in token mode over HTTPS (CA made here), ``hosts: [quay.io]``,
  prefix ``quay``: the mirror does the Bearer dance and checks the certificate;
- ``ghcr``: Distribution with htpasswd over HTTPS, prefix ``ghcr``;
- ``tok``: this registry in token mode over plain HTTP, prefix ``tok`` (tells a TLS
  problem of the token dance from the dance itself).

Each test seeds an image no other test has (cold cache for manifests and blobs),
pulls it through the mirror with one client (cold), clears the client and pulls
again (warm): both times the client must end up with upstream's exact digests,
the cold pull must have reached upstream and the warm one must not have (within
the tag TTL: no upstream request at all, counted in upstream's access log).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.auth.support import Pki, SecureRegistry
from tests.mirror.clients.conftest import Images, build_images
from tests.mirror.clients.harness import podman_mirror_conf, write_hosts_dir
from tests.mirror.clients.pulls import ctr_pull, docker_pull, podman_pull, skopeo_pull
from tests.mirror.upstreams import (
    AccessLog,
    DistributionUpstream,
    TokenUpstream,
    Upstream,
    registry_access_log,
    upstream_manifest,
)

TAG_TTL = 3600  # nothing in a test run outlives it: warm pulls must not go upstream


@dataclass
class Setup:
    mirror: SecureRegistry
    access: AccessLog  # the mirror's own access log
    hub: DistributionUpstream
    quay: TokenUpstream
    ghcr: DistributionUpstream
    tok: TokenUpstream


def mirror_config(hub: DistributionUpstream, quay: TokenUpstream,
                  ghcr: DistributionUpstream, tok: TokenUpstream, pki: Pki) -> dict:
    """The mirror section as docs/mirror.md shows it."""
    def creds(up: Upstream) -> dict:
        user, password = up.credentials
        return {"username": user, "password": password}

    return {"mirror": {"upstreams": [
        {"name": "dockerhub", "url": hub.url, "hosts": ["docker.io"], "default": True,
         "tag_ttl": TAG_TTL, **creds(hub)},
        {"name": "quay", "url": quay.url, "hosts": ["quay.io"], "ca_file": str(pki.ca_cert),
         "tag_ttl": TAG_TTL, **creds(quay)},
        {"name": "ghcr", "url": ghcr.url, "hosts": ["ghcr.io"], "ca_file": str(pki.ca_cert),
         "tag_ttl": TAG_TTL, **creds(ghcr)},
        {"name": "tok", "url": tok.url, "tag_ttl": TAG_TTL, **creds(tok)},
    ]}, "log": {"access_log": True}}


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[Setup]:
    base = tmp_path_factory.mktemp("mirror")
    hub = DistributionUpstream(base / "hub", htpasswd=True).start()
    quay = TokenUpstream(base / "quay", pki).start()
    ghcr = DistributionUpstream(base / "ghcr", htpasswd=True, pki=pki).start()
    tok = TokenUpstream(base / "tok").start()
    mirror = SecureRegistry(base / "mirror" / "data",
                            mirror_config(hub, quay, ghcr, tok, pki))
    try:
        mirror.start()
        yield Setup(mirror, registry_access_log(mirror.log_path), hub, quay, ghcr, tok)
    finally:
        if mirror.proc is not None and mirror.proc.poll() is None:
            mirror.stop()
        for up in (hub, quay, ghcr, tok):
            up.stop()


@pytest.fixture
def fresh(tmp_path: Path) -> Images:
    """Images built for this test alone: their blobs are cold in the mirror."""
    return build_images(tmp_path / "images")


def seed_tag(up: Upstream, skopeo, fresh: Images, repo: str) -> str:
    tag = "t" + uuid.uuid4().hex[:10]
    fresh.push(up, skopeo, repo, tag)
    assert upstream_manifest(up, repo, tag)[1] == fresh.image.digest
    return tag


def cold_then_warm(up: Upstream, repo: str, pull: Callable[[], object]) -> None:
    """``pull`` twice: the first reaches upstream (a miss), the second does not.

    This registry's access log leaves out blob GETs answered with sendfile (a bug
    of web/observability.py: werkzeug skips call_on_close on direct passthrough), so
    on a ``TokenUpstream`` only Distribution-logged manifests are counted; its blobs
    came from upstream all the same: this test's images exist nowhere else."""
    mark = up.access.mark()
    pull()
    cold = up.access.repo_hits(mark, repo)
    assert any(h.method == "GET" and "/manifests/" in h.path and h.status == 200
               for h in cold), f"the cold pull never fetched a manifest upstream: {cold}"
    if isinstance(up, DistributionUpstream):  # its access log has every request
        assert any(h.method == "GET" and "/blobs/" in h.path and h.status == 200
                   for h in cold), f"the cold pull never fetched a blob upstream: {cold}"
    mark = up.access.mark()
    pull()
    warm = up.access.repo_hits(mark, repo)
    assert warm == [], f"a warm pull within the tag TTL went upstream: {warm}"


# -- containerd: hosts.toml, ?ns= ----------------------------------------------------
def test_ctr_hosts_toml_ns_docker_io(setup: Setup, containerd, skopeo, fresh: Images,
                                     tmp_path: Path) -> None:
    tag = seed_tag(setup.hub, skopeo, fresh, "library/alpine")
    hosts = write_hosts_dir(tmp_path, setup.mirror.url)
    ref = f"docker.io/library/alpine:{tag}"
    dumps: list[str] = []
    mark = setup.access.mark()
    cold_then_warm(setup.hub, "library/alpine", lambda: dumps.append(
        ctr_pull(containerd, hosts, ref, fresh.image.digest, fresh.image)))
    # containerd sent ?ns=docker.io on bare paths; the mirror named the namespace back.
    assert "ns=docker.io" in dumps[0], dumps[0][-3000:]
    assert "oci-namespace" in dumps[0].lower(), dumps[0][-3000:]
    served = setup.access.since(mark)
    assert any(h.path == f"/v2/library/alpine/manifests/{tag}" for h in served), served


def test_ctr_ns_selects_a_token_upstream_over_tls(setup: Setup, containerd, skopeo,
                                                  fresh: Images, tmp_path: Path) -> None:
    tag = seed_tag(setup.quay, skopeo, fresh, "team/app")
    hosts = write_hosts_dir(tmp_path, setup.mirror.url, namespace="quay.io")
    ref = f"quay.io/team/app:{tag}"
    cold_then_warm(setup.quay, "team/app", lambda: ctr_pull(
        containerd, hosts, ref, fresh.image.digest, fresh.image))


def test_ctr_multiarch_index_with_a_platform(setup: Setup, containerd, skopeo,
                                             fresh: Images, tmp_path: Path) -> None:
    tag = "m" + uuid.uuid4().hex[:10]
    fresh.push_multi(setup.hub, skopeo, "library/alpine", tag)
    hosts = write_hosts_dir(tmp_path, setup.mirror.url)
    arm = fresh.multi.images["linux/arm64"]
    cold_then_warm(setup.hub, "library/alpine", lambda: ctr_pull(
        containerd, hosts, f"docker.io/library/alpine:{tag}", fresh.multi.digest, arm,
        "--platform", "linux/arm64/v8"))


# -- dockerd: registry-mirrors (bare names, the default upstream) ----------------------
def test_dockerd_registry_mirrors(setup: Setup, make_dockerd, skopeo, fresh: Images) -> None:
    tag = seed_tag(setup.hub, skopeo, fresh, "library/alpine")
    dockerd = make_dockerd([setup.mirror.url])
    mark = setup.access.mark()
    cold_then_warm(setup.hub, "library/alpine", lambda: docker_pull(
        dockerd, f"alpine:{tag}", fresh.image, fresh.image.digest))
    served = setup.access.since(mark)
    assert any(h.path == f"/v2/library/alpine/manifests/{tag}" and h.status == 200
               for h in served), (served, dockerd.tail())


# -- podman: registries.conf mirror with the path prefix -----------------------------
def test_podman_registries_conf_mirror(setup: Setup, make_podman, skopeo, fresh: Images,
                                       tmp_path: Path) -> None:
    tag = seed_tag(setup.hub, skopeo, fresh, "library/alpine")
    conf = podman_mirror_conf(tmp_path / "registries.conf", f"{setup.mirror.host}/dockerhub")
    podman = make_podman(conf)
    mark = setup.access.mark()
    cold_then_warm(setup.hub, "library/alpine", lambda: podman_pull(
        podman, f"docker.io/library/alpine:{tag}", fresh.image, fresh.image.digest))
    served = setup.access.since(mark)
    assert any(h.path == f"/v2/dockerhub/library/alpine/manifests/{tag}" for h in served)


# -- skopeo: by path prefix ----------------------------------------------------------
@pytest.mark.parametrize("prefix", ["dockerhub", "ghcr", "quay", "tok"])
def test_skopeo_path_prefix(setup: Setup, skopeo, fresh: Images, tmp_path: Path,
                            prefix: str) -> None:
    up = {"dockerhub": setup.hub, "ghcr": setup.ghcr, "quay": setup.quay,
          "tok": setup.tok}[prefix]
    tag = seed_tag(up, skopeo, fresh, "library/alpine")
    image = fresh.image
    blobs = [image.config_digest, *image.layer_digests]
    src = f"docker://{setup.mirror.host}/{prefix}/library/alpine:{tag}"
    runs = iter(range(2))
    cold_then_warm(up, "library/alpine", lambda: skopeo_pull(
        skopeo, src, tmp_path / f"pull{next(runs)}", image.digest, blobs))


def test_skopeo_multiarch_index_all(setup: Setup, skopeo, fresh: Images,
                                    tmp_path: Path) -> None:
    tag = "m" + uuid.uuid4().hex[:10]
    fresh.push_multi(setup.hub, skopeo, "library/alpine", tag)
    every = [d for i in fresh.multi.images.values() for d in (i.digest, *i.layer_digests)]
    src = f"docker://{setup.mirror.host}/dockerhub/library/alpine:{tag}"
    runs = iter(range(2))
    cold_then_warm(setup.hub, "library/alpine", lambda: skopeo_pull(
        skopeo, src, tmp_path / f"pull{next(runs)}", fresh.multi.digest, every, "--all"))
    # Docker Hub's implicit library/: the single-component name is the same image.
    skopeo_pull(skopeo, f"docker://{setup.mirror.host}/dockerhub/alpine:{tag}",
                tmp_path / "short", fresh.multi.digest, every, "--all")
