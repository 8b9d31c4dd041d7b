"""Whether uploads are being written to a storage root right now, across processes.

A blob written around the page cache (storage/direct_write.py) is read back into the
cache afterwards, so that a pull right after the push finds it there. On the bench
machine that read-back is a second pass over the disk: the device shares its
bandwidth between the reads and the uploads' writes, and a 256 MiB push (without
HTTP, bench/push_pipeline.py) reached 394-559 MiB/s with its read-back beside it
against 568-819 without. With ``storage.read_back_when_idle`` the read-back thread
waits while any upload of the same storage root is writing, or a large blob is being
pulled, in this process or another worker, and reads when the disk is left to it (or
once a range has waited ``MAX_DEFER`` seconds: a registry that is never idle reads
back as it did before). The price: a pull right after the push reads the disk, which
is why it is off by default (docs/performance.md, "Pushes, round three").

The signal is a ``flock`` on one file under the storage root: every process writing
an upload (or sending a large blob) holds a shared lock on it, taken by its first
such request and dropped by its last, and the read-back thread asks for an exclusive
one without waiting, through a descriptor of its own (flock locks belong to open file
descriptions, so the two conflict within one process too), and lets it go at once.
Neither side ever blocks on the other: a writer that finds the file locked
exclusively (the reader's instant) goes on without the shared lock; the gate is only
a hint.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from typing import Any

NAME = ".write-gate"  # in the storage root's uploads directory (list_uploads skips it)
MAX_DEFER = 10.0  # seconds a queued read-back waits for the disk, at most
POLL = 0.005  # seconds between looks; idle means idle at two looks in a row


class WriteGate:
    """The gate of one storage root (one object per FilesystemStorage)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._writers = 0
        self._fd: int | None = None  # the writers' descriptor (shared lock)
        self._probe: int | None = None  # the read-back thread's (exclusive, non-blocking)
        self._pid = os.getpid()

    def _own(self) -> None:
        # A descriptor inherited across fork shares its open file description, and with
        # it the lock, with the parent: each process opens its own.
        if self._pid != os.getpid():
            self._pid, self._writers = os.getpid(), 0
            self._fd = self._probe = None

    def _open(self) -> int | None:
        try:
            return os.open(self.path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError:  # a read-only or full file system: no gate, read back at once
            return None

    def enter(self) -> None:
        """An upload of this process starts writing."""
        with self._lock:
            self._own()
            self._writers += 1
            if self._writers > 1:
                return
            if self._fd is None:
                self._fd = self._open()
            if self._fd is not None:
                try:
                    fcntl.flock(self._fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                except OSError:  # the reader's instant of looking: a hint missed
                    pass

    def leave(self) -> None:
        """That upload has written (and synced) its bytes."""
        with self._lock:
            self._own()
            if self._writers == 0:
                return
            self._writers -= 1
            if self._writers == 0 and self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def busy(self) -> bool:
        """Whether an upload of any process holds the gate now."""
        with self._lock:
            self._own()
            if self._probe is None:
                self._probe = self._open()
            probe = self._probe
        if probe is None:
            return False
        try:
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        except OSError:
            return False
        fcntl.flock(probe, fcntl.LOCK_UN)
        return False

    def wait_idle(self, deadline: float) -> None:
        """Returns once no upload writes (seen twice, ``POLL`` apart: the gap between
        two PATCHes of one push is not idle) or at ``deadline`` (time.monotonic())."""
        quiet = 0
        while quiet < 2 and time.monotonic() < deadline:
            if self.busy():
                quiet = 0
            else:
                quiet += 1
                if quiet == 2:
                    return
            time.sleep(POLL)


PULL_MIN = 8 << 20  # a GET of a blob from this size on holds the gate


class GatedFile:
    """A large blob file opened for a GET: while it is being sent, read-backs wait (as
    for an upload: the disk may be reading this very file, which read-backs of other
    blobs would slow down). ``fileno`` is what the server's sendfile needs; ``close``
    gives the gate back."""

    def __init__(self, file: Any, gate: WriteGate | None) -> None:
        self._file = file
        self._gate = gate
        if gate is not None:
            gate.enter()

    def fileno(self) -> int:
        return self._file.fileno()

    def read(self, size: int = -1) -> bytes:
        return self._file.read(size)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()

    def close(self) -> None:
        gate, self._gate = self._gate, None
        try:
            self._file.close()
        finally:
            if gate is not None:
                gate.leave()

    @property
    def closed(self) -> bool:
        return bool(self._file.closed)


def opened_for_pull(storage: Any, path: str, size: int) -> Any:
    """``path`` (a blob of ``storage``) opened for a GET: from PULL_MIN bytes on a
    GatedFile where the storage has a write gate (the filesystem driver with
    ``read_back_when_idle``), else the plain file as before."""
    file = open(path, "rb")  # noqa: SIM115 (the caller's server closes it)
    gate = getattr(storage, "write_gate", None)
    if size < PULL_MIN or gate is None:
        return file
    try:
        return GatedFile(file, gate)
    except BaseException:
        file.close()
        raise
