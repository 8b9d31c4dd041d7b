"""Production WSGI serving: gunicorn on POSIX, waitress where gunicorn can't run."""

from __future__ import annotations

import gc
import ipaddress
import logging
import os
import shutil
import sys
from typing import Any

from ociregistry.config import ConfigError, Settings

log = logging.getLogger("ociregistry")


def default_workers() -> int:
    # The CPUs this process may use (a container's cpuset), not the host's count.
    # One worker per CPU (at least two): each has 8 threads for requests that wait on
    # I/O, so a second worker per CPU added memory and CPU per request, not throughput
    # (docs/performance.md, "Workers, threads and memory").
    affinity = getattr(os, "sched_getaffinity", None)
    cpus = len(affinity(0)) if affinity else (os.cpu_count() or 1)
    return max(2, cpus)


def prepare_metrics_dir(settings: Settings) -> None:
    """Give every worker process its own metrics files (prometheus multiprocess mode).

    Must run before prometheus_client is first imported in this process.
    """
    if not settings.metrics.enabled or sys.platform == "win32":
        return
    path = os.path.join(os.path.abspath(settings.data_dir), ".metrics")
    shutil.rmtree(path, ignore_errors=True)  # counters restart with the server
    os.makedirs(path, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path


def _app_factory(settings: Settings) -> Any:
    from ociregistry.runtime import build_runtime
    from ociregistry.scheduler import start_gc_scheduler
    from ociregistry.web.app import create_app

    runtime = build_runtime(settings)
    start_gc_scheduler(runtime)
    from ociregistry.lifecycle.schedule import start_retention_scheduler

    start_retention_scheduler(runtime)
    from ociregistry.events.service import start_delivery

    start_delivery(runtime.metadata, runtime.events)
    from ociregistry.mirror.schedule import start_mirror_scheduler

    start_mirror_scheduler(runtime)  # eviction and pre-fetch on their cron schedules
    app = create_app(runtime=runtime)
    _freeze_start_up()
    return app


def _freeze_start_up() -> None:
    # What a worker builds to serve (modules, the app, engines, compiled statements:
    # ~100,000 objects) lives as long as the worker. Left in the collector's
    # generations, every full collection walks all of it (tens of ms, every few
    # hundred write requests: bench/write_instructions_worker.py); frozen, a full
    # collection walks only what requests left behind.
    gc.collect()
    gc.freeze()


def _on_ready(settings: Settings) -> None:
    if settings.metrics.enabled and settings.metrics.address:
        from ociregistry.metrics_listener import start_metrics_listener

        start_metrics_listener(settings)


def _on_child_exit(worker_pid: int) -> None:
    # Runs inside gunicorn's SIGCHLD handling, which can interrupt the master
    # anywhere (even mid-import): it must not import anything and must not raise,
    # or the master dies (exit 255) instead of shutting down cleanly.
    if _mark_process_dead is None:
        return
    try:
        _mark_process_dead(worker_pid)
    except Exception:  # the metrics files of a dead worker are only housekeeping
        log.exception("could not retire the metrics files of worker %s", worker_pid)


_mark_process_dead: Any = None


def beyond_this_host(host: str) -> bool:
    """Whether listening on ``host`` lets other machines connect (any name but localhost)."""
    host = host.strip().strip("[]")
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True  # "", a host name: reachable from elsewhere as far as we know


def warn_if_open(settings: Settings) -> None:
    """One warning, in the process that starts the workers, never one per worker."""
    if settings.auth.mode == "none" and beyond_this_host(settings.http.host):
        log.warning(
            "listening on %s:%s without authentication: anyone who can reach this port "
            "may pull, push and delete; configure auth.htpasswd or auth.token "
            "(docs/deployment.md), or listen on 127.0.0.1",
            settings.http.host or "*", settings.http.port,
        )


def serve(settings: Settings) -> int:
    workers = settings.http.workers or default_workers()
    warn_if_open(settings)
    from ociregistry.server_memory import limit_malloc_arenas

    limit_malloc_arenas()  # before any thread: the workers' threads share two arenas
    if sys.platform == "win32":
        return _serve_waitress(settings, workers)
    return _serve_gunicorn(settings, workers)


SHARE_FROM_WORKERS = 3  # measured: docs/performance.md, "Memory, round two"


def _share_before_fork(workers: int) -> bool:
    """With 3 or more workers, import the app's code (Flask, the blueprints, the UI
    and the API) in the master, once, so that the forked workers share those pages.

    With 2 workers the master stays light instead: each page it holds at the fork
    counts again in every worker's RSS, and under load the workers copy most of the
    shared pages anyway (reference counts), so sharing saved no real memory (PSS)
    there and cost 25 MiB of RSS; with 4 workers it saved 30 MiB of PSS. Only code:
    the app itself (engines, storage clients, threads) is built in each worker.
    """
    if workers < SHARE_FROM_WORKERS:
        return False
    import ociregistry.web.app  # noqa: F401

    return True


def _pre_fork() -> None:
    # Objects from before the fork move to the collector's permanent generation: a
    # worker's collections then never write to their headers, which would copy
    # every shared page they sit on into the worker.
    gc.freeze()


def _serve_gunicorn(settings: Settings, workers: int) -> int:
    global _mark_process_dead
    _share_before_fork(workers)  # or a light master, with 2 workers
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess  # imported now, not in a signal handler

        _mark_process_dead = multiprocess.mark_process_dead
    companions = _companions(settings)
    from gunicorn.app.base import BaseApplication

    from ociregistry.server_worker import RegistryThreadWorker

    RegistryThreadWorker.linger = settings.http.keepalive_linger_ms / 1000  # forked along

    class RegistryServer(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            options = {
                "bind": f"{settings.http.host}:{settings.http.port}",
                "workers": workers,
                # Threads let one worker stream many large bodies at once while
                # other threads answer manifest and HEAD requests.
                "worker_class": "ociregistry.server_worker.RegistryThreadWorker",
                "threads": settings.http.threads,
                "timeout": settings.http.timeout,
                "graceful_timeout": 30,
                "keepalive": 75,
                "limit_request_line": 8190,
                "limit_request_field_size": settings.limits.max_header_size,
                # X-Forwarded-* are believed only from http.trusted_proxies (the
                # app's middleware applies them); gunicorn itself trusts no one.
                "forwarded_allow_ips": "",
                "proc_name": "ociregistry",
                "accesslog": None,
                "errorlog": "-",
                "loglevel": settings.log.level,
                "when_ready": lambda _arbiter: _on_ready(settings),
                "child_exit": lambda _arbiter, worker: _on_child_exit(worker.pid),
                "pre_fork": lambda _arbiter, _worker: _pre_fork(),
            }
            options.update(tls_options(settings))
            check_auth(settings)
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            return _app_factory(settings)

        def run(self) -> None:
            from ociregistry.server_arbiter import RegistryArbiter

            try:
                RegistryArbiter(self, companions).run()
            except RuntimeError as exc:  # what gunicorn's run() does
                print(f"\nError: {exc}\n", file=sys.stderr)
                sys.exit(1)

    RegistryServer().run()
    return 0


def _companions(settings: Settings) -> list[Any]:
    """The processes the master runs beside its workers: event delivery, one per
    instance, when this instance delivers (docs/events.md)."""
    events = settings.events
    if not (events.enabled and events.deliver):
        return []
    from ociregistry.events import process

    process._mark_process_dead = _mark_process_dead
    return [process.DeliveryProcess(settings)]


def check_auth(settings: Settings) -> None:
    """Load the authentication settings once, before any worker starts.

    This also generates the token signing key on first start.
    """
    if settings.auth.mode == "none":
        return
    token = settings.auth.token
    shared = settings.storage.driver == "s3" or not settings.database_url.startswith("sqlite")
    if shared and token.enabled and not token.key:
        # Instances that share a database are usually several: each would sign
        # with a key of its own and refuse the tokens of the others.
        log.warning("auth.token.key is not set: this instance signs tokens with a key "
                    "generated in its data_dir; every instance of a cluster must be given "
                    "the same key (docs/deployment.md)")
    from ociregistry.auth.service import AuthService

    try:
        AuthService(settings)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"authentication: {exc}") from exc


def tls_options(settings: Settings) -> dict[str, Any]:
    """gunicorn's TLS settings: HTTPS with tls.certificate and tls.key, mTLS with client_ca."""
    tls = settings.tls
    if not (tls.certificate or tls.key or tls.client_ca):
        return {}
    if not (tls.certificate and tls.key):
        raise ConfigError("tls.certificate and tls.key must be given together")
    import ssl

    for path in (tls.certificate, tls.key, tls.client_ca):
        if path and not os.path.isfile(path):
            raise ConfigError(f"TLS file not found: {path}")
    # Fail here, with a clear message, rather than in every worker.
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(tls.certificate, tls.key)
        if tls.client_ca:
            context.load_verify_locations(tls.client_ca)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"cannot load the TLS certificate or key: {exc}") from exc
    options: dict[str, Any] = {"certfile": tls.certificate, "keyfile": tls.key}
    if tls.client_ca:
        options.update({"ca_certs": tls.client_ca, "cert_reqs": ssl.CERT_REQUIRED})
    return options


def _serve_waitress(settings: Settings, workers: int) -> int:
    import waitress

    if settings.tls.certificate:
        raise ConfigError("HTTPS needs gunicorn; on Windows, put a TLS proxy in front")

    waitress.serve(
        _app_factory(settings),
        host=settings.http.host,
        port=settings.http.port,
        threads=workers * settings.http.threads,
    )
    return 0
