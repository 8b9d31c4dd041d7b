"""Read-backs that wait for the disk (storage/write_gate.py, ``storage.read_back_when_idle``):
the gate seen across processes and threads, read-backs held while uploads write or a
large blob is pulled and let go after, or after write_gate.MAX_DEFER at most."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from ociregistry.storage import direct_write, populate, write_gate
from ociregistry.storage.direct_write import STAGE
from ociregistry.storage.filesystem import FilesystemStorage
from ociregistry.storage.write_gate import WriteGate, opened_for_pull
from tests.unit.test_direct_write import aligned_chunks, direct_supported

SRC = str(Path(__file__).resolve().parents[2] / "src")


@pytest.fixture
def storage(tmp_path: Path) -> FilesystemStorage:
    if not direct_supported(tmp_path):
        pytest.skip("this file system refuses O_DIRECT: nothing is read back")
    if direct_write._READAHEAD is None:
        pytest.skip("readahead(2) is Linux-only")
    return FilesystemStorage(str(tmp_path / "root"), fsync=True, direct_writes=True,
                             read_back_when_idle=True)


def test_the_gate_is_only_there_when_asked_for(tmp_path):
    assert FilesystemStorage(str(tmp_path / "a"), fsync=True,
                             direct_writes=True).write_gate is None
    assert FilesystemStorage(str(tmp_path / "b"), fsync=True, direct_writes=True,
                             cache_new_blobs=False, read_back_when_idle=True).write_gate is None
    # cached writes (the default) read nothing back, so nothing waits at a gate
    assert FilesystemStorage(str(tmp_path / "c"), fsync=True,
                             read_back_when_idle=True).write_gate is None


def test_writers_of_one_process_hold_the_gate_until_the_last_leaves(tmp_path):
    path = str(tmp_path / "gate")
    writers, reader = WriteGate(path), WriteGate(path)
    assert not reader.busy()
    writers.enter()
    writers.enter()
    assert reader.busy()
    writers.leave()
    assert reader.busy()  # one upload still writing
    writers.leave()
    assert not reader.busy()
    writers.leave()  # one too many: no harm
    assert not reader.busy()


def test_an_upload_writing_in_another_process_holds_the_gate(tmp_path):
    path = str(tmp_path / "gate")
    code = (
        "import sys\n"
        "from ociregistry.storage.write_gate import WriteGate\n"
        f"g = WriteGate({path!r})\n"
        "g.enter()\n"
        "print('in', flush=True)\n"
        "sys.stdin.readline()\n"
        "g.leave()\n"
        "print('out', flush=True)\n"
        "sys.stdin.readline()\n"
    )
    env = {**os.environ, "PYTHONPATH": SRC}
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert child.stdout.readline().strip() == "in"
        reader = WriteGate(path)
        assert reader.busy()
        child.stdin.write("\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "out"
        assert not reader.busy()
    finally:
        child.stdin.close()
        child.wait(timeout=30)


def recording_readahead(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """readahead(2) that signals its first call; ranges are not populated, so every
    read-back goes through it."""
    called = threading.Event()
    real = direct_write._READAHEAD

    def recording(fd: int, offset: int, length: int) -> int:
        called.set()
        return real(fd, offset, length)

    monkeypatch.setattr(direct_write, "_READAHEAD", recording)
    monkeypatch.setattr(populate, "_LIBC", None)
    return called


def upload(storage: FilesystemStorage) -> str:
    upload_id = str(uuid.uuid4())
    storage.create_upload(upload_id)
    with storage.append_upload(upload_id) as writer:
        writer.write_many(aligned_chunks(STAGE, STAGE))
    return upload_id


def test_a_read_back_waits_while_another_upload_writes(storage, monkeypatch):
    called = recording_readahead(monkeypatch)
    other = WriteGate(storage.write_gate.path)  # an upload of another worker
    other.enter()
    try:
        upload(storage)
        assert not called.wait(1.0)  # queued, held at the gate
    finally:
        other.leave()
    assert called.wait(30)  # the disk is free: read back now
    assert direct_write.read_backs_done()


def test_a_read_back_goes_ahead_after_max_defer(storage, monkeypatch):
    # a registry that is never idle reads back as it did before, only later
    monkeypatch.setattr(write_gate, "MAX_DEFER", 0.3)
    called = recording_readahead(monkeypatch)
    other = WriteGate(storage.write_gate.path)
    other.enter()
    try:
        upload(storage)
        assert called.wait(30)
    finally:
        other.leave()
    assert direct_write.read_backs_done()


def test_a_large_pull_holds_the_gate_until_closed(storage, tmp_path):
    big, small = tmp_path / "big", tmp_path / "small"
    big.write_bytes(os.urandom(write_gate.PULL_MIN))
    small.write_bytes(b"x" * 100)
    probe = WriteGate(storage.write_gate.path)
    file = opened_for_pull(storage, str(big), write_gate.PULL_MIN)
    try:
        assert probe.busy()
        assert file.read(10) == big.read_bytes()[:10]
        assert file.seek(0) == 0 and file.tell() == 0
        assert os.fstat(file.fileno()).st_size == write_gate.PULL_MIN  # what sendfile uses
    finally:
        file.close()
    assert file.closed and not probe.busy()
    plain = opened_for_pull(storage, str(small), 100)  # small blobs: as before
    try:
        assert not probe.busy() and plain.read() == b"x" * 100
    finally:
        plain.close()
    other = FilesystemStorage(str(tmp_path / "other"), fsync=True)  # no gate: as before
    with opened_for_pull(other, str(big), write_gate.PULL_MIN) as f:
        assert not isinstance(f, write_gate.GatedFile)


def test_a_long_upload_is_read_back_whole_in_pieces(storage, monkeypatch):
    import shutil

    from tests.unit.test_direct_write import cached_bytes

    if shutil.which("fincore") is None:
        pytest.skip("util-linux fincore is Linux-only")
    monkeypatch.setattr(direct_write, "PIECE", 2 * STAGE)
    calls: list[tuple[int, int, bool]] = []
    real = direct_write.read_back_later

    def recording(fd: int, offset: int, length: int, behind: bool = False,
                  gate: object = None) -> None:
        assert gate is storage.write_gate
        calls.append((offset, length, behind))
        real(fd, offset, length, behind, gate)

    monkeypatch.setattr(direct_write, "read_back_later", recording)
    size = populate.LAG + 6 * STAGE
    upload_id = str(uuid.uuid4())
    storage.create_upload(upload_id)
    with storage.append_upload(upload_id) as writer:
        for _ in range(size // (2 * STAGE)):
            writer.write_many(aligned_chunks(STAGE, STAGE))
    assert direct_write.read_backs_done()
    assert sum(length for _, length, _ in calls) == size
    assert all(length >= 2 * STAGE for _, length, behind in calls if behind)
    assert calls[0][2] and not calls[-1][2]
    path = storage._upload_file(upload_id)
    deadline = time.monotonic() + 30
    while cached_bytes(path) < size and time.monotonic() < deadline:
        time.sleep(0.05)
    assert cached_bytes(path) == size
