"""What the routes answered in front of Flask share (web/fast_reads.py, fast_writes.py).

Each is a WSGI middleware that answers a few plain requests itself and hands the rest
to Flask untouched. Both are switched off by the same things: their setting, a
mirror with a default upstream (then any name may be fetched, which Flask's routes
do), and rate limits (their bookkeeping is Flask's hook's).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ociregistry.auth.service import AuthService
from ociregistry.runtime import Runtime
from ociregistry.web import auth as access

WSGIApp = Callable[[dict[str, Any], Any], Iterable[bytes]]


class FastRoute:
    """The middleware's common state: the app behind it, the core, the switches."""

    def __init__(self, app: WSGIApp, runtime: Runtime, extensions: dict[str, Any],
                 enabled: bool) -> None:
        self.app = app
        self.registry = runtime.registry
        settings = runtime.settings
        self.log_access = settings.log.access_log
        # Names under a mirror's upstream prefix are routed (and may be fetched) by
        # Flask's route; a default upstream may take any name: then Flask answers all.
        mirror = settings.mirror
        self.mirror = mirror if mirror.upstreams else None
        self.enabled = enabled and (self.mirror is None or self.mirror.default is None)
        self._extensions = extensions  # auth's objects, registered after this wraps Flask
        self._auth: AuthService | None = None

    def _service(self) -> AuthService | None:
        """The auth service, or None when a rate limit is on (then Flask answers all)."""
        auth = self._auth
        if auth is None:
            by_address, by_user = self._extensions[access.EXTENSION + ".limits"]
            if by_address is not None or by_user is not None:
                self.enabled = False
                return None
            auth = self._auth = self._extensions[access.EXTENSION]
        return auth
