"""Command line: backup DEST | restore SRC | restore --reconcile | backup-lease -- CMD."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from ociregistry.cli_ops import ProgressPrinter, _human


def cmd_backup(args: argparse.Namespace, settings_of: Callable) -> int:
    from ociregistry.backup.layout import BackupError
    from ociregistry.backup.lease import BackupRunning
    from ociregistry.backup.take import require_apart, require_embedded, take_backup
    from ociregistry.runtime import build_runtime

    settings = settings_of(args)
    try:
        require_embedded(settings)
        require_apart(args.dest, settings)
        runtime = build_runtime(settings, migrate=True)
        result = take_backup(runtime, args.dest, ProgressPrinter(),
                             verify_existing=args.verify_existing)
    except (BackupError, BackupRunning) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(
        f"backup complete in {args.dest}: {result.blobs} blobs ({_human(result.blob_bytes)}); "
        f"copied {result.copied} ({_human(result.copied_bytes)}), "
        f"{result.already_present} already there, {result.pruned} no longer needed removed "
        f"({result.seconds}s)"
    )
    if args.json:
        print(json.dumps(result.as_dict()))
    return 0


def cmd_restore(args: argparse.Namespace, settings_of: Callable) -> int:
    from ociregistry.backup import restore
    from ociregistry.backup.layout import BackupError
    from ociregistry.metadata.store import MetadataStore
    from ociregistry.runtime import build_runtime

    settings = settings_of(args)
    if args.reconcile:
        if args.src:
            print("error: --reconcile takes no SRC", file=sys.stderr)
            return 2
        runtime = build_runtime(settings, migrate=True)
        sessions, files = restore.reconcile(runtime, ProgressPrinter())
        print(f"reconciled: {sessions} upload sessions dropped, {files} unrecorded blob "
              "files removed")
        return 0
    if not args.src:
        print("error: give the backup directory (SRC), or --reconcile", file=sys.stderr)
        return 2
    try:
        result = restore.restore_backup(settings, args.src, force=args.force,
                                        progress=ProgressPrinter())
    except BackupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    store = MetadataStore(settings.database_url)
    try:
        store.create_schema()  # a backup from an older version: bring it up to date
    finally:
        store.dispose()
    taken = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(result.snapshot_created_at))
    print(
        f"restored the backup of {taken} into {settings.data_dir}: {result.blobs} blobs "
        f"({_human(result.bytes)}) verified, {result.already_present} already in place, "
        f"{result.removed_files} other files removed ({result.seconds}s)"
    )
    if args.json:
        print(json.dumps(result.as_dict()))
    return 0


def cmd_backup_lease(args: argparse.Namespace, settings_of: Callable) -> int:
    from ociregistry.backup.lease import BackupLease, BackupRunning
    from ociregistry.metadata.store import MetadataStore

    command = args.command_line[1:] if args.command_line[:1] == ["--"] else args.command_line
    if not command:
        print("error: give the command to run while holding the lease", file=sys.stderr)
        return 2
    settings = settings_of(args)
    store = MetadataStore(settings.database_url)
    try:
        with BackupLease(store, ttl=args.ttl) as lease:
            print("backup lease held: garbage collection deletes no blob until the "
                  "command ends", file=sys.stderr, flush=True)
            code = subprocess.call(command)
        if lease.lost:
            print("error: the backup lease was lost while the command ran (the database "
                  "was unreachable for too long): run it again", file=sys.stderr)
            return code or 1
        return code
    except BackupRunning as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    finally:
        store.dispose()


def register(sub: Any, common: Callable, settings_of: Callable) -> None:
    backup = sub.add_parser(
        "backup", help="online backup of the embedded registry (SQLite + filesystem)"
    )
    common(backup)
    backup.add_argument("dest", metavar="DEST", help="backup directory (incremental)")
    backup.add_argument("--verify-existing", action="store_true",
                        help="re-hash blobs already in DEST instead of trusting name and size")
    backup.add_argument("--json", action="store_true", help="also print the result as JSON")
    backup.set_defaults(func=lambda a: cmd_backup(a, settings_of))

    restore = sub.add_parser("restore", help="rebuild a data directory from a backup")
    common(restore)
    restore.add_argument("src", metavar="SRC", nargs="?", help="backup directory")
    restore.add_argument("--force", action="store_true",
                         help="replace the registry already in the data directory")
    restore.add_argument("--reconcile", action="store_true",
                         help="no SRC: after restoring a database and bucket by hand, drop "
                              "upload sessions and blob files no row records")
    restore.add_argument("--json", action="store_true", help="also print the result as JSON")
    restore.set_defaults(func=lambda a: cmd_restore(a, settings_of))

    lease = sub.add_parser(
        "backup-lease",
        help="run a command (a database dump, a bucket copy) while GC deletes no blob",
    )
    common(lease)
    lease.add_argument("--ttl", type=float, default=300, metavar="SECONDS",
                       help="the lease lapses this long after this process dies (default 300)")
    lease.add_argument("command_line", nargs=argparse.REMAINDER, metavar="-- COMMAND",
                       help="the command and its arguments")
    lease.set_defaults(func=lambda a: cmd_backup_lease(a, settings_of))
