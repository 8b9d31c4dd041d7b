"""``storage.read_back_when_idle`` through the real server: pushes and pulls give the
exact bytes (a large GET is sent from the gated file, storage/write_gate.py), and a
blob pushed is read back into the page cache once the uploads are done."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import requests

from tests.helpers import get_blob, sha256, start_upload
from tests.server import RegistryProcess
from tests.unit.test_direct_write import direct_supported

MiB = 1 << 20


def cached_bytes(path: Path) -> int:
    return int(subprocess.run(["fincore", "--bytes", "--noheadings", "--output", "RES",
                               str(path)], capture_output=True, text=True,
                              check=True).stdout.strip())


@pytest.fixture
def idle_registry(tmp_path: Path):
    server = RegistryProcess(tmp_path / "data",
                             env={"OCIREGISTRY_STORAGE__DIRECT_WRITES": "true",
                                  "OCIREGISTRY_STORAGE__READ_BACK_WHEN_IDLE": "true"}).start()
    yield server
    server.stop()


def test_pushes_and_pulls_keep_the_bytes_and_the_blob_is_read_back_after(
        idle_registry, tmp_path):
    data = os.urandom(40 * MiB + 4097)
    repo = "idle/readback"
    location = start_upload(idle_registry.url, repo)
    r = requests.put(location, params={"digest": sha256(data)}, data=data)
    assert r.status_code == 201, r.text
    digest = sha256(data)
    if shutil.which("fincore") and direct_supported(tmp_path):
        # written around the cache, then read back into it once nothing writes
        found = list((tmp_path / "data").rglob(digest.split(":")[1]))
        assert len(found) == 1
        deadline = time.monotonic() + 60
        while cached_bytes(found[0]) < len(data) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert cached_bytes(found[0]) >= len(data)  # whole pages
    # a large GET (the gated file, sendfile) and a small one
    got = get_blob(idle_registry, repo, digest)
    assert got.status_code == 200 and got.content == data
    small = os.urandom(1000)
    r = requests.post(f"{idle_registry.url}/v2/{repo}/blobs/uploads/",
                      params={"digest": sha256(small)}, data=small)
    assert r.status_code == 201, r.text
    assert get_blob(idle_registry, repo, sha256(small)).content == small
    # and again while another pull is open: both complete
    with requests.get(f"{idle_registry.url}/v2/{repo}/blobs/{digest}", stream=True) as first:
        second = get_blob(idle_registry, repo, digest)
        assert second.content == data
        assert first.raw.read() == data
