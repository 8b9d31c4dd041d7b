"""Operators' commands: config check, check [--repair], du."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Callable
from typing import Any

import yaml

_SECRET_KEY = re.compile(r"(password|secret|secret_key|token|private_key)$", re.IGNORECASE)
# The password of a URL's user info (database.url): scheme://user:PASSWORD@host
_URL_PASSWORD = re.compile(r"^([a-z][a-z0-9+.-]*://[^:/@\s]*:)\S*(@)", re.IGNORECASE)


class ProgressPrinter:
    """A progress bar on a terminal, a plain line per phase (and per 10%) otherwise."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self._last: tuple[str, int] = ("", -1)

    def __call__(self, phase: str, done: int, total: int) -> None:
        percent = 100 if total <= 0 else min(100, done * 100 // total)
        if self.tty:
            bar = "#" * (percent // 4)
            print(f"\r{phase:<10} [{bar:<25}] {done}/{total}", end="", file=self.stream, flush=True)
            if done >= total:
                print(file=self.stream)
            return
        step = percent // 10
        if (phase, step) != self._last or done >= total and self._last != (phase, 10):
            print(f"{phase}: {done}/{total}", file=self.stream, flush=True)
            self._last = (phase, 10 if done >= total else step)


def mask_secrets(value: Any) -> Any:
    """The value with secrets replaced by ********: keys named like one, URL passwords."""
    if isinstance(value, dict):
        return {
            k: ("********" if _SECRET_KEY.search(k) and v else mask_secrets(v))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [mask_secrets(v) for v in value]
    if isinstance(value, str):
        return _URL_PASSWORD.sub(r"\1********\2", value)
    return value


def cmd_config_check(args: argparse.Namespace, settings_of: Callable) -> int:
    settings = settings_of(args)
    print(yaml.safe_dump(mask_secrets(settings.model_dump(mode="json")), sort_keys=False), end="")
    print("# configuration is valid", file=sys.stderr)
    return 0


def cmd_check(args: argparse.Namespace, settings_of: Callable) -> int:
    from ociregistry.core.check import IntegrityChecker
    from ociregistry.runtime import build_runtime

    runtime = build_runtime(settings_of(args), migrate=True)
    checker = IntegrityChecker(
        runtime.metadata,
        runtime.storage,
        quarantine_dir=os.path.join(runtime.settings.storage_root, "quarantine"),
    )
    report = checker.run(repair=args.repair, progress=ProgressPrinter())
    for problem in report.problems:
        state = "repaired" if problem.repaired else "NOT repaired" if args.repair else "found"
        print(f"{problem.kind}: {problem.subject}: {problem.detail} [{state}]")
    print(
        f"checked {report.blobs_checked} blobs ({report.bytes_checked} bytes) and "
        f"{report.manifests_checked} manifests: {len(report.problems)} problem(s), "
        f"{len(report.unrepaired)} left"
    )
    if args.json:
        print(json.dumps({
            "blobs_checked": report.blobs_checked,
            "manifests_checked": report.manifests_checked,
            "problems": [p.__dict__ for p in report.problems],
        }))
    return 1 if report.unrepaired else 0


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{n} B"
        size /= 1024
    return f"{n} B"


def cmd_du(args: argparse.Namespace, settings_of: Callable) -> int:
    from ociregistry.metadata import ops_queries as q
    from ociregistry.runtime import build_runtime

    runtime = build_runtime(settings_of(args), migrate=True)
    if args.quotas:
        return _du_quotas(runtime, args.json)
    rows = q.repository_usage(runtime.metadata, args.repository)
    if args.repository and not rows:
        print(f"error: no repository {args.repository!r} with content", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(rows))
        return 0
    print(f"{'REPOSITORY':<40} {'BLOBS':>7} {'SIZE':>12} {'SHARED':>12}")
    for row in rows:
        print(
            f"{row['repository']:<40} {row['blobs']:>7} {_human(row['bytes']):>12} "
            f"{_human(row['shared_bytes']):>12}"
        )
    counts = runtime.metadata.stored_counts()
    print(f"total stored: {_human(counts['blob_bytes'])} in {counts['blobs']} blobs")
    return 0


def _du_quotas(runtime: Any, as_json: bool) -> int:
    """Each quota's namespace usage counted from scratch, next to the kept figure."""
    rows = []
    walks = runtime.quotas.walks()
    for quota in runtime.quotas.list():
        repositories, blob_bytes, upload_bytes = walks[quota.pattern]
        rows.append({"namespace": quota.pattern, "repositories": repositories,
                     "blob_bytes": blob_bytes, "upload_bytes": upload_bytes,
                     "usage": blob_bytes + upload_bytes, "recorded": quota.usage,
                     "limit": quota.limit_bytes})
    if as_json:
        print(json.dumps(rows))
    else:
        print(f"{'NAMESPACE':<32} {'REPOS':>6} {'USAGE':>12} {'UPLOADS':>12} {'LIMIT':>12}")
        for row in rows:
            drift = "" if row["usage"] == row["recorded"] else (
                f"  (recorded {row['recorded']} B: run a recount)")
            print(f"{row['namespace']:<32} {row['repositories']:>6} "
                  f"{_human(row['usage']):>12} {_human(row['upload_bytes']):>12} "
                  f"{_human(row['limit']):>12}{drift}")
    return 1 if any(row["usage"] != row["recorded"] for row in rows) else 0


def register(sub: Any, common: Callable, settings_of: Callable) -> None:
    config = sub.add_parser("config", help="configuration")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    check_cfg = config_sub.add_parser(
        "check", help="validate and print the effective configuration (secrets masked)"
    )
    common(check_cfg)
    check_cfg.set_defaults(func=lambda a: cmd_config_check(a, settings_of))

    check = sub.add_parser(
        "check", help="verify blob digests and that metadata and storage agree"
    )
    common(check)
    check.add_argument("--repair", action="store_true", help="fix what can be fixed safely")
    check.add_argument("--json", action="store_true", help="also print the report as JSON")
    check.set_defaults(func=lambda a: cmd_check(a, settings_of))

    du = sub.add_parser("du", help="storage used by each repository")
    common(du)
    du.add_argument("repository", nargs="?", help="only this repository")
    du.add_argument("--json", action="store_true", help="print JSON")
    du.add_argument("--quotas", action="store_true",
                    help="usage of each quota's namespace, counted from scratch (distinct "
                         "blobs + open uploads); exit 1 if a kept figure differs")
    du.set_defaults(func=lambda a: cmd_du(a, settings_of))
