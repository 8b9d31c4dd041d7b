"""A full disk fails the upload cleanly and loses nothing already stored.

The blob storage sits on a 3 MiB tmpfs (the tests run as root, as CI does);
the database lives elsewhere so that only the blob bytes run out of room.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.helpers import assert_error, sha256
from tests.server import RegistryProcess


@pytest.fixture
def small_disk_registry(tmp_path: Path) -> Iterator[tuple[RegistryProcess, Path]]:
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], check=True)
    env = {
        "OCIREGISTRY_STORAGE__ROOT": str(mount),
        "OCIREGISTRY_DATABASE__URL": f"sqlite:///{tmp_path / 'registry.db'}",
    }
    server = RegistryProcess(tmp_path / "data", env=env).start()
    try:
        yield server, mount
    finally:
        server.stop()
        subprocess.run(["umount", str(mount)], check=True)


def _upload_files(mount: Path) -> list[str]:
    return sorted(os.listdir(mount / "uploads"))


def test_monolithic_push_on_a_full_disk_fails_and_keeps_old_blobs(small_disk_registry):
    server, mount = small_disk_registry
    small = os.urandom(1 << 20)
    r = requests.post(
        f"{server.url}/v2/full/repo/blobs/uploads/", params={"digest": sha256(small)}, data=small
    )
    assert r.status_code == 201, r.text

    big = os.urandom(4 << 20)
    r = requests.post(
        f"{server.url}/v2/full/repo/blobs/uploads/", params={"digest": sha256(big)}, data=big
    )
    assert_error(r, 507, "BLOB_UPLOAD_INVALID")
    assert _upload_files(mount) == []  # the partial upload is gone
    assert requests.head(f"{server.url}/v2/full/repo/blobs/{sha256(big)}").status_code == 404

    r = requests.get(f"{server.url}/v2/full/repo/blobs/{sha256(small)}")
    assert r.status_code == 200
    assert r.content == small


def test_chunk_that_does_not_fit_is_rolled_back_and_the_upload_goes_on(small_disk_registry):
    server, mount = small_disk_registry
    first = os.urandom(1 << 20)
    r = requests.post(f"{server.url}/v2/full/chunks/blobs/uploads/")
    location = server.url + r.headers["Location"]
    r = requests.patch(location, data=first, headers={"Content-Range": f"0-{len(first) - 1}"})
    assert r.status_code == 202, r.text
    location = server.url + r.headers["Location"]

    too_big = os.urandom(4 << 20)
    r = requests.patch(
        location,
        data=too_big,
        headers={"Content-Range": f"{len(first)}-{len(first) + len(too_big) - 1}"},
    )
    assert_error(r, 507, "BLOB_UPLOAD_INVALID")

    # The session still holds exactly the first chunk, and can be finished.
    r = requests.get(location)
    assert r.status_code == 204
    assert r.headers["Range"] == f"0-{len(first) - 1}"
    last = os.urandom(1000)
    r = requests.put(location, params={"digest": sha256(first + last)}, data=last)
    assert r.status_code == 201, r.text
    r = requests.get(f"{server.url}/v2/full/chunks/blobs/{sha256(first + last)}")
    assert r.content == first + last
