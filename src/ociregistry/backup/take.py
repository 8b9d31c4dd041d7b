"""``ociregistry backup DEST``: a consistent online backup of the embedded default.

1. Take the backup lease (GC then deletes no blob row: see metadata/backup_lease.py).
2. Snapshot the SQLite database with its online backup API: one read
   transaction, so pushes and GC go on; the copy is one consistent state.
3. Copy every blob the snapshot lists into DEST/blobs, hashing while streaming
   (a blob already there with the right size is not copied again).
4. Release the lease, then record the backup as complete (DEST/backup.json, last).
5. Remove the previous snapshot and the blobs no longer listed.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import sqlalchemy as sa

from ociregistry import __version__
from ociregistry.backup import layout
from ociregistry.backup.layout import BackupError
from ociregistry.backup.lease import LEASE_TTL, BackupLease
from ociregistry.runtime import Runtime

Progress = Callable[[str, int, int], None]


@dataclass
class BackupResult:
    snapshot: str
    blobs: int = 0
    blob_bytes: int = 0
    copied: int = 0
    copied_bytes: int = 0
    already_present: int = 0
    pruned: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


def sqlite_path(url: str) -> str:
    return os.path.abspath(sa.engine.make_url(url).database or "")


def require_embedded(runtime_settings: object) -> None:
    settings = runtime_settings
    url: str = settings.database_url  # type: ignore[attr-defined]
    driver: str = settings.storage.driver  # type: ignore[attr-defined]
    if not url.startswith("sqlite") or driver != "filesystem":
        raise BackupError(
            "backup and restore handle the embedded default (SQLite + filesystem); "
            f"this registry uses {url.split(':', 1)[0]} + {driver}: back up the database "
            "first, then the bucket, inside `ociregistry backup-lease` (docs/backup.md)"
        )


def require_apart(backup_dir: str, settings: object) -> None:
    """Refuse a backup directory that is, holds, or lies inside the registry's data:
    pruning it (or restoring from it) would then delete the registry's own files."""
    backup_dir = os.path.realpath(backup_dir)
    for place in {settings.storage_root, settings.data_dir}:  # type: ignore[attr-defined]
        place = os.path.realpath(place)
        if os.path.commonpath([backup_dir, place]) in (backup_dir, place):
            raise BackupError(f"{backup_dir} overlaps the registry's data ({place}): "
                              "keep backups in a directory of their own")


def snapshot_database(source: str, target: str) -> None:
    """Copy the live database into ``target`` in one read transaction (WAL: writers go on),
    then drop what a restored registry must not inherit: upload sessions (their
    bytes are not backed up) and cluster locks (the backup lease among them)."""
    src = sqlite3.connect(source, timeout=60)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)  # pages=-1: all in one step, one consistent snapshot
        dst.execute("DELETE FROM uploads")
        dst.execute("DELETE FROM locks")
        dst.commit()
        dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
    finally:
        dst.close()
        src.close()
    with open(target, "rb") as f:
        os.fsync(f.fileno())


def take_backup(
    runtime: Runtime,
    dest: str,
    progress: Progress | None = None,
    verify_existing: bool = False,
    lease_ttl: float = LEASE_TTL,
) -> BackupResult:
    require_embedded(runtime.settings)
    require_apart(dest, runtime.settings)
    progress = progress or (lambda *_: None)
    started = time.monotonic()
    dest = os.path.abspath(dest)
    snapshots = os.path.join(dest, "snapshots")
    os.makedirs(snapshots, exist_ok=True)
    layout.read_marker(dest)  # refuse a directory holding something else
    layout.write_atomic(
        os.path.join(dest, layout.IN_PROGRESS),
        json.dumps({"pid": os.getpid(), "host": os.uname().nodename, "started_at": time.time()})
        .encode(),
    )
    name = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + f"-{os.getpid()}.db"
    snapshot = os.path.join(snapshots, name)
    partial = snapshot + ".partial"
    result = BackupResult(snapshot=f"snapshots/{name}")
    with BackupLease(runtime.metadata, ttl=lease_ttl) as lease:
        progress("snapshot", 0, 1)
        taken_at = time.time()
        snapshot_database(sqlite_path(runtime.settings.database_url), partial)
        progress("snapshot", 1, 1)
        blobs = layout.snapshot_blobs(partial)
        directories = set()
        for i, (digest, size) in enumerate(blobs, 1):
            target = layout.blob_file(dest, digest)
            result.blobs += 1
            result.blob_bytes += size
            if _present(target, digest, size, verify_existing):
                result.already_present += 1
            else:
                result.copied_bytes += _copy_blob(runtime, digest, size, target)
                result.copied += 1
                # the file's directory, and the <xx> and <alg> ones it may have made
                directories.add(os.path.dirname(target))
                directories.add(os.path.dirname(os.path.dirname(target)))
                directories.add(os.path.dirname(os.path.dirname(os.path.dirname(target))))
            progress("blobs", i, len(blobs))
        for directory in sorted(directories):  # the new names outlive a power cut
            layout.fsync_dir(directory)
        if lease.lost:
            raise BackupError("the backup lease was lost during the copy (the database "
                              "was unreachable for too long): run the backup again")
    os.replace(partial, snapshot)
    layout.fsync_dir(snapshots)
    marker = {
        "format": layout.FORMAT,
        "ociregistry": __version__,
        "created_at": taken_at,  # the state it holds is the registry's at this time
        "snapshot": result.snapshot,
        "snapshot_digest": layout.file_digest(snapshot),
        "snapshot_size": os.path.getsize(snapshot),
        "schema_revision": layout.schema_revision(snapshot),
        "blobs": result.blobs,
        "blob_bytes": result.blob_bytes,
    }
    layout.write_atomic(os.path.join(dest, layout.MARKER), json.dumps(marker, indent=1).encode())
    result.pruned = _prune(dest, {d for d, _ in blobs}, name)
    os.unlink(os.path.join(dest, layout.IN_PROGRESS))
    result.seconds = round(time.monotonic() - started, 3)
    return result


def _present(target: str, digest: str, size: int, verify: bool) -> bool:
    try:
        if os.path.getsize(target) != size:
            return False
    except FileNotFoundError:
        return False
    return not verify or layout.file_digest(target, digest.split(":", 1)[0]) == digest


def _copy_blob(runtime: Runtime, digest: str, size: int, target: str) -> int:
    try:
        return layout.copy_verified(runtime.storage.open_blob(digest), target, digest, size)
    except FileNotFoundError:
        raise BackupError(
            f"blob {digest} is in the database but its bytes are missing from storage: "
            "run `ociregistry check` (its --repair drops the row, and pushing the image "
            "again restores it)"
        ) from None
    except BackupError as exc:
        raise BackupError(f"{exc}: the registry's copy is corrupt; run `ociregistry check`") \
            from None


def _prune(dest: str, listed: set[str], snapshot: str) -> int:
    """Remove what the new record no longer names: older snapshots and their blobs."""
    snapshots = os.path.join(dest, "snapshots")
    for entry in os.listdir(snapshots):
        if entry != snapshot:
            path = os.path.join(snapshots, entry)
            shutil.rmtree(path) if os.path.isdir(path) else os.unlink(path)
    pruned = 0
    for digest, path in layout.walk_blob_files(dest):
        if digest not in listed:  # includes leftovers of a killed copy (*.partial-<pid>)
            os.unlink(path)
            pruned += 1
    return pruned
