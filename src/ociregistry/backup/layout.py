"""The backup directory, and copying bytes with their digest checked.

    DEST/backup.json        completion record: written last, atomically (rename)
    DEST/in-progress        present while a backup runs (left behind if it died)
    DEST/snapshots/<id>.db  the database snapshot backup.json names
    DEST/blobs/<alg>/<xx>/<hex>   blobs, shared by successive backups

A backup killed at any point leaves either no backup.json (restore refuses) or
the previous run's, which still describes a snapshot and blobs that are all
there: blobs are only added while a backup runs, and the old snapshot and the
blobs only it listed are removed after the new record is in place.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable, Iterator
from typing import Any

from ociregistry.core.digests import new_hasher
from ociregistry.storage.durable import fsync_dir  # noqa: F401 (restore.py and take.py)

MARKER = "backup.json"
IN_PROGRESS = "in-progress"
FORMAT = 1
CHUNK = 1 << 20


class BackupError(Exception):
    """The backup or restore cannot go on; the message says why and what to do."""


def blob_file(root: str, digest: str) -> str:
    algorithm, encoded = digest.split(":", 1)
    if not encoded.isalnum() or not algorithm.isalnum():
        raise BackupError(f"not a digest: {digest!r}")
    return os.path.join(root, "blobs", algorithm, encoded[:2], encoded)


def write_atomic(path: str, data: bytes) -> None:
    """Replace ``path`` with ``data``: the old or the new content after a power cut."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(os.path.dirname(os.path.abspath(path)))


def read_marker(dest: str) -> dict[str, Any] | None:
    try:
        with open(os.path.join(dest, MARKER), "rb") as f:
            marker = json.load(f)
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise BackupError(f"{dest}/{MARKER} is not valid JSON: {exc}") from exc
    if not isinstance(marker, dict) or marker.get("format") != FORMAT:
        raise BackupError(f"{dest}/{MARKER}: unknown backup format {marker.get('format')!r}")
    return marker


def read_file(path: str) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk


def file_digest(path: str, algorithm: str = "sha256") -> str:
    hasher = new_hasher(algorithm)
    for chunk in read_file(path):
        hasher.update(chunk)
    return f"{algorithm}:{hasher.hexdigest()}"


def copy_verified(chunks: Iterable[bytes], target: str, digest: str, size: int) -> int:
    """Stream ``chunks`` into ``target`` (through a temporary name, synced), checking
    that they hash to ``digest`` and add up to ``size``; BackupError if not, and then
    ``target`` is untouched. Returns the bytes written."""
    algorithm = digest.split(":", 1)[0]
    hasher = new_hasher(algorithm)
    directory = os.path.dirname(target)
    os.makedirs(directory, exist_ok=True)
    tmp = f"{target}.partial-{os.getpid()}"
    written = 0
    try:
        with open(tmp, "wb") as f:
            for chunk in chunks:
                hasher.update(chunk)
                f.write(chunk)
                written += len(chunk)
            f.flush()
            os.fsync(f.fileno())
        actual = f"{algorithm}:{hasher.hexdigest()}"
        if actual != digest or written != size:
            raise BackupError(
                f"blob {digest}: its bytes hash to {actual}, {written} bytes "
                f"(expected {size})"
            )
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return written


def snapshot_blobs(snapshot: str) -> list[tuple[str, int]]:
    """(digest, size) of every blob row in a snapshot file."""
    conn = sqlite3.connect(f"file:{snapshot}?mode=ro", uri=True)
    try:
        return [(d, int(s)) for d, s in conn.execute("SELECT digest, size FROM blobs")]
    finally:
        conn.close()


def schema_revision(snapshot: str) -> str | None:
    conn = sqlite3.connect(f"file:{snapshot}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.Error:
        return None
    finally:
        conn.close()
    return row[0] if row else None


def walk_blob_files(root: str) -> Iterator[tuple[str, str]]:
    """(digest, path) of every file under root/blobs (temporary files included,
    named with their suffix, so that callers can remove leftovers)."""
    base = os.path.join(root, "blobs")
    if not os.path.isdir(base):
        return
    for algorithm in sorted(os.listdir(base)):
        for prefix in sorted(os.listdir(os.path.join(base, algorithm))):
            directory = os.path.join(base, algorithm, prefix)
            for name in sorted(os.listdir(directory)):
                yield f"{algorithm}:{name}", os.path.join(directory, name)
