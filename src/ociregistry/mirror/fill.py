"""Blobs through the cache: stream-through on a miss, one fetch across the cluster.

A miss takes the fill lease of the blob (``mirror_fills``, one row per digest):
the winner opens the upstream GET and hands its body to a background thread that
writes it through the normal upload path (hashed as it streams, published only
when the digest matches) while passing each chunk on to the client through a
small bounded queue. The client hanging up (or stalling) detaches it; the fill
goes on for the others. Workers and instances that lose the lease poll until the
blob is committed, then serve it from storage (linked into their repository by a
mount). A blob is never held whole in memory: at most QUEUE_CHUNKS chunks wait.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass

from ociregistry import metrics
from ociregistry.core.digests import parse_digest
from ociregistry.core.errors import BlobUnknown, SizeInvalid
from ociregistry.core.registry import BlobInfo
from ociregistry.metadata import mirror_queries as q
from ociregistry.mirror.outcomes import Outcomes
from ociregistry.mirror.routing import Route
from ociregistry.mirror.upstream import UpstreamError

log = logging.getLogger(__name__)

CHUNK = 256 * 1024
QUEUE_CHUNKS = 32  # at most 8 MiB in flight to one client


@dataclass
class StreamedBlob:
    """A blob on its way from upstream: ``chunks`` as they arrive (raises if the fill fails)."""

    digest: str
    size: int | None
    chunks: Iterator[bytes]


class IncompleteBlob(Exception):
    """The fill failed after the response began: the client's body must stop short."""


class _Handoff:
    """Chunks from the fill thread to the client that started it."""

    _DONE = object()

    def __init__(self, stall_seconds: float) -> None:
        self.queue: queue.Queue = queue.Queue(QUEUE_CHUNKS)
        self.detached = threading.Event()
        self.stall = stall_seconds

    def put(self, item: object) -> None:
        if self.detached.is_set():
            return
        try:
            self.queue.put(item, timeout=self.stall)
        except queue.Full:
            # A client that reads nothing for this long is let go; the fill goes on.
            self.detached.set()

    def chunks(self) -> Iterator[bytes]:
        try:
            while True:
                try:
                    item = self.queue.get(timeout=self.stall)
                except queue.Empty:
                    raise IncompleteBlob("upstream stalled") from None
                if item is self._DONE:
                    return
                if isinstance(item, BaseException):
                    raise IncompleteBlob(str(item))
                yield item
        finally:
            self.detached.set()  # finished, failed or hung up: the fill stops feeding
            while not self.queue.empty():
                self.queue.get_nowait()


