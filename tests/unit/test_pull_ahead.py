"""A cold large blob's GET reads the second half of what is not cached on a helper
(storage/pull_ahead.py): what it plans and reads is checked against the kernel's page
cache (mincore), and a GET of a blob in memory or a small one starts nothing."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from ociregistry.storage import pull_ahead, write_gate
from ociregistry.storage.filesystem import FilesystemStorage
from ociregistry.storage.pull_ahead import MIN_SIZE, STEP
from tests.unit.test_upload_cache_tail import MiB, cached_mib

SIZE = 2 * MIN_SIZE


def blob_file(tmp_path: Path, size: int = SIZE, keep_tail: int = 0) -> str:
    """A flushed file of ``size`` bytes with only its last ``keep_tail`` bytes cached."""
    path = str(tmp_path / "blob")
    with open(path, "wb") as f:
        for _ in range(size // MiB):
            f.write(os.urandom(MiB))
        f.flush()
        os.fsync(f.fileno())
        os.posix_fadvise(f.fileno(), 0, size - keep_tail, os.POSIX_FADV_DONTNEED)
    return path


def wait_idle() -> None:
    """Until every helper of this process has ended."""
    deadline = time.monotonic() + 30
    while True:
        got = [pull_ahead._running.acquire(blocking=False) for _ in range(pull_ahead.THREADS)]
        for ok in got:
            if ok:
                pull_ahead._running.release()
        if all(got):
            return
        assert time.monotonic() < deadline
        time.sleep(0.005)


def test_a_cold_blob_has_its_second_half_read_into_the_cache(tmp_path: Path) -> None:
    path = blob_file(tmp_path)
    with open(path, "rb") as f:
        assert pull_ahead.plan(f.fileno(), SIZE) == (SIZE // 2, SIZE)
        stop = pull_ahead.start(path, f.fileno(), SIZE)
        assert stop is not None
        wait_idle()
    assert cached_mib(path, SIZE // 2, SIZE) == SIZE // 2 / MiB
    assert cached_mib(path, 0, SIZE // 2) == 0  # the first half is the sendfile's


def test_a_new_blobs_cached_tail_is_left_out_of_the_split(tmp_path: Path) -> None:
    # storage.cache_upload_tail_mib keeps a new blob's end in memory: the two streams
    # share what the disk has to give, the part before that tail
    tail = 4 * STEP
    path = blob_file(tmp_path, keep_tail=tail)
    with open(path, "rb") as f:
        start, end = pull_ahead.plan(f.fileno(), SIZE)
    assert end == SIZE - tail
    assert start == (SIZE - tail) // 2 // STEP * STEP


def test_a_blob_in_memory_or_a_small_one_starts_nothing(tmp_path: Path) -> None:
    path = blob_file(tmp_path)
    with open(path, "rb") as f:
        while f.read(MiB):  # now all in the page cache
            pass
        assert pull_ahead.plan(f.fileno(), SIZE) is None
        assert pull_ahead.start(path, f.fileno(), SIZE) is None
    path = blob_file(tmp_path, size=MIN_SIZE // 2)
    with open(path, "rb") as f:
        assert pull_ahead.plan(f.fileno(), MIN_SIZE // 2) is None


def test_a_stopped_helper_reads_no_further(tmp_path: Path) -> None:
    path = blob_file(tmp_path)
    stop = threading.Event()
    stop.set()  # the client hung up before the helper began
    assert pull_ahead.read_into_cache(path, SIZE // 2, SIZE, stop) == 0
    assert cached_mib(path, 0, SIZE) == 0


def test_at_most_threads_helpers_per_process(tmp_path: Path, monkeypatch) -> None:
    release = threading.Event()
    monkeypatch.setattr(pull_ahead, "read_into_cache",
                        lambda path, start, end, stop: release.wait(30))
    path = blob_file(tmp_path)
    try:
        with open(path, "rb") as f:
            stops = [pull_ahead.start(path, f.fileno(), SIZE) for _ in range(3)]
        assert [s is not None for s in stops] == [True] * pull_ahead.THREADS + [False]
    finally:
        release.set()
    wait_idle()


@pytest.mark.parametrize("enabled", [True, False])
def test_a_get_opens_the_blob_with_its_helper_and_closing_stops_it(tmp_path: Path,
                                                                   enabled) -> None:
    started: list[int] = []
    storage = FilesystemStorage(str(tmp_path / "root"), pull_ahead=enabled)
    storage.on_pull_ahead = lambda: started.append(1)
    path = blob_file(tmp_path)
    file = write_gate.opened_for_pull(storage, path, SIZE)
    try:
        assert os.fstat(file.fileno()).st_size == SIZE  # what sendfile uses
        assert isinstance(file, write_gate.GatedFile) == enabled
        assert started == ([1] if enabled else [])
    finally:
        file.close()
    assert file.closed
    wait_idle()
