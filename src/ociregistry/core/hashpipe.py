"""Hashing a request body on a second core while the request thread receives and writes it.

A push costs per byte: receiving it (recv_into), writing it (os.write or an S3
part buffer) and hashing it (SHA-256, the largest share). All three release the
GIL on large buffers, so a helper thread that hashes chunk *n* while the request
thread receives and writes chunk *n + 1* uses two cores for one upload.

The chunks are views of the body reader's ring of reused buffers (web/body.py,
``ring=BUFFERS``): a chunk stays valid until ``BUFFERS`` more have been asked
for. ``HashPipeline.chunks`` only asks for the next one when fewer than
``BUFFERS`` chunks are waiting for the hash, so a buffer is never refilled under
the hasher, and memory stays at ``BUFFERS`` buffers per upload, whatever the
blob's size.

The order of bytes into the hash is the order of the chunks; the caller reads
the hash only after ``drain()``, so the saved hash state is exactly what it was
when the hashing happened inline. A body of one chunk (small blobs, manifests'
config) is hashed inline: no thread is started for it.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

# Buffers in the body reader's ring: chunks in flight between the request thread
# and the hasher (each up to web/body.py's BUFFER, 1 MiB).
BUFFERS = 4


class HashPipeline:
    """Feeds ``hasher`` from a helper thread; ``drain()`` waits for the last chunk."""

    def __init__(self, hasher: Any) -> None:
        self.hasher = hasher
        self._pending: deque[Any] = deque()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._held: Any = None  # the first chunk, hashed inline unless another follows
        self._closed = False
        self._error: BaseException | None = None

    def chunks(self, source: Iterable[Any]) -> Iterator[Any]:
        """``source``'s chunks, each to be passed to ``add()`` once written."""
        for chunk in source:
            yield chunk
            self._wait_room()

    def add(self, chunk: Any) -> None:
        if self._thread is None:
            if self._held is None:
                self._held = chunk  # maybe the only one: no thread for it
                return
            self._thread = threading.Thread(target=self._run, name="upload-hash", daemon=True)
            with self._cond:
                self._pending.append(self._held)
            self._held = None
            self._thread.start()
        with self._cond:
            self._pending.append(chunk)
            self._cond.notify_all()

    def drain(self) -> Any:
        """Every added chunk hashed; the hasher. Re-raises the hasher's failure."""
        if self._held is not None:
            self.hasher.update(self._held)
            self._held = None
        if self._thread is not None:
            with self._cond:
                self._closed = True
                self._cond.notify_all()
            self._thread.join()
            self._thread = None
        if self._error is not None:
            raise self._error
        return self.hasher

    def abort(self) -> None:
        """Stop hashing (the hash will be thrown away) and wait for the thread."""
        with self._cond:
            self._pending.clear()
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._held = None

    def _wait_room(self) -> None:
        # The chunk about to be read reuses the buffer of the one BUFFERS back.
        if self._thread is None:
            return  # at most the held chunk is unhashed, and BUFFERS >= 2
        with self._cond:
            while len(self._pending) >= BUFFERS and self._error is None:
                self._cond.wait()
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if not self._pending:
                    return
                chunk = self._pending[0]
            try:
                self.hasher.update(chunk)
            except BaseException as exc:  # reported to the request thread
                with self._cond:
                    self._error = exc
                    self._pending.clear()
                    self._cond.notify_all()
                return
            with self._cond:
                # Popped only once hashed: while in the deque, its buffer is busy.
                if self._pending:
                    self._pending.popleft()
                self._cond.notify_all()
