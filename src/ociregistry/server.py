"""Production WSGI serving: gunicorn on POSIX, waitress where gunicorn can't run."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from ociregistry.config import Settings

log = logging.getLogger("ociregistry")


def default_workers() -> int:
    return max(2, 2 * (os.cpu_count() or 1))


def _app_factory(settings: Settings) -> Any:
    from ociregistry.runtime import build_runtime
    from ociregistry.web.app import create_app

    return create_app(runtime=build_runtime(settings))


def serve(settings: Settings) -> int:
    workers = settings.http.workers or default_workers()
    if sys.platform == "win32":
        return _serve_waitress(settings, workers)
    return _serve_gunicorn(settings, workers)


def _serve_gunicorn(settings: Settings, workers: int) -> int:
    from gunicorn.app.base import BaseApplication

    class RegistryServer(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            options = {
                "bind": f"{settings.http.host}:{settings.http.port}",
                "workers": workers,
                # Threads let one worker stream many large bodies at once while
                # other threads answer manifest and HEAD requests.
                "worker_class": "gthread",
                "threads": settings.http.threads,
                "timeout": settings.http.timeout,
                "graceful_timeout": 30,
                "keepalive": 75,
                "limit_request_line": 8190,
                "limit_request_field_size": 16384,
                "proc_name": "ociregistry",
                "accesslog": None,
                "errorlog": "-",
                "loglevel": "info",
            }
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            return _app_factory(settings)

    RegistryServer().run()
    return 0


def _serve_waitress(settings: Settings, workers: int) -> int:
    import waitress

    waitress.serve(
        _app_factory(settings),
        host=settings.http.host,
        port=settings.http.port,
        threads=workers * settings.http.threads,
    )
    return 0
