"""ociregistry import distribution PATH | s3://bucket/prefix: move in from registry:2."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ociregistry.cli_ops import _human

if TYPE_CHECKING:
    from ociregistry.importer.sources import Source
    from ociregistry.importer.stats import ImportStats
# The importer is imported by its command: `ociregistry serve` must not load
# prometheus_client (through the core) before it sets up the metrics directory.


class ImportProgress:
    """One line per second: repositories, manifests, bytes, rate, time left."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()

    def __call__(self, s: ImportStats) -> None:
        elapsed = max(time.monotonic() - s.started, 1e-6)
        rate = s.bytes_done / elapsed
        left = max(s.bytes_total - s.bytes_done, 0)
        eta = f"{int(left / rate) // 60}:{int(left / rate) % 60:02d}" if rate > 0 else "?"
        line = (
            f"repositories {s.repositories_done}/{s.repositories_total}  "
            f"manifests {s.manifests_done}/{s.manifests_total}  "
            f"{_human(s.bytes_done)}/{_human(s.bytes_total)}  "
            f"{_human(int(rate))}/s  {eta} left"
        )
        if self.tty:
            print(f"\r{line:<100}", end="", file=self.stream, flush=True)
        else:
            print(line, file=self.stream, flush=True)


def _s3_source(args: argparse.Namespace, settings: Any) -> Source:
    from ociregistry.config import S3Settings
    from ociregistry.importer.sources import S3Source
    from ociregistry.storage.s3 import S3Storage

    bucket, _, prefix = args.source[len("s3://"):].partition("/")
    # The registry's own S3 settings (endpoint, credentials) unless flags say otherwise.
    own = settings.storage.s3 if settings.storage.driver == "s3" else S3Settings()
    values = own.model_dump()
    for key in ("endpoint_url", "access_key", "secret_key", "region"):
        flag = getattr(args, f"s3_{key}", None)
        if flag is not None:
            values[key] = flag
    values.update(bucket=bucket, prefix="", sse="", redirect=False)
    client = S3Storage(S3Settings(**values)).client
    return S3Source(client, bucket, prefix)


def cmd_import_distribution(args: argparse.Namespace, settings_of: Callable) -> int:
    from ociregistry.importer.distribution import DistributionImporter
    from ociregistry.importer.sources import FilesystemSource, SourceError
    from ociregistry.importer.status import ImportRecorder
    from ociregistry.runtime import build_runtime

    settings = settings_of(args)
    runtime = build_runtime(settings, migrate=True)
    try:
        source = (
            _s3_source(args, settings)
            if args.source.startswith("s3://")
            else FilesystemSource(args.source)
        )
    except SourceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    # The run is recorded for the management API (GET /api/v1/admin/imports).
    recorder = ImportRecorder(runtime.metadata, args.source)
    printer = None if args.quiet else ImportProgress()

    def progress(stats: ImportStats) -> None:
        if printer is not None:
            printer(stats)
        recorder(stats)

    importer = DistributionImporter(
        runtime.registry, source, progress=progress, jobs=args.jobs, link=args.link
    )
    try:
        stats = importer.run()
    except BaseException as exc:
        recorder.finish(importer.stats, error=repr(exc)[:2000])
        raise
    recorder.finish(stats)
    if not args.quiet and ImportProgress().tty:
        print(file=sys.stderr)
    _summary(stats)
    if args.json:
        print(json.dumps(stats.as_dict()))
    return 0


def _summary(s: ImportStats) -> None:
    elapsed = time.monotonic() - s.started
    print(
        f"imported: {s.manifests_imported} manifests, {s.tags_imported} tags, "
        f"{s.blobs_copied} blobs copied ({_human(s.bytes_copied)}), {s.blobs_linked} linked "
        f"from {s.repositories_done} repositories in {elapsed:.1f}s"
    )
    print(
        f"skipped as already present: {s.manifests_present} manifests, "
        f"{s.tags_present} tags, {s.blobs_present} blobs"
    )
    if s.untagged:
        print(f"untagged manifests (imported, reachable by digest): {len(s.untagged)}")
        for ref in s.untagged:
            print(f"  {ref}")
    print(f"unreadable or refused: {len(s.problems)}")
    for p in s.problems:
        print(f"  {p.kind}: {p.path}: {p.detail}")


def register(sub: Any, common: Callable, settings_of: Callable) -> None:
    imp = sub.add_parser("import", help="move in from another registry's store")
    imp_sub = imp.add_subparsers(dest="import_command", required=True)
    dist = imp_sub.add_parser(
        "distribution",
        help="index a CNCF Distribution (registry:2) store; safe to run again",
        description="Import repositories, tags, manifests (byte for byte) and blobs from a "
        "Distribution storage root (the directory holding docker/registry/v2) or its S3 "
        "layout (s3://bucket/rootdirectory). Runs while Distribution serves; run it again "
        "after the switch to pick up what changed. See docs/migrate.md.",
    )
    common(dist)
    dist.add_argument("source", help="PATH or s3://bucket/prefix")
    dist.add_argument("--jobs", type=int, default=4, help="blobs copied at once (default 4)")
    dist.add_argument("--link", action="store_true",
                      help="hard-link blobs instead of copying them when both stores are on "
                           "one filesystem (digests still checked); copy otherwise")
    dist.add_argument("--s3-endpoint-url", dest="s3_endpoint_url",
                      help="the source bucket's S3 endpoint (default: storage.s3's)")
    dist.add_argument("--s3-access-key", dest="s3_access_key")
    dist.add_argument("--s3-secret-key", dest="s3_secret_key",
                      help="or the AWS credential chain (AWS_SECRET_ACCESS_KEY, ...)")
    dist.add_argument("--s3-region", dest="s3_region")
    dist.add_argument("--quiet", action="store_true", help="no progress lines")
    dist.add_argument("--json", action="store_true", help="also print the summary as JSON")
    dist.set_defaults(func=lambda a: cmd_import_distribution(a, settings_of))
