"""How this registry authenticates to one upstream: anonymous, basic, or the Docker
token dance (a 401 with ``WWW-Authenticate: Bearer realm=...,service=...,scope=...``:
fetch a token from the realm, with the static credentials if any, and retry).

Tokens are cached per scope until shortly before they expire. The credentials
and tokens stay here: nothing of this module reaches a client of the registry.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from ociregistry.lazy_import import lazy_module

requests = lazy_module("requests")  # loaded when a mirror first talks upstream

_PARAM = re.compile(r'([A-Za-z_][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))')
MAX_TOKENS = 512  # scopes cached per upstream
EXPIRY_MARGIN = 10.0  # seconds: a token about to expire is not used


class TokenError(Exception):
    """The token service failed or refused; ``status`` is its HTTP status, if any."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """(scheme lower-cased, parameters) of a WWW-Authenticate value."""
    scheme, _, rest = header.strip().partition(" ")
    params = {}
    for match in _PARAM.finditer(rest):
        value = match[2] if match[2] is not None else match[3]
        params[match[1].lower()] = re.sub(r"\\(.)", r"\1", value)
    return scheme.lower(), params


@dataclass
class _Bearer:
    realm: str
    service: str | None


class UpstreamAuth:
    """Authorization headers for requests to one upstream."""

    def __init__(
        self,
        session: requests.Session,
        username: str,
        password: str,
        realm_allowed: Callable[[str], bool],
        timeout: tuple[float, float],
        verify: Callable[[str], bool | str] = lambda netloc: True,
    ) -> None:
        self.session = session
        self.credentials = (username, password) if username else None
        self.realm_allowed = realm_allowed
        self.timeout = timeout
        self.verify = verify  # TLS verification for a host (the upstream's CA file)
        self._bearer: _Bearer | None = None  # learnt from the first Bearer challenge
        self._basic = False  # learnt from a Basic challenge
        self._tokens: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()
        self.token_requests = 0  # for tests and logs

    def header(self, scope: str) -> str | None:
        """The Authorization value for a request in ``scope``, when one is known."""
        if self._basic and self.credentials:
            return _basic(*self.credentials)
        if self._bearer is None:
            return None
        with self._lock:
            cached = self._tokens.get(scope)
        if cached and cached[1] > time.time():
            return f"Bearer {cached[0]}"
        # A known token service: fetch the scope's token without a 401 round trip.
        return f"Bearer {self._fetch(self._bearer, scope)}"

    def challenge(self, response: requests.Response, scope: str) -> bool:
        """Learn from a 401; True when a retry with new credentials may succeed."""
        header = response.headers.get("WWW-Authenticate", "")
        scheme, params = parse_challenge(header)
        if scheme == "bearer" and params.get("realm"):
            bearer = _Bearer(params["realm"], params.get("service"))
            self._bearer = bearer
            with self._lock:
                self._tokens.pop(scope, None)
            wanted = params.get("scope") or scope
            token = self._fetch(bearer, wanted)
            if wanted != scope:
                with self._lock:
                    self._tokens[scope] = self._tokens[wanted]
            return bool(token)
        if scheme == "basic" and self.credentials:
            self._basic = True
            # Retry unless this very request carried the credentials: a sibling request
            # may have learnt Basic while this one was in flight without them.
            sent = response.request.headers.get("Authorization") if response.request else None
            return sent != _basic(*self.credentials)
        return False

    def forget(self, scope: str) -> None:
        with self._lock:
            self._tokens.pop(scope, None)

    def _fetch(self, bearer: _Bearer, scope: str) -> str:
        parts = urlsplit(bearer.realm)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise TokenError(f"the upstream's token realm is not a URL: {bearer.realm[:200]!r}")
        if not self.realm_allowed(parts.netloc.lower()):
            raise TokenError(f"the upstream's token realm {parts.netloc!r} is not an allowed "
                             "host (add it to redirect_hosts)")
        params = {"scope": scope}
        if bearer.service:
            params["service"] = bearer.service
        self.token_requests += 1
        try:
            reply = self.session.get(bearer.realm, params=params, auth=self.credentials,
                                     timeout=self.timeout, allow_redirects=False,
                                     verify=self.verify(parts.netloc.lower()))
        except requests.RequestException as exc:
            raise TokenError(f"token service unreachable: {type(exc).__name__}") from exc
        with reply:
            if reply.status_code != 200:
                raise TokenError(f"token service answered {reply.status_code}",
                                 reply.status_code)
            try:
                body = reply.json()
            except ValueError as exc:
                raise TokenError("token service answered no JSON") from exc
        token = (body.get("token") or body.get("access_token")) if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise TokenError("token service answered no token")
        try:
            lifetime = float(body.get("expires_in") or 60)
        except (TypeError, ValueError):
            lifetime = 60.0
        expires = time.time() + max(lifetime - EXPIRY_MARGIN, 1.0)
        with self._lock:
            if len(self._tokens) >= MAX_TOKENS:
                self._tokens.pop(next(iter(self._tokens)))
            self._tokens[scope] = (token, expires)
        return token


def _basic(username: str, password: str) -> str:
    import base64

    raw = f"{username}:{password}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")
