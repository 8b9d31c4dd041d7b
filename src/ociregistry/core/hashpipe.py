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

With ``write`` given (a writer that waits for the disk rather than for the CPU:
storage/direct_write.py), a second helper writes the chunks too, so that the
request thread only receives: a chunk's buffer is busy until both have it done.
It hands ``write`` every chunk waiting for it, up to ``WRITE_BATCH``, at once: a
writer behind the receiver then keeps several writes in flight on the device.

The order of bytes into the hash (and the file) is the order of the chunks; the
caller reads the hash only after ``drain()``, so the saved hash state is exactly what it was
when the hashing happened inline. A body of one chunk (small blobs, manifests'
config) is hashed inline: no thread is started for it.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import Any

# Buffers in the body reader's ring: chunks in flight between the request thread
# and the hasher (each up to web/body.py's BUFFER, 1 MiB).
BUFFERS = 4
# Chunks handed to ``write`` in one call at most (the rest of the ring keeps receiving).
WRITE_BATCH = 2


class HashPipeline:
    """Feeds ``hasher`` (and ``write``, if given) from helper threads; ``drain()``
    waits for the last chunk."""

    def __init__(self, hasher: Any, write: Callable[[list[Any]], None] | None = None) -> None:
        self.hasher = hasher
        self._write = write
        # One queue per helper: chunks it has yet to take care of, oldest first.
        self._queues: list[deque[Any]] = [deque()] + ([deque()] if write else [])
        self._cond = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._held: Any = None  # the first chunk, handled inline unless another follows
        self._closed = False
        self._error: BaseException | None = None

    def chunks(self, source: Iterable[Any]) -> Iterator[Any]:
        """``source``'s chunks, each to be passed to ``add()`` once written."""
        for chunk in source:
            yield chunk
            self._wait_room()

    def add(self, chunk: Any) -> None:
        if not self._threads:
            if self._held is None:
                self._held = chunk  # maybe the only one: no thread for it
                return
            works: list[tuple[Callable[[Any], None], int]] = [(self.hasher.update, 0)]
            if self._write is not None:
                works.append((self._write, WRITE_BATCH))
            for queue, (work, batch) in zip(self._queues, works, strict=True):
                queue.append(self._held)
                self._threads.append(threading.Thread(
                    target=self._run, args=(queue, work, batch), name="upload-hash",
                    daemon=True))
            self._held = None
            for thread in self._threads:
                thread.start()
        with self._cond:
            for queue in self._queues:
                queue.append(chunk)
            self._cond.notify_all()
        if self._error is not None:
            raise self._error

    def drain(self) -> Any:
        """Every added chunk hashed (and written); the hasher. Re-raises a helper's failure."""
        if self._held is not None:
            held, self._held = self._held, None
            if self._write is not None:
                self._write([held])
            self.hasher.update(held)
        self._stop(clear=False)
        if self._error is not None:
            raise self._error
        return self.hasher

    def abort(self) -> None:
        """Stop hashing and writing (what was done is rolled back by the caller) and wait
        for the helpers: none touches a buffer or the file after this returns."""
        self._stop(clear=True)
        self._held = None

    def _stop(self, clear: bool) -> None:
        with self._cond:
            if clear:
                for queue in self._queues:
                    queue.clear()
            self._closed = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join()
        self._threads = []

    def _wait_room(self) -> None:
        # The chunk about to be read reuses the buffer of the one BUFFERS back,
        # busy while any helper still has it.
        if not self._threads:
            return  # at most the held chunk is pending, and BUFFERS >= 2
        with self._cond:
            while (max(len(q) for q in self._queues) >= BUFFERS and self._error is None):
                self._cond.wait()
        if self._error is not None:
            raise self._error

    def _run(self, queue: deque[Any], work: Callable[[Any], None], batch: int) -> None:
        """Does ``work`` on each chunk of ``queue`` in order; with ``batch``, on a list
        of up to that many waiting chunks at a time."""
        while True:
            with self._cond:
                while not queue and not self._closed:
                    self._cond.wait()
                if not queue:
                    return
                taken = list(islice(queue, batch)) if batch else [queue[0]]
            try:
                work(taken if batch else taken[0])
            except BaseException as exc:  # reported to the request thread
                with self._cond:
                    if self._error is None:
                        self._error = exc
                    for other in self._queues:
                        other.clear()
                    self._cond.notify_all()
                return
            with self._cond:
                # Popped only once done: while in the deque, its buffer is busy.
                for _ in range(min(len(taken), len(queue))):
                    queue.popleft()
                self._cond.notify_all()
