"""Uploads of several MiB in pieces of odd sizes: the sizes where the body reader's
ring of buffers, the hash and write helpers and the filesystem driver's flushes ahead
(or, with storage.direct_writes, its O_DIRECT writes) all take part, including a body
cut short and a chunked transfer encoding."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from tests.helpers import get_blob, patch_chunk, send_and_hang_up, sha256, start_upload
from tests.ops.test_metrics import scrape, value
from tests.server import RegistryProcess
from tests.unit.test_upload_cache_tail import PAGE, resident

MiB = 1 << 20


@pytest.fixture(scope="module")
def direct_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProcess]:
    """Uploads written around the page cache (storage.direct_writes: true)."""
    server = RegistryProcess(tmp_path_factory.mktemp("direct") / "data",
                             env={"OCIREGISTRY_STORAGE__DIRECT_WRITES": "true"}).start()
    yield server
    server.stop()


def test_odd_sized_patches_of_several_mib_give_the_exact_blob(registry, repo):
    odd_sized_patches_then_put(registry, repo)


def test_odd_sized_patches_written_around_the_cache_give_the_exact_blob(direct_registry):
    odd_sized_patches_then_put(direct_registry, "direct/odd")
    data = os.urandom(6 * MiB + 5)  # and one monolithic body, read back for the pull
    r = requests.post(f"{direct_registry.url}/v2/direct/mono/blobs/uploads/",
                      params={"digest": sha256(data)}, data=data)
    assert r.status_code == 201, r.text
    assert get_blob(direct_registry, "direct/mono", sha256(data)).content == data


def odd_sized_patches_then_put(registry: RegistryProcess, repo: str) -> None:
    data = os.urandom(9 * MiB + 12345)
    cuts = [0, 4097, 3 * MiB + 1, 3 * MiB + 2, 7 * MiB - 511, len(data)]
    location = start_upload(registry.url, repo)
    for start, end in zip(cuts, cuts[1:], strict=False):
        r = patch_chunk(location, data[start:end], start)
        assert r.status_code == 202, r.text
        assert r.headers["Range"] == f"0-{end - 1}"
    r = requests.put(location, params={"digest": sha256(data)})
    assert r.status_code == 201, r.text
    assert get_blob(registry, repo, sha256(data)).content == data


def test_a_large_body_shorter_than_its_content_length_leaves_the_last_good_offset(
    registry, repo
):
    data = os.urandom(8 * MiB + 3)
    good = 3 * MiB + 77  # an odd offset: the next request's first bytes are unaligned
    location = start_upload(registry.url, repo)
    assert patch_chunk(location, data[:good], 0).status_code == 202
    parts = urlsplit(location)
    head = (
        f"PATCH {parts.path} HTTP/1.1\r\n"
        f"Host: {registry.host}\r\n"
        "Content-Type: application/octet-stream\r\n"
        f"Content-Range: {good}-{len(data) - 1}\r\n"
        f"Content-Length: {len(data) - good}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    # More than the ring of buffers and the staging buffer hold, then the client hangs up.
    send_and_hang_up(parts.hostname, parts.port, head + data[good:good + 4 * MiB + 5])
    status = requests.get(location)
    assert status.status_code == 204
    assert status.headers["Range"] == f"0-{good - 1}"
    r = patch_chunk(location, data[good:], good)
    assert r.status_code == 202, r.text
    r = requests.put(location, params={"digest": sha256(data)})
    assert r.status_code == 201, r.text
    assert get_blob(registry, repo, sha256(data)).content == data


def test_a_chunked_transfer_encoding_push_of_several_mib(registry, repo):
    data = os.urandom(5 * MiB + 999)

    def pieces() -> Iterator[bytes]:  # requests sends a generator chunked
        for start in range(0, len(data), 700_001):
            yield data[start:start + 700_001]

    location = start_upload(registry.url, repo)
    r = requests.patch(location, data=pieces(),
                       headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 202, r.text
    assert r.headers["Range"] == f"0-{len(data) - 1}"
    r = requests.put(location, params={"digest": sha256(data)})
    assert r.status_code == 201, r.text
    assert get_blob(registry, repo, sha256(data)).content == data
    # and a monolithic POST with a chunked body
    other = os.urandom(3 * MiB + 1)
    r = requests.post(f"{registry.url}/v2/{repo}/blobs/uploads/",
                      params={"digest": sha256(other)},
                      data=iter([other[:MiB + 3], other[MiB + 3:]]),
                      headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 201, r.text
    assert get_blob(registry, repo, sha256(other)).content == other


def test_a_pushed_blob_leaves_the_page_cache_but_for_its_tail_and_pulls_whole(
    tmp_path: Path,
) -> None:
    # storage.cache_upload_tail_mib: 4 on a real server, a 16 MiB chunked push (4 MiB
    # PATCHes: each ends with a flush ahead of the whole file): once flushed, its head
    # leaves the page cache (its pages serve the next writes), the metric counts it, and
    # the pull reads the blob back from the disk byte for byte
    server = RegistryProcess(tmp_path / "data",
                             env={"OCIREGISTRY_STORAGE__CACHE_UPLOAD_TAIL_MIB": "4"}).start()
    drops = "registry_storage_upload_cache_drops_total"
    try:
        before = value(scrape(server.url + "/metrics"), drops)
        data = os.urandom(16 * MiB)
        location = start_upload(server.url, "tail/blob")
        for start in range(0, len(data), 4 * MiB):
            r = patch_chunk(location, data[start:start + 4 * MiB], start)
            assert r.status_code == 202, r.text
        # the last PATCH's flush drops [0, 12 MiB) after its request has ended
        deadline = time.monotonic() + 30
        while value(scrape(server.url + "/metrics"), drops) - before < 3:  # PATCHes 2-4
            assert time.monotonic() < deadline
            time.sleep(0.05)
        [path] = (tmp_path / "data" / "uploads").iterdir()
        assert not any(resident(str(path))[:12 * MiB // PAGE])
        r = requests.put(location, params={"digest": sha256(data)})
        assert r.status_code == 201, r.text
        assert get_blob(server, "tail/blob", sha256(data)).content == data
    finally:
        server.stop()
