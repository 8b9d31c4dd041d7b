"""Pages of the /v2 tags list kept in process, each under the repository's
``tags_version`` it was built at, and served again only while the database still
holds that version.

Triggers (migration 0018) add one to ``repositories.tags_version`` in the same
transaction as every tag created, deleted or renamed, whatever wrote it, so two
snapshots of a repository with the same version hold the same tag names. A page
is built by one statement that also reads the version (one snapshot on both
databases); every request reads the repository's row (id, creation time,
version) from the database before looking here, so a tag changed through another
worker or instance is seen at once: nothing here can be stale, only unused. The
creation time is part of the key because SQLite may give a deleted repository's
id to the next one it makes (its version starts again at 0).

Bounded by the bytes of the arrays held; the least recently read repository goes
first. One lock: a worker's threads share it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

Page = tuple[str, str | None, bool]  # JSON array text, its last tag, whether more follow
# A page is asked for by (n, last); n None: no limit.
PageKey = tuple[int | None, str]


class TagListCache:
    """Pages by repository (id, created_at), for one ``tags_version`` at a time."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        # (id, created_at) -> [version, {page key: page}, bytes of its pages]
        self._repos: OrderedDict[tuple[Any, Any], list[Any]] = OrderedDict()
        self._lock = threading.Lock()
        # Told of each lookup (True: served from here); runtime.py wires the metrics.
        self.record: Callable[[bool], None] | None = None

    def get(self, repo: tuple[Any, Any], version: int, key: PageKey) -> Page | None:
        with self._lock:
            entry = self._repos.get(repo)
            page = entry[1].get(key) if entry is not None and entry[0] == version else None
            if page is None:
                self.misses += 1
            else:
                self.hits += 1
                self._repos.move_to_end(repo)
        if self.record is not None:
            self.record(page is not None)
        return page

    def put(self, repo: tuple[Any, Any], version: int, key: PageKey, page: Page) -> None:
        size = len(page[0]) + len(key[1]) + 100  # the array dominates; the rest roughly
        if size > self.max_bytes:
            return
        with self._lock:
            entry = self._repos.get(repo)
            if entry is not None and entry[0] > version:
                return  # built from an older snapshot than what is kept: keep the newer
            if entry is None or entry[0] != version:
                if entry is not None:
                    self.bytes -= entry[2]
                entry = self._repos[repo] = [version, {}, 0]
            old = entry[1].get(key)
            if old is not None:
                return
            entry[1][key] = page
            entry[2] += size
            self.bytes += size
            self._repos.move_to_end(repo)
            while self.bytes > self.max_bytes and self._repos:
                _, (_, _, dropped) = self._repos.popitem(last=False)
                self.bytes -= dropped
