"""Blobs on a local filesystem: blobs/<alg>/<xx>/<hex>, uploads/<id>."""

from __future__ import annotations

import ctypes
import fcntl
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ociregistry.storage.base import BlobStorage, StoredBlob, UploadWriter
from ociregistry.storage.direct_write import DirectAppender, open_direct
from ociregistry.storage.durable import fsync_dir as _fsync_dir
from ociregistry.storage.durable import fsync_together
from ociregistry.storage.flush_ahead import FlushAhead
from ociregistry.storage.write_gate import NAME as GATE_NAME
from ociregistry.storage.write_gate import WriteGate

_UPLOAD_ID_RE = re.compile(r"^[a-f0-9-]{8,64}$")


def _load_sync_file_range() -> Any:
    """Linux's sync_file_range(2), or None elsewhere."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        function = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


_SYNC_FILE_RANGE = _load_sync_file_range() if sys.platform.startswith("linux") else None
_SYNC_FILE_RANGE_WRITE = 2
# With fsync on, start writing an upload's bytes back every this many bytes, so the
# fsync that publishes the blob waits for the tail, not for the whole blob. Every
# 1 MiB write (the body reader's buffer) rather than every 8: the device gets the
# bytes in a steady stream, and the flushes ahead find less to write; 4 pushes at
# once went 477-586 -> 583-624 MiB/s, with 5-20 % less CPU per MiB
# (docs/performance.md, "Pushes, round six").
FLUSH_BEHIND = 1 << 20


def _same_file(path: str, fd: int) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    own = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)


class _FileUploadWriter(UploadWriter):
    def __init__(
        self, storage: FilesystemStorage, upload_id: str, fd: int, direct: bool = False
    ) -> None:
        self._storage = storage
        self._path = storage._upload_file(upload_id)
        self._fd = fd
        self.offset = os.fstat(fd).st_size
        self._flushed = self.offset  # writeback started up to here
        self._flush_behind = storage.fsync and _SYNC_FILE_RANGE is not None
        self._linked: str | None = None  # the blob's name stage() gave these bytes
        # With fsync on, bytes go around the page cache where the file system lets
        # them (storage/direct_write.py); flush() ends each request's writes.
        self._direct = (DirectAppender(fd, self.offset, storage.cache_new_blobs, self._path,
                                       storage.write_gate) if direct else None)
        # Cached writes: the device flushes while the rest arrives (flush_ahead.py).
        self._ahead = (FlushAhead(self._path, self.offset, on_start=storage.on_flush_ahead,
                                  keep_tail=storage.cache_upload_tail,
                                  on_drop=storage.on_upload_cache_drop)
                       if storage.fsync and not direct and storage.flush_ahead else None)
        # Either way the copy (or the wait for the device) runs on a helper thread,
        # while the request thread receives the next bytes (core/hashpipe.py).
        self.write_behind = direct or storage.fsync

    def write(self, data: bytes | memoryview) -> None:
        if self._direct is not None:
            self._direct.write(data)
            self.offset += len(data)
            return
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        self.offset += len(data)
        if self._flush_behind and self.offset - self._flushed >= FLUSH_BEHIND:
            # Asynchronous: queues the dirty pages for the disk and returns. The
            # fsync in stage() still makes them durable; this only starts it early.
            _SYNC_FILE_RANGE(self._fd, self._flushed, self.offset - self._flushed,
                             _SYNC_FILE_RANGE_WRITE)
            self._flushed = self.offset
        if self._ahead is not None:
            self._ahead.wrote(self.offset)

    def write_many(self, chunks: list[Any]) -> None:
        if self._direct is None:
            super().write_many(chunks)
            return
        self._direct.write_many([memoryview(c).cast("B") for c in chunks])
        self.offset += sum(len(c) for c in chunks)

    def flush(self) -> None:
        if self._direct is not None:
            self._direct.flush()

    def close(self) -> None:
        if self._direct is not None:
            self._direct.close()

    def rollback(self, offset: int) -> None:
        if self._direct is not None:
            if offset > self._direct.disk:
                self._direct.flush()  # keeps staged bytes before ``offset``
            self._direct.truncated(offset)
        os.ftruncate(self._fd, offset)
        os.lseek(self._fd, offset, os.SEEK_SET)
        self.offset = offset
        self._flushed = min(self._flushed, offset)

    def read_back(self, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        self.flush()
        with open(self._path, "rb") as f:
            while chunk := f.read(chunk_size):
                yield chunk

    def save(self) -> dict[str, Any] | None:
        self.flush()
        return None

    def stage(self, digest: str) -> None:
        self.flush()
        if not self._storage.fsync:
            return
        # The blob's name, made durable here, before the index transaction: those
        # flushes (disk round trips) then no longer run while the database's write
        # lock is held, which every other push waits for. A hard link, so the upload
        # keeps its own name until commit() (GC may remove an unrecorded blob file
        # meanwhile: commit() then puts it back). Only where no file is: one there
        # may be a corrupt copy, which commit() replaces as before. The link comes
        # first so that the bytes and the name are flushed together (durable.py):
        # until the row records it, a name whose bytes a crash lost is only an
        # unrecorded file, which the next push of the digest replaces.
        target = self._storage._blob_file(digest)
        directories: list[str] = []  # whose entries must reach the disk
        linked = False
        if not os.path.exists(target):
            directory = os.path.dirname(target)
            directories = self._storage._make_dirs_unsynced(directory)
            try:
                os.link(self._path, target)
                linked = True
                directories.append(directory)
            except OSError:
                pass  # another upload of the digest just now, or no hard links here:
                # commit() replaces or renames as before
        started = time.monotonic()
        try:
            fsync_together(self._fd, directories)
        except BaseException:
            if linked and _same_file(target, self._fd):
                os.unlink(target)  # never left behind by a push that failed
            raise
        if self._storage.on_publish_flush is not None:
            self._storage.on_publish_flush(time.monotonic() - started)
        if linked:
            self._linked = target
            self.published_early = True

    def commit(self, digest: str) -> None:
        target = self._storage._blob_file(digest)
        if self._linked == target and _same_file(target, self._fd):
            # stage() published these very bytes under the name, durably: the
            # upload's own name goes (a crash may leave it: an orphan upload).
            os.unlink(self._path)
            return
        directory = os.path.dirname(target)
        self._storage._make_dirs(directory)
        # Replace rather than keep a file already there: these bytes were just
        # hashed, that one may be a corrupt copy (pushing again must repair it).
        os.replace(self._path, target)
        if self._storage.fsync:
            _fsync_dir(directory)  # the new name survives a power cut before the 201


class FilesystemStorage(BlobStorage):
    def __init__(
        self, root: str, fsync: bool = True, direct_writes: bool = False,
        cache_new_blobs: bool = True, read_back_when_idle: bool = False,
        flush_ahead: bool = True, cache_upload_tail: int | None = None,
    ) -> None:
        self.root = os.path.abspath(root)
        self.fsync = fsync
        self.direct_writes = fsync and direct_writes  # storage/direct_write.py
        self.cache_new_blobs = cache_new_blobs  # read direct writes back (readahead)
        self.flush_ahead = flush_ahead  # cached writes: fdatasync while receiving
        # ... and then keep only an upload's last bytes in the page cache (None: all)
        self.cache_upload_tail = cache_upload_tail
        # Metrics hooks (runtime.py): the publishing flushes' seconds; a flush ahead started.
        self.on_publish_flush: Callable[[float], None] | None = None
        self.on_flush_ahead: Callable[[], None] | None = None
        self.on_upload_cache_drop: Callable[[], None] | None = None
        self._blobs = os.path.join(self.root, "blobs")
        self._uploads = os.path.join(self.root, "uploads")
        self._make_dirs(self._blobs)
        self._make_dirs(self._uploads)
        # With read_back_when_idle, read-backs of direct writes wait while uploads write
        # or large blobs are pulled (storage/write_gate.py).
        self.write_gate = (WriteGate(os.path.join(self._uploads, GATE_NAME))
                           if self.direct_writes and cache_new_blobs and read_back_when_idle
                           else None)

    def _make_dirs(self, path: str) -> None:
        """os.makedirs; with fsync, each new directory's entry is flushed in its parent."""
        if os.path.isdir(path):
            return
        parent = os.path.dirname(path)
        self._make_dirs(parent)
        try:
            os.mkdir(path)
        except FileExistsError:
            pass  # made meanwhile by another writer, which may not have flushed it yet
        if self.fsync:
            _fsync_dir(parent)

    def _make_dirs_unsynced(self, path: str) -> list[str]:
        """_make_dirs without its flushes: the parents to fsync (the caller does,
        before anything that depends on the new directories is recorded)."""
        if os.path.isdir(path):
            return []
        parent = os.path.dirname(path)
        pending = self._make_dirs_unsynced(parent)
        try:
            os.mkdir(path)
        except FileExistsError:
            pass  # made meanwhile by another writer, which may not have flushed it yet
        return [*pending, parent]

    # Paths are built only from validated digests and generated upload ids.
    def _blob_file(self, digest: str) -> str:
        algorithm, encoded = digest.split(":", 1)
        return os.path.join(self._blobs, algorithm, encoded[:2], encoded)

    def _upload_file(self, upload_id: str) -> str:
        if not _UPLOAD_ID_RE.match(upload_id):
            raise ValueError("bad upload id")
        return os.path.join(self._uploads, upload_id)

    def create_upload(self, upload_id: str) -> None:
        fd = os.open(self._upload_file(upload_id), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        os.close(fd)

    def upload_size(self, upload_id: str) -> int | None:
        try:
            return os.stat(self._upload_file(upload_id)).st_size
        except FileNotFoundError:
            return None

    @contextmanager
    def append_upload(
        self, upload_id: str, state: dict[str, Any] | None = None
    ) -> Iterator[UploadWriter]:
        path, flags = self._upload_file(upload_id), os.O_WRONLY | os.O_APPEND
        fd = open_direct(path, flags) if self.direct_writes else None
        direct = fd is not None
        if fd is None:
            fd = os.open(path, flags)
        writer = None
        gate = None
        try:
            # One writer at a time, whichever process: concurrent PATCHes to one
            # session must not interleave their bytes.
            fcntl.flock(fd, fcntl.LOCK_EX)
            gate = self.write_gate if direct else None
            if gate is not None:
                gate.enter()  # until the request's writes and fsync are done
            writer = _FileUploadWriter(self, upload_id, fd, direct)
            yield writer
            writer.flush()  # bytes written are in the file once the writer ends
        finally:
            # After a failure, what is still staged is dropped: the upload service
            # rolls the file back to the request's start anyway.
            if writer is not None:
                writer.close()
            if gate is not None:
                gate.leave()
            os.close(fd)

    def delete_upload(self, upload_id: str, state: dict[str, Any] | None = None) -> None:
        try:
            os.unlink(self._upload_file(upload_id))
        except FileNotFoundError:
            pass

    def list_uploads(self) -> Iterator[tuple[str, float]]:
        with os.scandir(self._uploads) as entries:
            for entry in entries:
                if entry.is_file() and _UPLOAD_ID_RE.match(entry.name):
                    try:
                        modified = entry.stat().st_mtime
                    except FileNotFoundError:
                        continue  # finished or cancelled meanwhile
                    yield entry.name, modified

    def blob_exists(self, digest: str) -> bool:
        return os.path.isfile(self._blob_file(digest))

    def blob_path(self, digest: str) -> str | None:
        return self._blob_file(digest)

    def open_blob(self, digest: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        with open(self._blob_file(digest), "rb") as f:
            while chunk := f.read(chunk_size):
                yield chunk

    def read_blob_range(
        self, digest: str, start: int, length: int, chunk_size: int = 1 << 20
    ) -> Iterator[bytes]:
        fd = os.open(self._blob_file(digest), os.O_RDONLY)  # now, not on first read

        def chunks() -> Iterator[bytes]:
            try:
                offset, end = start, start + length
                while offset < end:
                    chunk = os.pread(fd, min(chunk_size, end - offset), offset)
                    if not chunk:
                        raise OSError(f"blob {digest} is shorter than its recorded size")
                    offset += len(chunk)
                    yield chunk
            finally:
                os.close(fd)

        return chunks()

    def delete_blob(self, digest: str) -> None:
        try:
            os.unlink(self._blob_file(digest))
        except FileNotFoundError:
            pass

    def iter_blobs(self) -> Iterator[StoredBlob]:
        if not os.path.isdir(self._blobs):
            return
        for algorithm in sorted(os.listdir(self._blobs)):
            alg_dir = os.path.join(self._blobs, algorithm)
            for prefix in sorted(os.listdir(alg_dir)):
                with os.scandir(os.path.join(alg_dir, prefix)) as entries:
                    for entry in entries:
                        st = entry.stat()
                        yield StoredBlob(f"{algorithm}:{entry.name}", st.st_size, st.st_mtime)

    def check(self) -> None:
        # A real write, not os.access(): root passes every permission check.
        if not os.path.isdir(self._blobs):
            raise OSError(f"blob directory {self._blobs} is missing")
        probe = os.path.join(self._uploads, f".probe-{os.getpid()}")
        with open(probe, "wb") as f:
            f.write(b"ok")
        os.unlink(probe)

    def link_upload(self, upload_id: str, path: str) -> bool:
        # A hard link (same filesystem only): the bytes are shared, never written;
        # finishing the upload re-hashes them and renames only this name into place.
        target = self._upload_file(upload_id)
        temporary = f"{target}.link"
        try:
            os.link(path, temporary)
        except OSError:  # another filesystem, or links refused (protected_hardlinks)
            return False
        os.replace(temporary, target)
        return True
