"""The client harnesses proven against a plain registry standing in for the mirror.

Each client is configured exactly as for the mirror, but the "mirror" here is a
plain CNCF Distribution holding the images: if these pass, a failure in
test_mirror_clients.py is the mirror's, not the harness's. The upstream
fixtures (htpasswd, HTTPS with a test CA, token mode) are proven here too.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.auth.support import Pki
from tests.mirror.clients.conftest import Images
from tests.mirror.clients.pulls import ctr_pull, docker_pull, podman_pull, skopeo_pull
from tests.mirror.upstreams import (
    DistributionUpstream,
    TokenUpstream,
    upstream_manifest,
    write_layered,
)


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory, skopeo, seeded_images: Images
          ) -> Iterator[DistributionUpstream]:
    """No auth: the clients talk to it as they would to an anonymous mirror."""
    server = DistributionUpstream(tmp_path_factory.mktemp("plain")).start()
    for repo in ("library/alpine", "dockerhub/library/alpine"):
        seeded_images.push(server, skopeo, repo, seeded_images.salt)
        seeded_images.push_multi(server, skopeo, repo, "multi-" + seeded_images.salt)
    yield server
    server.stop()


def test_ctr_hosts_toml_pulls_from_the_mirror_host(plain, containerd, seeded_images,
                                                   tmp_path: Path) -> None:
    from tests.mirror.clients.harness import write_hosts_dir

    hosts = write_hosts_dir(tmp_path, plain.url)
    mark = plain.access.mark()
    ref = f"docker.io/library/alpine:{seeded_images.salt}"
    dump = ctr_pull(containerd, hosts, ref, seeded_images.image.digest, seeded_images.image)
    # containerd marks requests to a mirror with the namespace they stand for.
    assert "ns=docker.io" in dump, dump[-2000:]
    hits = plain.access.repo_hits(mark, "library/alpine")
    assert any(h.method == "GET" and "/blobs/" in h.path for h in hits), hits


def test_ctr_multiarch_with_a_platform(plain, containerd, seeded_images, tmp_path: Path
                                       ) -> None:
    from tests.mirror.clients.harness import write_hosts_dir

    hosts = write_hosts_dir(tmp_path, plain.url)
    arm = seeded_images.multi.images["linux/arm64"]
    ctr_pull(containerd, hosts, f"docker.io/library/alpine:multi-{seeded_images.salt}",
             seeded_images.multi.digest, arm, "--platform", "linux/arm64/v8")


def test_dockerd_registry_mirrors(plain, make_dockerd, seeded_images) -> None:
    dockerd = make_dockerd([plain.url])
    mark = plain.access.mark()
    docker_pull(dockerd, f"alpine:{seeded_images.salt}", seeded_images.image,
                seeded_images.image.digest)
    assert plain.access.repo_hits(mark, "library/alpine"), dockerd.tail()


def test_podman_registries_conf_mirror(plain, make_podman, seeded_images, tmp_path: Path
                                       ) -> None:
    from tests.mirror.clients.harness import podman_mirror_conf

    podman = make_podman(podman_mirror_conf(tmp_path / "registries.conf",
                                            f"{plain.host}/dockerhub"))
    mark = plain.access.mark()
    podman_pull(podman, f"docker.io/library/alpine:{seeded_images.salt}",
                seeded_images.image, seeded_images.image.digest)
    assert plain.access.repo_hits(mark, "dockerhub/library/alpine")


def test_skopeo_path_prefix_and_index(plain, skopeo, seeded_images, tmp_path: Path) -> None:
    image, multi = seeded_images.image, seeded_images.multi
    base = f"docker://{plain.host}/dockerhub/library/alpine"
    skopeo_pull(skopeo, f"{base}:{seeded_images.salt}", tmp_path / "one", image.digest,
                [image.config_digest, *image.layer_digests])
    every = [d for i in multi.images.values() for d in (i.digest, *i.layer_digests)]
    skopeo_pull(skopeo, f"{base}:multi-{seeded_images.salt}", tmp_path / "all",
                multi.digest, every, "--all")


# -- the upstream fixtures themselves ---------------------------------------------
@pytest.mark.parametrize("kind", ["htpasswd", "tls-htpasswd", "token", "token-tls"])
def test_upstream_fixtures_serve_seeded_images(kind: str, tmp_path: Path, skopeo,
                                               seeded_images: Images, pki: Pki) -> None:
    tls = pki if "tls" in kind else None
    server = (TokenUpstream(tmp_path / kind, tls) if kind.startswith("token")
              else DistributionUpstream(tmp_path / kind, htpasswd=True, pki=tls))
    server.start()
    try:
        s = server.session()
        s.auth = None
        assert s.get(f"{server.url}/v2/", timeout=30).status_code == 401
        seeded_images.push(server, skopeo, "library/alpine", "v1")
        layered = write_layered(tmp_path / "layered", seeded_images.salt, 10, tag="ten")
        from tests.mirror.upstreams import seed

        seed(server, skopeo, tmp_path / "layered", "ten", "library/ten", "ten")
        mark = server.access.mark()
        body, digest = upstream_manifest(server, "library/ten", "ten")
        assert digest == layered.digest and body == layered.manifest
        assert upstream_manifest(server, "library/alpine", "v1")[1] == \
            seeded_images.image.digest
        hits = server.access.repo_hits(mark, "library/ten")
        assert [h.status for h in hits if h.method == "GET"][-1] == 200, hits
    finally:
        server.stop()


def test_token_upstream_access_log_records_blob_gets(tmp_path: Path, skopeo,
                                                     seeded_images: Images) -> None:
    """Counting upstream requests needs every request in the log. This registry logs
    in ``call_on_close``, which werkzeug skips for a sendfile (direct passthrough)
    response: blob GETs answered 200 are missing from the access log (and from the
    request metrics). Fails until web/observability.py logs them."""
    from tests.mirror.upstreams import _bearer

    server = TokenUpstream(tmp_path / "tok").start()
    try:
        seeded_images.push(server, skopeo, "library/alpine", "v1")
        layer = seeded_images.image.layer_digests[0]
        s = server.session()
        url = f"{server.url}/v2/library/alpine/blobs/{layer}"
        challenge = s.get(url, timeout=30).headers["WWW-Authenticate"]
        token = _bearer(s, challenge, server.credentials)
        mark = server.access.mark()
        r = s.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        assert r.status_code == 200
        hits = server.access.since(mark)
        assert any(h.path == f"/v2/library/alpine/blobs/{layer}" and h.status == 200
                   for h in hits), hits
    finally:
        server.stop()
