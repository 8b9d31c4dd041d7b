"""Import a Distribution store into this registry: online, incremental, idempotent.

One pass lists the store (link files with their sizes, every blob with its
size), then each repository is imported in an order that never shows anything
half done:

1. blobs (its ``_layers`` links and whatever its manifests reference) are copied
   through the upload service (streamed, digest checked, committed one by one),
   or only linked when this registry already stores them;
2. manifests go through ``Registry.put_manifest`` by digest, images before the
   indexes that list them: a manifest becomes visible in one transaction, and
   only when every blob and child it references is there;
3. tags go through ``put_manifest`` by tag, so tag rules and history apply.

What is already here is skipped, so a second run after the switch-over picks up
only what changed, and a run killed at any point is simply run again (a blob
being copied at the kill is copied again; its upload session expires in GC).
Broken input (empty or dangling link files, missing blobs, manifests that do
not parse or whose digest is wrong) is reported with its path, never fatal.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ociregistry.core.actor import Actor, acting_as
from ociregistry.core.digests import is_digest, parse_digest
from ociregistry.core.errors import BlobUploadUnknown, RegistryError
from ociregistry.core.manifests import ParsedManifest, manifest_digest, parse_manifest
from ociregistry.core.names import validate_name, validate_tag
from ociregistry.core.registry import Registry
from ociregistry.importer.sources import Source
from ociregistry.importer.stats import ImportStats, Problem
from ociregistry.metadata import import_queries as q

IMPORT_ACTOR = Actor("system", name="import")


@dataclass
class _Repository:
    tags: dict[str, str] = field(default_factory=dict)  # tag -> link path
    revisions: dict[str, str] = field(default_factory=dict)  # digest -> link path
    layers: dict[str, str] = field(default_factory=dict)  # digest -> link path


def _link_digest(parts: list[str]) -> str | None:
    """``<alg>/<hex>/link`` -> ``<alg>:<hex>`` when well formed."""
    if len(parts) != 3 or parts[2] != "link":
        return None
    digest = f"{parts[0]}:{parts[1]}"
    try:
        parse_digest(digest)
    except RegistryError:
        return None
    return digest


class DistributionImporter:
    """Indexes a Distribution store into ``registry`` (see the module docstring)."""

    def __init__(
        self,
        registry: Registry,
        source: Source,
        progress: Callable[[ImportStats], None] | None = None,
        jobs: int = 4,
        link: bool = False,
    ) -> None:
        self.registry = registry
        self.db = registry.db
        self.storage = registry.storage
        self.source = source
        self.progress = progress or (lambda _stats: None)
        self.jobs = max(1, jobs)
        self.link = link  # hard-link blobs instead of copying, where the storage can
        self.stats = ImportStats()
        self._lock = threading.Lock()
        self._source_blobs: dict[str, int] = {}
        self._last_report = 0.0
        self._bytes_counted: set[str] = set()  # digests whose bytes count as done

    # -- reporting --------------------------------------------------------
    def _problem(self, kind: str, path: str, detail: str) -> None:
        with self._lock:
            self.stats.problems.append(Problem(kind, path, detail))

    def _tick(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last_report >= 1.0:
            self._last_report = now
            self.progress(self.stats)

    def _size(self, digest: str) -> int | None:
        """A source blob's size: from the listing, else asked now (pushed since)."""
        size = self._source_blobs.get(digest)
        if size is None:
            try:
                size = self.source.blob_size(digest)
            except OSError:
                return None
            if size is not None:
                with self._lock:
                    self._source_blobs[digest] = size
        return size

    def _count_bytes(self, digest: str, size: int) -> None:
        """Bytes done for a blob or manifest not copied (present, read): once each."""
        with self._lock:
            if digest not in self._bytes_counted:
                self._bytes_counted.add(digest)
                self.stats.bytes_done += size

    # -- the run ----------------------------------------------------------
    def run(self) -> ImportStats:
        with acting_as(IMPORT_ACTOR):
            repositories = self._scan()
            for name in sorted(repositories):
                self._import_repository(name, repositories[name])
                self.stats.repositories_done += 1
                self._tick()
        self._tick(force=True)
        return self.stats

    def _scan(self) -> dict[str, _Repository]:
        self._source_blobs = dict(self.source.blobs())
        repositories: dict[str, _Repository] = {}
        invalid: set[str] = set()
        for rel, size in self.source.repository_files():
            parts = rel.split("/")
            marks = [i for i, p in enumerate(parts) if p in ("_manifests", "_layers", "_uploads")]
            if not marks or parts[marks[0]] == "_uploads":
                continue
            at = marks[0]
            name, rest = "/".join(parts[:at]), parts[at:]
            if name not in repositories and name not in invalid:
                try:
                    validate_name(name)
                except RegistryError:
                    invalid.add(name)
                    self._problem("invalid-name", self.source.describe(name), "not importable")
                    continue
            if name in invalid:
                continue
            repo = repositories.setdefault(name, _Repository())
            kind = self._classify(rest)
            if kind is None:
                continue  # tag history (index/), other bookkeeping
            if size == 0:
                self._problem("empty-link", self.source.describe(rel),
                              "empty link file (left by a crash); ignored")
                continue
            if kind[0] == "tag":
                repo.tags[kind[1]] = rel
            elif kind[1] is None:
                self._problem("bad-link", self.source.describe(rel), "link path is no digest")
            elif kind[0] == "revision":
                repo.revisions[kind[1]] = rel
            else:
                repo.layers[kind[1]] = rel
        counted: set[str] = set()
        for repo in repositories.values():
            counted.update(repo.layers)
            counted.update(repo.revisions)
            self.stats.manifests_total += len(repo.revisions)
        self.stats.repositories_total = len(repositories)
        self.stats.bytes_total = sum(self._source_blobs.get(d, 0) for d in counted)
        return repositories

    @staticmethod
    def _classify(rest: list[str]) -> tuple[str, str | None] | None:
        # Exactly <alg>/<hex>/link: anything deeper (the signatures/ links of
        # stores older than 2.3) is bookkeeping, not a link of its own.
        if rest[0] == "_layers" and len(rest) == 4:
            return "layer", _link_digest(rest[1:])
        if len(rest) == 5 and rest[1] == "revisions":
            return "revision", _link_digest(rest[2:])
        if len(rest) == 5 and rest[1] == "tags" and rest[3:] == ["current", "link"]:
            return "tag", rest[2]
        return None

    # -- one repository ---------------------------------------------------
    def _import_repository(self, name: str, repo: _Repository) -> None:
        have_manifests, have_tags, have_blobs = q.repository_contents(self.db, name)
        targets = self._read_tags(name, repo)
        self._late_revisions(repo, targets)
        manifests = self._read_manifests(name, repo, have_manifests)
        needed: dict[str, str] = {d: self.source.describe(rel) for d, rel in repo.layers.items()}
        for digest, (_payload, parsed) in manifests.items():
            for blob in parsed.blobs:
                needed.setdefault(blob, f"blob of manifest {name}@{digest}")
        for digest in needed.keys() & have_blobs:  # linked here by an earlier run
            self.stats.blobs_present += 1
            self._count_bytes(digest, self._source_blobs.get(digest, 0))
        self._import_blobs(name, {d: w for d, w in needed.items() if d not in have_blobs})
        done = self._insert_manifests(name, manifests) | have_manifests
        self._set_tags(name, repo, targets, have_tags, done)
        # Revisions without a tag, other than an index's children: imported, and
        # listed, since they are reachable only by digest.
        reachable = set(targets.values())
        for _payload, parsed in manifests.values():
            reachable.update(parsed.children)
        for digest in sorted(set(manifests) - reachable):
            if digest in done:
                self.stats.untagged.append(f"{name}@{digest}")

    def _read_tags(self, name: str, repo: _Repository) -> dict[str, str]:
        targets: dict[str, str] = {}
        for tag, rel in sorted(repo.tags.items()):
            where = self.source.describe(rel)
            try:
                validate_tag(tag)
                content = self.source.read_repository_file(rel).decode("ascii").strip()
            except FileNotFoundError:
                continue  # the tag was deleted since the listing
            except (RegistryError, UnicodeDecodeError, ValueError) as exc:
                self._problem("bad-link", where, f"tag {tag!r}: {exc}")
                continue
            except Exception as exc:  # I/O of any kind (a file, an S3 GET): report, go on
                self._problem("unreadable-link", where, f"tag {tag!r}: {exc!r}")
                continue
            if not content:
                self._problem("empty-link", where, "empty link file (left by a crash); ignored")
                continue
            if not is_digest(content):
                self._problem("bad-link", where, f"tag {tag!r} link holds no digest")
                continue
            targets[tag] = content
        return targets

    def _late_revisions(self, repo: _Repository, targets: dict[str, str]) -> None:
        """A tag read now may point at a manifest pushed after the listing: take its
        revision if its link is there now (Distribution writes it before the tag)."""
        prefix = next(iter(repo.tags.values()), "").split("/_manifests/", 1)[0]
        for digest in set(targets.values()) - set(repo.revisions):
            algorithm, _, hexpart = digest.partition(":")
            rel = f"{prefix}/_manifests/revisions/{algorithm}/{hexpart}/link"
            try:
                if self.source.read_repository_file(rel).strip():
                    repo.revisions[digest] = rel
                    self.stats.manifests_total += 1
            except Exception:  # not there (a dangling tag, reported later) or unreadable
                continue

    def _read_manifests(
        self, name: str, repo: _Repository, have: set[str]
    ) -> dict[str, tuple[bytes, ParsedManifest]]:
        limit = self.registry.options.max_manifest_size
        found: dict[str, tuple[bytes, ParsedManifest]] = {}
        for digest, rel in sorted(repo.revisions.items()):
            if digest in have:
                self.stats.manifests_present += 1
                self._count_bytes(digest, self._source_blobs.get(digest, 0))
                self.stats.manifests_done += 1
                continue
            where = self.source.describe(rel)
            if self._size(digest) is None:
                self._problem("missing-blob", where, f"revision {digest}: its blob is missing")
                self.stats.manifests_done += 1
                continue
            try:
                payload = self.source.read_blob(digest, limit)
                if len(payload) > limit:
                    raise ValueError(f"larger than the {limit}-byte manifest limit")
                parsed = parse_manifest(payload, None)
                actual = manifest_digest(payload, parsed.media_type, parse_digest(digest)[0])
                if actual != digest:
                    raise ValueError(f"its bytes have digest {actual}")
            except RegistryError as exc:
                self._problem("unparsable-manifest", self.source.blob_location(digest),
                              f"{name}@{digest}: {exc.message} {exc.detail or ''}".strip())
                self.stats.manifests_done += 1
                continue
            except Exception as exc:  # too large, wrong digest, or any I/O failure
                self._problem("unreadable-manifest", self.source.blob_location(digest),
                              f"{name}@{digest}: {exc}")
                self.stats.manifests_done += 1
                continue
            found[digest] = (payload, parsed)
            self._count_bytes(digest, len(payload))
        return found

    def _import_blobs(self, name: str, needed: dict[str, str]) -> None:
        def one(digest: str) -> None:
            try:
                self._import_blob(name, digest, needed[digest])
            except Exception as exc:  # one bad blob must not stop the others
                self._problem("blob-failed", self.source.blob_location(digest), repr(exc))

        if self.jobs == 1 or len(needed) < 2:
            for digest in sorted(needed):
                one(digest)
            return
        with ThreadPoolExecutor(self.jobs, thread_name_prefix="import") as pool:
            list(pool.map(one, sorted(needed)))

    def _import_blob(self, name: str, digest: str, wanted_by: str) -> None:
        source_size = self._size(digest)
        size = q.link_stored_blob(self.db, name, digest, self.storage.blob_exists)
        if size is not None:
            with self._lock:
                self.stats.blobs_present += 1
            self._count_bytes(digest, source_size or 0)
            return
        if source_size is None:
            self._problem("missing-blob", wanted_by, f"{digest} is not in the store")
            return
        try:
            with acting_as(IMPORT_ACTOR):
                linked = self.link and self._link(name, digest)
                if not linked:
                    self.registry.uploads.monolithic(name, digest, self._counted(digest))
        except RegistryError as exc:  # DIGEST_INVALID: the stored bytes rotted
            kind = "corrupt-blob" if exc.code == "DIGEST_INVALID" else "blob-refused"
            self._problem(kind, self.source.blob_location(digest),
                          f"{exc.code} {exc.message} {exc.detail or ''}".strip())
            return
        with self._lock:
            if linked:
                self.stats.blobs_linked += 1
                self.stats.bytes_done += source_size
            else:
                self.stats.blobs_copied += 1
                self.stats.bytes_copied += source_size
            self._bytes_counted.add(digest)

    def _link(self, name: str, digest: str) -> bool:
        """Adopt the source's file by a hard link, through an upload session: the
        finish re-hashes it (the digest is checked) and publishes it as a push
        would. False (nothing done) when the storage can't link it."""
        path = self.source.local_path(digest)
        if path is None:
            return False
        uploads = self.registry.uploads
        state = uploads.start(name, parse_digest(digest)[0])
        try:
            if not self.storage.link_upload(state.id, path):
                uploads.cancel(name, state.id)
                return False
            uploads.finish(name, state.id, digest, [])
        except BlobUploadUnknown:
            # The link carries the source file's old mtime: a GC that listed it
            # before seeing the session row took it for an orphan. Copy instead.
            return False
        except RegistryError:
            raise  # finish dropped the session (a digest mismatch: only our link goes)
        except OSError:  # e.g. the file can't be opened here: copy it instead
            uploads.cancel(name, state.id)
            return False
        return True

    def _counted(self, digest: str) -> Iterator[bytes]:
        for chunk in self.source.open_blob(digest):
            with self._lock:
                self.stats.bytes_done += len(chunk)
            self._tick()
            yield chunk

    def _insert_manifests(
        self, name: str, manifests: dict[str, tuple[bytes, ParsedManifest]]
    ) -> set[str]:
        """Images first, then the indexes whose children are all in: a child that
        failed makes its index fail too (put_manifest refuses it)."""
        done: set[str] = set()
        pending = dict(manifests)
        while pending:
            ready = [d for d, (_p, parsed) in pending.items()
                     if not any(c in pending for c in parsed.children)]
            if not ready:  # a cycle can't be built with digests; stop rather than spin
                ready = list(pending)
            for digest in sorted(ready):
                payload, parsed = pending.pop(digest)
                self.stats.manifests_done += 1
                try:
                    self.registry.put_manifest(name, digest, payload, parsed.media_type)
                except RegistryError as exc:
                    self._problem("manifest-refused", self.source.blob_location(digest),
                                  f"{name}@{digest}: {exc.code} {exc.message} "
                                  f"{exc.detail or ''}".strip())
                    continue
                done.add(digest)
                self.stats.manifests_imported += 1
                self._tick()
        return done

    def _set_tags(
        self,
        name: str,
        repo: _Repository,
        targets: dict[str, str],
        have: dict[str, str],
        present: Iterable[str],
    ) -> None:
        present = set(present)
        for tag, digest in sorted(targets.items()):
            where = self.source.describe(repo.tags[tag])
            if have.get(tag) == digest:
                self.stats.tags_present += 1
                continue
            if digest not in repo.revisions:
                self._problem("dangling-tag", where,
                              f"tag {tag!r} points at {digest}, which has no revision link")
                continue
            if digest not in present:
                self._problem("tag-skipped", where,
                              f"tag {tag!r}: its manifest {digest} was not imported")
                continue
            row = self.db.get_manifest(name, digest, True)
            if row is None:  # deleted here meanwhile
                continue
            try:
                self.registry.put_manifest(name, tag, row.payload, row.media_type)
            except RegistryError as exc:  # e.g. an immutable tag here
                self._problem("tag-refused", where, f"tag {tag!r}: {exc.code} {exc.message}")
                continue
            self.stats.tags_imported += 1
