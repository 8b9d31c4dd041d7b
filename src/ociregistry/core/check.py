"""Integrity check: blob bytes match their digests, and metadata and storage agree.

Problems found, and what --repair does with each:
- corrupt blob (bytes don't hash to the digest): row dropped, then bytes moved to
  quarantine/ (left alone if a push of that digest touched it while checked)
- missing blob (row, no bytes): row dropped, so clients push it again (unless the
  bytes came back meanwhile)
- orphan blob file (bytes, no row), older than a minute: deleted (a younger one is
  not reported: a publication links the blob's name before its row commits,
  storage/durable.py, so it may be a push in flight or one a crash just cut short,
  which GC or a later check removes)
- stray upload file (no session row), older than an hour: deleted
- upload session without its file: row dropped
- manifest whose bytes don't match its digest: reported (not repairable)
- manifest referencing a blob with no row: reported; pushing the blob again fixes it
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ociregistry.core.digests import new_hasher
from ociregistry.core.manifests import manifest_digest
from ociregistry.metadata import ops_queries as q
from ociregistry.metadata.gc_queries import remove_unrecorded_bytes
from ociregistry.metadata.store import MetadataStore
from ociregistry.storage.base import BlobStorage

Progress = Callable[[str, int, int], None]
ORPHAN_MIN_AGE = 60.0
STRAY_UPLOAD_MIN_AGE = 3600.0
RACED = "; pushed again while being checked: left alone, check again"


@dataclass
class Problem:
    kind: str
    subject: str
    detail: str
    repaired: bool = False


@dataclass
class CheckReport:
    blobs_checked: int = 0
    bytes_checked: int = 0
    manifests_checked: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def unrepaired(self) -> list[Problem]:
        return [p for p in self.problems if not p.repaired]


class IntegrityChecker:
    def __init__(
        self, metadata: MetadataStore, storage: BlobStorage, quarantine_dir: str | None = None
    ) -> None:
        self.db = metadata
        self.storage = storage
        self.quarantine_dir = quarantine_dir

    def run(self, repair: bool = False, progress: Progress | None = None) -> CheckReport:
        progress = progress or (lambda *_: None)
        report = CheckReport()
        self._check_blobs(report, repair, progress)
        self._check_orphans(report, repair)
        self._check_uploads(report, repair)
        self._check_manifests(report, progress)
        for repo, manifest, blob in q.dangling_references(self.db):
            report.problems.append(
                Problem("dangling-reference", blob, f"{repo}@{manifest} references it")
            )
        return report

    def _check_blobs(self, report: CheckReport, repair: bool, progress: Progress) -> None:
        total = q.count_blob_rows(self.db)
        for i, (digest, size) in enumerate(q.iter_blob_rows(self.db), 1):
            progress("blobs", i, total)
            report.blobs_checked += 1
            # Each repair re-checks under the digest's lock, which an upload of the
            # same digest holds while it publishes: a client pushing the blob again
            # meanwhile must keep what its 201 promised.
            touched_at = q.blob_touched_at(self.db, digest)
            if not self.storage.blob_exists(digest):
                problem = Problem("missing-blob", digest, self._users(digest))
                if repair:
                    problem.repaired = q.forget_missing_blob(
                        self.db, digest, self.storage.blob_exists
                    )
                    if not problem.repaired:
                        problem.detail += RACED
                report.problems.append(problem)
                continue
            algorithm = digest.split(":", 1)[0]
            hasher = new_hasher(algorithm)
            length = 0
            for chunk in self.storage.open_blob(digest):
                hasher.update(chunk)
                length += len(chunk)
            report.bytes_checked += length
            actual = f"{algorithm}:{hasher.hexdigest()}"
            if actual != digest or length != size:
                problem = Problem(
                    "corrupt-blob",
                    digest,
                    f"bytes hash to {actual}, {length} bytes (index says {size}); "
                    + self._users(digest),
                )
                if repair and touched_at is not None:
                    # The row goes first; the bytes after its commit, unless a push
                    # recorded the blob again in between (then they are new bytes).
                    if q.forget_blob_untouched_since(self.db, digest, touched_at):
                        remove_unrecorded_bytes(self.db, digest, self._quarantine)
                        problem.repaired = True
                    else:
                        problem.detail += RACED
                report.problems.append(problem)

    def _users(self, digest: str) -> str:
        count = q.manifests_referencing(self.db, digest)
        if not count:
            return "no manifest references it"
        return f"{count} manifest(s) reference it: push the image again to restore it"

    def _quarantine(self, digest: str) -> None:
        path = self.storage.blob_path(digest)
        if path and self.quarantine_dir:
            os.makedirs(self.quarantine_dir, exist_ok=True)
            name = f"{digest.replace(':', '-')}.{time.time():.0f}"
            target = os.path.join(self.quarantine_dir, name)
            os.replace(path, target)
        else:
            self.storage.delete_blob(digest)

    def _check_orphans(self, report: CheckReport, repair: bool) -> None:
        known = {digest for digest, _ in q.iter_blob_rows(self.db)}
        now = time.time()
        for stored in self.storage.iter_blobs():
            if stored.digest in known or stored.modified >= now - ORPHAN_MIN_AGE:
                continue
            problem = Problem(
                "orphan-blob-file", stored.digest, f"{stored.size} bytes, no index row"
            )
            if repair:
                problem.repaired = remove_unrecorded_bytes(
                    self.db, stored.digest, self.storage.delete_blob
                )
            report.problems.append(problem)

    def _check_uploads(self, report: CheckReport, repair: bool) -> None:
        rows = q.upload_rows(self.db)
        files = dict(self.storage.list_uploads())
        now = time.time()
        for upload_id, modified in files.items():
            if upload_id in rows:
                continue
            problem = Problem("stray-upload-file", upload_id, "partial upload with no session")
            if repair and modified < now - STRAY_UPLOAD_MIN_AGE:
                self.storage.delete_upload(upload_id)
                problem.repaired = True
            report.problems.append(problem)
        for upload_id in rows:
            # Drivers tracking uploads in the row store nothing before the first part.
            if self.storage.tracks_uploads or upload_id in files:
                continue
            if self.storage.upload_size(upload_id) is not None:
                continue
            problem = Problem("upload-without-file", upload_id, "session whose bytes are gone")
            if repair:
                q.delete_upload_row(self.db, upload_id)
                problem.repaired = True
            report.problems.append(problem)

    def _check_manifests(self, report: CheckReport, progress: Progress) -> None:
        for manifest_id, digest, media_type, payload in q.iter_manifests(self.db):
            report.manifests_checked += 1
            algorithm = digest.split(":", 1)[0]
            try:
                actual = manifest_digest(payload, media_type, algorithm)
            except Exception as exc:  # unparsable signature: as corrupt as a wrong digest
                actual = f"unreadable ({exc})"
            if actual != digest:
                report.problems.append(
                    Problem("corrupt-manifest", digest, f"id {manifest_id}: bytes give {actual}")
                )
        progress("manifests", report.manifests_checked, report.manifests_checked)
