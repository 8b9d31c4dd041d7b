"""``ociregistry restore SRC``: rebuild a data directory from a backup, and
``ociregistry restore --reconcile``: tidy a registry whose database and bucket
were restored by hand (the PostgreSQL + S3 deployment, docs/backup.md).

Restore refuses a backup without its completion record (an interrupted run), a
snapshot whose digest is not the recorded one, and a blob whose bytes do not
hash to its digest. The database is put in place last: until then the data
directory holds no registry.db (or the old one, with --force), and a
``restore-in-progress`` file that lets the same restore run again.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from ociregistry.backup import layout
from ociregistry.backup.layout import BackupError
from ociregistry.backup.take import require_apart, require_embedded, sqlite_path
from ociregistry.config import Settings
from ociregistry.metadata import gc_queries
from ociregistry.runtime import Runtime

Progress = Callable[[str, int, int], None]
RESUME = "restore-in-progress"


@dataclass
class RestoreResult:
    blobs: int = 0
    bytes: int = 0
    already_present: int = 0
    removed_files: int = 0
    snapshot_created_at: float = 0.0
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


def load_backup(src: str) -> tuple[dict, str]:
    """The completion record and the verified snapshot path, or BackupError."""
    marker = layout.read_marker(src)
    if marker is None:
        interrupted = os.path.exists(os.path.join(src, layout.IN_PROGRESS))
        raise BackupError(
            f"{src} holds no complete backup (no {layout.MARKER}"
            + (": a backup into it was interrupted or is still running)" if interrupted else ")")
        )
    snapshot = os.path.join(src, marker["snapshot"])
    if not os.path.isfile(snapshot) or os.path.getsize(snapshot) != marker["snapshot_size"]:
        raise BackupError(f"the backup's database snapshot {marker['snapshot']} is missing "
                          "or truncated")
    if layout.file_digest(snapshot) != marker["snapshot_digest"]:
        raise BackupError(f"the backup's database snapshot {marker['snapshot']} does not "
                          "match its recorded digest: it was altered or damaged")
    revision = marker.get("schema_revision")
    if revision is not None and revision not in _known_revisions():
        raise BackupError(f"the backup's schema ({revision}) is newer than this version of "
                          f"ociregistry knows (backup made by {marker.get('ociregistry')}): "
                          "restore with that version or a later one")
    return marker, snapshot


def _known_revisions() -> set[str]:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from ociregistry.metadata.migrate import MIGRATIONS

    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    return {script.revision for script in ScriptDirectory.from_config(config).walk_revisions()}


def _has_data(db_path: str, root: str) -> bool:
    if os.path.exists(db_path):
        return True
    return any(True for _ in layout.walk_blob_files(root))


def restore_backup(
    settings: Settings, src: str, force: bool = False, progress: Progress | None = None
) -> RestoreResult:
    require_embedded(settings)
    require_apart(src, settings)
    progress = progress or (lambda *_: None)
    started = time.monotonic()
    src = os.path.abspath(src)
    marker, snapshot = load_backup(src)
    db_path = sqlite_path(settings.database_url)
    root = settings.storage_root
    data_dir = os.path.abspath(settings.data_dir)
    resume = os.path.join(data_dir, RESUME)
    if not force and not os.path.exists(resume) and _has_data(db_path, root):
        raise BackupError(
            f"{data_dir} already holds a registry: restore into an empty data directory, "
            "or pass --force to replace it (its blobs not in the backup are deleted)"
        )
    os.makedirs(data_dir, exist_ok=True)
    layout.write_atomic(resume, src.encode())
    result = RestoreResult(snapshot_created_at=marker["created_at"])
    blobs = layout.snapshot_blobs(snapshot)
    directories: set[str] = set()
    for i, (digest, size) in enumerate(blobs, 1):
        target = layout.blob_file(root, digest)
        result.blobs += 1
        result.bytes += size
        if _verified(target, digest, size):
            result.already_present += 1
        else:
            source = layout.blob_file(src, digest)
            if not os.path.isfile(source):
                raise BackupError(f"blob {digest} is missing from the backup")
            try:
                layout.copy_verified(layout.read_file(source), target, digest, size)
            except BackupError as exc:
                raise BackupError(f"the backup's copy is damaged, nothing restored: {exc}") \
                    from None
            directory = os.path.dirname(target)
            directories.update((directory, os.path.dirname(directory),
                                os.path.dirname(os.path.dirname(directory))))
        progress("blobs", i, len(blobs))
    for directory in sorted(directories):  # the blobs' names outlive a power cut
        layout.fsync_dir(directory)
    listed = {digest for digest, _ in blobs}
    for digest, path in list(layout.walk_blob_files(root)):
        if digest not in listed:  # the replaced registry's, or a killed copy's leftovers
            os.unlink(path)
            result.removed_files += 1
    shutil.rmtree(os.path.join(root, "uploads"), ignore_errors=True)
    _place_database(snapshot, db_path)
    os.unlink(resume)
    layout.fsync_dir(data_dir)
    result.seconds = round(time.monotonic() - started, 3)
    return result


def _verified(target: str, digest: str, size: int) -> bool:
    """A blob file already in place with the right bytes (a resumed restore)."""
    try:
        if os.path.getsize(target) != size:
            return False
    except FileNotFoundError:
        return False
    return layout.file_digest(target, digest.split(":", 1)[0]) == digest


def _place_database(snapshot: str, db_path: str) -> None:
    incoming = db_path + ".restoring"
    shutil.copyfile(snapshot, incoming)
    with open(incoming, "rb") as f:
        os.fsync(f.fileno())
    for suffix in ("-wal", "-shm", "-journal"):  # the replaced database's, if any
        if os.path.exists(db_path + suffix):
            os.unlink(db_path + suffix)
    os.replace(incoming, db_path)
    layout.fsync_dir(os.path.dirname(db_path))


def reconcile(runtime: Runtime, progress: Progress | None = None) -> tuple[int, int]:
    """After a database and a bucket were restored by hand, before serving: drop every
    upload session (its parts were not backed up) and every blob object that no row
    records (pushed after the database dump). Returns (sessions, files) removed."""
    progress = progress or (lambda *_: None)
    db, storage = runtime.metadata, runtime.storage
    sessions = db.stale_uploads(time.time() + 86400)
    for i, upload_id in enumerate(sessions, 1):
        storage.delete_upload(upload_id)
        with db.write() as conn:
            db.delete_upload(conn, upload_id)
        progress("uploads", i, len(sessions))
    for upload_id, _modified in list(storage.list_uploads()):
        storage.delete_upload(upload_id)
    known = gc_queries.known_blobs(db)
    removed = 0
    for stored in storage.iter_blobs():
        if stored.digest not in known and gc_queries.remove_unrecorded_bytes(
            db, stored.digest, storage.delete_blob
        ):
            removed += 1
    progress("files", removed, removed)
    return len(sessions), removed
