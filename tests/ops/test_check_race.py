"""`check --repair` against a client pushing the same blob again, made deterministic.

The checker runs in this process on the server's own data directory and
database; its storage stops right after the checker looked at the bytes of one
blob (hashed them, or found them missing) until the test lets it go. Meanwhile
a real client pushes that blob again through the real server and gets its 201.
The repair must then notice (under the digest lock uploads take) that the blob
changed since it looked, and leave it: the 201 holds, the blob reads whole.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from ociregistry.core.check import CheckReport, IntegrityChecker
from ociregistry.metadata.store import MetadataStore
from ociregistry.storage.filesystem import FilesystemStorage
from tests.helpers import push_blob, sha256
from tests.server import RegistryProcess

WAIT = 120
REPO = "check/race"


class PausingStorage(FilesystemStorage):
    """The real filesystem storage, holding the checker once it has looked at ``digest``."""

    def __init__(self, root: str, digest: str) -> None:
        super().__init__(root)
        self.digest = digest
        self.looked = threading.Event()
        self.go_on = threading.Event()

    def _pause(self) -> None:
        if not self.looked.is_set():
            self.looked.set()
            assert self.go_on.wait(WAIT), "the test never let the checker go on"

    def blob_exists(self, digest: str) -> bool:
        exists = super().blob_exists(digest)
        if digest == self.digest and not exists:
            self._pause()
        return exists

    def open_blob(self, digest: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        yield from super().open_blob(digest, chunk_size)
        if digest == self.digest:
            self._pause()  # every byte hashed, the verdict not yet acted on


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RegistryProcess]:
    proc = RegistryProcess(tmp_path / "data").start()
    yield proc
    proc.stop()


def blob_file(server: RegistryProcess, digest: str) -> Path:
    algorithm, encoded = digest.split(":")
    return server.data_dir / "blobs" / algorithm / encoded[:2] / encoded


def repair_while_pushing_again(server: RegistryProcess, digest: str, data: bytes) -> CheckReport:
    url = server.env.get("OCIREGISTRY_DATABASE__URL",
                         f"sqlite:///{server.data_dir / 'registry.db'}")
    store = MetadataStore(url)
    storage = PausingStorage(str(server.data_dir), digest)
    checker = IntegrityChecker(store, storage, str(server.data_dir / "quarantine"))
    reports: list[CheckReport] = []
    thread = threading.Thread(target=lambda: reports.append(checker.run(repair=True)))
    thread.start()
    try:
        assert storage.looked.wait(WAIT), "the checker never reached the blob"
        push_blob(server.url, REPO, data)  # 201: the client is told the blob is there
    finally:
        storage.go_on.set()
        thread.join(WAIT)
        store.dispose()
    assert reports, "the checker failed (see the log above)"
    return reports[0]


def assert_readable(server: RegistryProcess, digest: str, data: bytes) -> None:
    assert requests.head(f"{server.url}/v2/{REPO}/blobs/{digest}").status_code == 200
    r = requests.get(f"{server.url}/v2/{REPO}/blobs/{digest}", timeout=60)
    assert r.status_code == 200 and sha256(r.content) == digest


def test_repair_of_a_corrupt_blob_spares_the_good_bytes_pushed_meanwhile(server):
    data = os.urandom(50_000)
    digest = push_blob(server.url, REPO, data)
    blob_file(server, digest).write_bytes(os.urandom(len(data)))  # bit rot
    report = repair_while_pushing_again(server, digest, data)
    [problem] = [p for p in report.problems if p.subject == digest and p.kind == "corrupt-blob"]
    assert not problem.repaired, problem
    assert_readable(server, digest, data)


def test_repair_of_a_missing_blob_spares_the_blob_pushed_meanwhile(server):
    data = os.urandom(50_000)
    digest = push_blob(server.url, REPO, data)
    blob_file(server, digest).unlink()
    report = repair_while_pushing_again(server, digest, data)
    [problem] = [p for p in report.problems if p.subject == digest and p.kind == "missing-blob"]
    assert not problem.repaired, problem
    assert_readable(server, digest, data)


def test_repair_without_a_race_still_repairs(server):
    data = os.urandom(50_000)
    digest = push_blob(server.url, REPO, data)
    blob_file(server, digest).write_bytes(os.urandom(len(data)))
    store = MetadataStore(f"sqlite:///{server.data_dir / 'registry.db'}")
    try:
        report = IntegrityChecker(
            store, FilesystemStorage(str(server.data_dir)), str(server.data_dir / "quarantine")
        ).run(repair=True)
    finally:
        store.dispose()
    [problem] = [p for p in report.problems if p.subject == digest]
    assert problem.kind == "corrupt-blob" and problem.repaired
    assert requests.head(f"{server.url}/v2/{REPO}/blobs/{digest}").status_code == 404
    assert not blob_file(server, digest).exists()
    assert len(list((server.data_dir / "quarantine").iterdir())) == 1
    push_blob(server.url, REPO, data)  # pushing again restores it
    assert_readable(server, digest, data)
