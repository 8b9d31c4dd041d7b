"""Command line: ociregistry serve | gc | db upgrade | user | token | version."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from ociregistry import (
    __version__,
    cli_backup,
    cli_import,
    cli_mirror,
    cli_ops,
    cli_remote,
    cli_retention,
    cli_tags,
    cli_tokens,
    cli_users,
)
from ociregistry.cli_ops import ProgressPrinter
from ociregistry.config import ConfigError, Settings, load_settings
from ociregistry.logs import setup_logging


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="YAML configuration file")
    parser.add_argument("--data-dir", help="data directory (default ./data)")


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    if getattr(args, "data_dir", None):
        overrides["data_dir"] = args.data_dir
    http = {k: getattr(args, k, None) for k in ("host", "port", "workers", "threads")}
    http = {k: v for k, v in http.items() if v is not None}
    if http:
        overrides["http"] = http
    tls = {k: getattr(args, f"tls_{k}", None) for k in ("cert", "key")}
    if any(tls.values()):
        overrides["tls"] = {"certificate": tls["cert"], "key": tls["key"]}
        overrides["tls"] = {k: v for k, v in overrides["tls"].items() if v}
    return load_settings(args.config, overrides)


def cmd_serve(args: argparse.Namespace) -> int:
    from ociregistry.server import prepare_metrics_dir, serve

    settings = _settings(args)
    setup_logging(settings.log.format, settings.log.level)
    prepare_metrics_dir(settings)  # before anything imports prometheus_client
    from ociregistry.server_memory import run_in_child

    # In a child process: what this step loads (alembic, a whole runtime) would
    # otherwise stay in the master and, through fork, in every worker's memory.
    code, secret_key = run_in_child(lambda: _prepare_data(settings))
    if code:
        return code
    settings.ui.secret_key = secret_key
    return serve(settings)


def _prepare_data(settings: Settings) -> tuple[int, str]:
    """(exit code, UI secret key): the start-up work on the data, before any worker."""
    from ociregistry.runtime import build_runtime

    # Create the data directory and bring the schema up to date once, before
    # any worker starts (or, without auto_migrate, refuse a schema that is behind).
    runtime = build_runtime(settings, migrate=settings.database.auto_migrate)
    try:
        if not settings.database.auto_migrate:
            from ociregistry.metadata.migrate import pending

            if pending(runtime.metadata):
                print(
                    "error: the database schema is behind this version of ociregistry; "
                    "run `ociregistry db upgrade` (with the same configuration) first, "
                    "or set database.auto_migrate: true",
                    file=sys.stderr,
                )
                return 2, ""
        if settings.storage.driver == "s3":
            from ociregistry.storage.s3_encryption import refused_encryption

            problem = refused_encryption(runtime.storage)  # type: ignore[arg-type]
            if problem:
                print(f"error: {problem}", file=sys.stderr)
                return 2, ""
        if not settings.ui.secret_key:
            # Read once, here: a worker (re)started while the database is down can
            # then boot (gunicorn stops the whole server when a worker cannot).
            from ociregistry.core.gc_jobs import ui_secret_key

            settings.ui.secret_key = ui_secret_key(runtime.metadata).decode()
        runtime.quotas.sync_config()  # the configured quotas, in the index for every instance
        from ociregistry.events.service import sync_config_endpoints

        sync_config_endpoints(runtime.metadata, settings.events)  # once, before the workers
    finally:
        runtime.metadata.dispose()
    return 0, settings.ui.secret_key


def cmd_gc(args: argparse.Namespace) -> int:
    if args.remote:  # a remote registry's management API, not this machine's data
        return cli_remote.run_gc_remote(args)
    from ociregistry.core.gc import GCAlreadyRunning
    from ociregistry.runtime import build_runtime

    runtime = build_runtime(_settings(args), migrate=True)
    try:
        result = runtime.gc.run(
            dry_run=args.dry_run,
            delete_untagged=args.delete_untagged,
            progress=ProgressPrinter(),
        )
    except GCAlreadyRunning as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    verb = "would free" if args.dry_run else "freed"
    print(
        f"{verb} {result.bytes_freed} bytes: {result.blobs_deleted} blobs, "
        f"{result.manifests_deleted} manifests, {result.uploads_expired} upload sessions, "
        f"{result.orphan_files_deleted} orphan files ({result.duration_seconds}s)"
    )
    if args.json:
        print(json.dumps(result.as_dict()))
    return 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from ociregistry.metadata.migrate import describe
    from ociregistry.metadata.store import MetadataStore

    settings = _settings(args)
    store = MetadataStore(settings.database_url)
    try:
        print(describe(*store.create_schema()))
    finally:
        store.dispose()
    return 0


def cmd_version(_args: argparse.Namespace) -> int:
    print(f"ociregistry {__version__}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ociregistry", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the registry server")
    _common(serve)
    serve.add_argument("--host", help="address to listen on (default 0.0.0.0)")
    serve.add_argument("--port", type=int, help="port (default 5000)")
    serve.add_argument("--workers", type=int, help="worker processes (default 1 per core, min. 2)")
    serve.add_argument("--threads", type=int, help="threads per worker (default 8)")
    serve.add_argument("--tls-cert", metavar="PEM", help="serve HTTPS with this certificate")
    serve.add_argument("--tls-key", metavar="PEM", help="the certificate's private key")
    serve.set_defaults(func=cmd_serve)

    gc = sub.add_parser("gc", help="garbage-collect unreferenced blobs and manifests")
    _common(gc)
    gc.add_argument("--dry-run", action="store_true", help="report what would be freed")
    gc.add_argument(
        "--delete-untagged", action="store_true", help="also delete manifests with no tag"
    )
    gc.add_argument("--json", action="store_true", help="also print the result as JSON")
    gc.add_argument("--remote", metavar="URL",
                    help="run it on a remote registry through its management API (admin "
                         "credentials from docker's config.json) instead of on local data")
    gc.add_argument("--wait", type=float, default=3600, metavar="SECONDS",
                    help="with --remote: how long to follow the run (default 3600)")
    gc.set_defaults(func=cmd_gc)

    db = sub.add_parser("db", help="database schema")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    upgrade = db_sub.add_parser("upgrade", help="apply pending migrations")
    _common(upgrade)
    upgrade.set_defaults(func=cmd_db_upgrade)

    cli_ops.register(sub, _common, _settings)

    cli_users.register(sub)
    cli_remote.register(sub)
    cli_tokens.register(sub, _common, _settings)
    cli_backup.register(sub, _common, _settings)
    cli_import.register(sub, _common, _settings)
    cli_tags.register(sub, _common, _settings)
    cli_retention.register(sub, _common, _settings)
    cli_mirror.register(sub, _common, _settings)
    version = sub.add_parser("version", help="print the version")
    version.set_defaults(func=cmd_version)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
