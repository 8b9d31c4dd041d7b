"""/metrics on an address of its own (metrics.address), served from the
gunicorn master so that it answers even when every worker is busy."""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from ociregistry.config import Settings

log = logging.getLogger("ociregistry")


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


def _authorized(settings: Settings, header: str) -> bool:
    cfg = settings.metrics
    if not (cfg.username and cfg.password):
        return True
    if not header.lower().startswith("basic "):
        return False
    try:
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    return hmac.compare_digest(user.encode(), cfg.username.encode()) & hmac.compare_digest(
        password.encode(), cfg.password.encode()
    )


def metrics_wsgi_app(settings: Settings) -> Callable[..., Iterable[bytes]]:
    from ociregistry import metrics
    from ociregistry.metadata.store import MetadataStore

    store = MetadataStore(settings.database_url, pool_size=1)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != "/metrics":
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found\n"]
        if not _authorized(settings, environ.get("HTTP_AUTHORIZATION", "")):
            start_response(
                "401 Unauthorized",
                [("Content-Type", "text/plain"), ("WWW-Authenticate", 'Basic realm="metrics"')],
            )
            return [b"authentication required\n"]
        body, content_type = metrics.exposition(store)
        start_response("200 OK", [("Content-Type", content_type)])
        return [body]

    return app


def start_metrics_listener(settings: Settings) -> threading.Thread:
    host, _, port = settings.metrics.address.rpartition(":")
    server = make_server(
        host or "0.0.0.0", int(port), metrics_wsgi_app(settings), handler_class=_QuietHandler
    )
    thread = threading.Thread(target=server.serve_forever, name="metrics", daemon=True)
    thread.start()
    log.info("metrics listening on %s", settings.metrics.address)
    return thread