class BlobFills:
    def __init__(self, service: Outcomes) -> None:
        self.service = service
        self.registry = service.registry
        self.db = service.registry.db
        self.settings = service.settings

    def blob(self, route: Route, digest: str, head: bool) -> BlobInfo | StreamedBlob:
        """The blob from the cache (a BlobInfo, as for any repository) or on its way."""
        parse_digest(digest)
        local = route.local_name
        size = self.db.repository_blob_size(local, digest)
        if size is not None:
            self.service.count(route, "blob", "hit")
            return BlobInfo(digest, size, self.registry.storage.blob_path(digest))
        if self._mount(route, digest):
            return self.registry.blob(local, digest)
        self.service.check_negative(route, digest, BlobUnknown)
        if head:
            return self._head(route, digest)
        key = f"blob:{digest}"
        deadline = time.monotonic() + self.settings.wait_seconds
        pause = 0.05
        while True:
            token = uuid.uuid4().hex
            if q.take_fill(self.db, key, token, route.upstream.name,
                           self.settings.fill_lease_seconds):
                if self._mount(route, digest):  # committed just before we took the lease
                    q.release_fill(self.db, key, token)
                    return self.registry.blob(local, digest)
                return self._start(route, digest, key, token)
            if time.monotonic() > deadline:
                raise self.service.unavailable(route, UpstreamError(
                    "the blob is still being fetched by another worker", "busy"))
            time.sleep(pause)
            pause = min(pause * 1.5, 1.0)
            if self._mount(route, digest):
                self.service.count(route, "blob", "hit")
                return self.registry.blob(local, digest)

    def _mount(self, route: Route, digest: str) -> bool:
        """Link a blob the registry already holds (another upstream, another fill)."""
        return self.registry.uploads.mount(route.local_name, digest, None) is not None

    def _head(self, route: Route, digest: str) -> BlobInfo:
        client = self.service.client(route.upstream)
        url = client.url(route.remote_name, "blobs", digest)
        try:
            self.service.check_rate_limited(route)
            with client.open("HEAD", url, client.scope(route.remote_name)) as response:
                status = response.status_code
                length = response.headers.get("Content-Length", "")
        except UpstreamError as exc:
            raise self.service.failed(route, exc) from exc
        if status == 404:
            self.service.not_found(route, digest, BlobUnknown)
        if status != 200 or not length.isdigit():
            raise self.service.failed(route, self.service.status_error(route, status, None))
        self.service.succeeded(route, client)
        self.service.count(route, "blob", "miss")
        return BlobInfo(digest, int(length), None)

    def _start(self, route: Route, digest: str, key: str, token: str) -> StreamedBlob:
        client = self.service.client(route.upstream)
        stack = ExitStack()
        try:
            self.service.check_rate_limited(route)
            response = stack.enter_context(client.open(
                "GET", client.url(route.remote_name, "blobs", digest),
                client.scope(route.remote_name)))
            status = response.status_code
            if status == 404:
                self.service.not_found(route, digest, BlobUnknown)
            if status != 200:
                raise self.service.failed(route, self.service.status_error(
                    route, status, response.headers.get("Retry-After")))
            length = response.headers.get("Content-Length", "")
            size = int(length) if length.isascii() and length.isdigit() else None
            limit = self.registry.options.max_blob_size
            if limit and size is not None and size > limit:
                raise SizeInvalid("the upstream blob is larger than this registry accepts",
                                  {"size": size, "max": limit}, status=413)
        except UpstreamError as exc:
            stack.close()
            q.release_fill(self.db, key, token)
            raise self.service.failed(route, exc) from exc
        except BaseException:
            stack.close()
            q.release_fill(self.db, key, token)
            raise
        self.service.succeeded(route, client)
        self.service.count(route, "blob", "miss")
        handoff = _Handoff(max(route.upstream.read_timeout, 30.0))
        thread = threading.Thread(
            target=self._fill, args=(route, digest, key, token, response, size, stack, handoff),
            name=f"mirror-fill-{digest[7:19]}", daemon=True)
        thread.start()
        return StreamedBlob(digest, size, handoff.chunks())

    def _fill(self, route: Route, digest: str, key: str, token: str, response: object,
              size: int | None, stack: ExitStack, handoff: _Handoff) -> None:
        lease = self.settings.fill_lease_seconds
        done = 0
        outcome: object = _Handoff._DONE

        def tee() -> Iterator[bytes]:
            nonlocal done
            renewed = time.monotonic()
            for chunk in response.raw.stream(CHUNK, decode_content=False):  # type: ignore
                done += len(chunk)
                metrics.MIRROR_UPSTREAM_BYTES.labels(route.upstream.name).inc(len(chunk))
                handoff.put(chunk)
                if time.monotonic() - renewed > lease / 3:
                    q.renew_fill(self.db, key, token, lease, done)
                    renewed = time.monotonic()
                yield chunk
            if size is not None and done != size:
                raise IncompleteBlob(f"upstream sent {done} of {size} bytes")

        try:
            self.registry.uploads.monolithic(route.local_name, digest, tee())
            log.info("mirror %s: cached %s@%s (%d bytes)", route.upstream.name,
                     route.local_name, digest, done)
        except BaseException as exc:  # noqa: BLE001 - logged; the client's body stops short
            log.warning("mirror %s: fill of %s@%s failed after %d bytes: %s",
                        route.upstream.name, route.local_name, digest, done, exc)
            outcome = exc if isinstance(exc, Exception) else IncompleteBlob("stopped")
        finally:
            stack.close()
            # The client's body ends now: the blob is committed (or the fill failed);
            # giving the lease back is bookkeeping it need not wait for (waiters find
            # the committed blob by mounting it, not by the lease).
            handoff.put(outcome)
            q.release_fill(self.db, key, token)
