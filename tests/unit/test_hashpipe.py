"""The hash pipeline: the same digest as hashing inline, and never a buffer reused
under the hasher, whatever the speed of either side."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Iterator

import pytest

from ociregistry.core import hashpipe
from ociregistry.core.hashpipe import HashPipeline
from ociregistry.core.hashstate import new_resumable


def ring_source(data: bytes, chunk: int, ring: int) -> Iterator[memoryview]:
    """Like web/body.py: chunks are views of `ring` reused buffers, refilled in turn."""
    buffers = [bytearray(chunk) for _ in range(ring)]
    for i, start in enumerate(range(0, len(data), chunk)):
        part = data[start:start + chunk]
        buf = buffers[i % ring]
        buf[:len(part)] = part
        yield memoryview(buf)[:len(part)]


class SlowHash:
    """A hasher that takes its time and checks its chunk didn't change meanwhile."""

    def __init__(self) -> None:
        self.inner = hashlib.sha256()
        self.calls = 0
        self.threads: set[str] = set()

    def update(self, chunk: memoryview) -> None:
        before = bytes(chunk)
        time.sleep(0.002)
        assert bytes(chunk) == before, "the buffer was refilled while being hashed"
        self.inner.update(before)
        self.calls += 1
        self.threads.add(threading.current_thread().name)


def run(pipe: HashPipeline, source: Iterator[memoryview]) -> bytes:
    written = bytearray()
    for chunk in pipe.chunks(source):
        written += chunk
        pipe.add(chunk)
    pipe.drain()
    return bytes(written)


def test_slow_hasher_never_sees_a_refilled_buffer() -> None:
    data = os.urandom(300 * 1024 + 17)
    hasher = SlowHash()
    written = run(HashPipeline(hasher), ring_source(data, 4096, hashpipe.BUFFERS))
    assert written == data
    assert hasher.inner.hexdigest() == hashlib.sha256(data).hexdigest()
    assert "upload-hash" in hasher.threads  # it did run on the helper thread


@pytest.mark.parametrize("size", [0, 1, 4096, 4097, 3 * 1024 * 1024 + 5])
def test_same_digest_as_inline_with_the_resumable_hash(size: int) -> None:
    data = os.urandom(size)
    pipe = HashPipeline(new_resumable("sha256"))
    run(pipe, ring_source(data, 1 << 20, hashpipe.BUFFERS))
    assert pipe.hasher.hexdigest() == hashlib.sha256(data).hexdigest()


def test_one_chunk_is_hashed_inline_without_a_thread() -> None:
    hasher = SlowHash()
    run(HashPipeline(hasher), ring_source(b"x" * 100, 4096, hashpipe.BUFFERS))
    assert hasher.threads == {threading.current_thread().name}


def test_a_failing_hasher_fails_the_body_and_abort_stops_the_thread() -> None:
    class Broken(SlowHash):
        def update(self, chunk: memoryview) -> None:
            if self.calls == 3:
                raise RuntimeError("boom")
            super().update(chunk)

    pipe = HashPipeline(Broken())
    with pytest.raises(RuntimeError, match="boom"):
        run(pipe, ring_source(os.urandom(1 << 20), 4096, hashpipe.BUFFERS))
    pipe.abort()
    assert [t for t in threading.enumerate() if t.name == "upload-hash"] == []


class SlowWriter(SlowHash):
    """A writer stage (a disk write that waits): the same checks, keeps the bytes."""

    def __init__(self, delay: float = 0.003) -> None:
        super().__init__()
        self.delay = delay
        self.data = bytearray()
        self.batches: list[int] = []

    def __call__(self, chunks: list[memoryview]) -> None:
        before = [bytes(chunk) for chunk in chunks]
        time.sleep(self.delay)
        for chunk, was in zip(chunks, before, strict=True):
            assert bytes(chunk) == was, "the buffer was refilled while being written"
            self.data += was
        self.batches.append(len(chunks))
        self.threads.add(threading.current_thread().name)


def run_behind(pipe: HashPipeline, source: Iterator[memoryview]) -> None:
    for chunk in pipe.chunks(source):
        pipe.add(chunk)  # written by the pipeline's second helper, not here
    pipe.drain()


@pytest.mark.parametrize("writer_delay", [0.0, 0.003])
def test_a_write_stage_gets_every_chunk_in_order_and_no_refilled_buffer(writer_delay) -> None:
    data = os.urandom(200 * 1024 + 3)
    hasher, writer = SlowHash(), SlowWriter(writer_delay)
    run_behind(HashPipeline(hasher, writer), ring_source(data, 4096, hashpipe.BUFFERS))
    assert bytes(writer.data) == data
    assert hasher.inner.hexdigest() == hashlib.sha256(data).hexdigest()
    assert writer.threads == {"upload-hash"} and threading.current_thread().name != "upload-hash"
    assert max(writer.batches) <= hashpipe.WRITE_BATCH


def test_a_writer_behind_gets_the_waiting_chunks_together() -> None:
    # a slow disk gets several writes at once (storage/direct_write.py: one writev)
    data = os.urandom(64 * 4096)
    hasher, writer = SlowHash(), SlowWriter(0.02)
    run_behind(HashPipeline(hasher, writer), ring_source(data, 4096, hashpipe.BUFFERS))
    assert bytes(writer.data) == data
    assert max(writer.batches) == hashpipe.WRITE_BATCH > 1


def test_a_one_chunk_body_is_written_inline() -> None:
    hasher, writer = SlowHash(), SlowWriter()
    run_behind(HashPipeline(hasher, writer), ring_source(b"y" * 100, 4096, hashpipe.BUFFERS))
    assert bytes(writer.data) == b"y" * 100
    assert writer.threads == {threading.current_thread().name}


def test_a_failing_write_stage_fails_the_body_and_abort_stops_both_helpers() -> None:
    class Broken(SlowWriter):
        def __call__(self, chunks: list[memoryview]) -> None:
            for chunk in chunks:  # the disk fills up after the third chunk
                if len(self.data) >= 3 * 4096:
                    raise OSError(28, "No space left on device")
                super().__call__([chunk])

    writer = Broken()
    pipe = HashPipeline(SlowHash(), writer)
    with pytest.raises(OSError, match="No space"):
        run_behind(pipe, ring_source(os.urandom(1 << 20), 4096, hashpipe.BUFFERS))
    pipe.abort()
    assert [t for t in threading.enumerate() if t.name == "upload-hash"] == []
    assert len(writer.data) == 3 * 4096
