"""The senders' HTTP: one kept-alive connection per endpoint, the environment read once.

Each sender (one per endpoint) has a ``requests`` session. Two things made every
request cost more than its bytes:

- an answer not read to its end closes its connection (requests closes what it
  did not consume), and ``send`` reads only an excerpt: every request opened a
  new TCP connection, and a new TLS handshake for an HTTPS receiver. ``drain``
  reads the rest of a short answer so the connection goes back to the pool;
- a session looks the proxy and CA bundle variables up in the environment on
  every request (a walk over ``os.environ``, twice); ``new_session`` gives one
  that does it once per URL and settings, the answer being the same.
"""

from __future__ import annotations

from typing import Any

from ociregistry.lazy_import import lazy_module

requests = lazy_module("requests")

DRAIN_LIMIT = 64 * 1024  # a longer answer is dropped with its connection
_session_class: Any = None


def new_session() -> Any:
    global _session_class
    if _session_class is None:
        class SenderSession(requests.Session):  # type: ignore[name-defined,misc]
            def __init__(self) -> None:
                super().__init__()
                self._environment: dict[tuple[Any, ...], Any] = {}

            def merge_environment_settings(self, url: Any, proxies: Any, stream: Any,
                                           verify: Any, cert: Any) -> Any:
                if proxies:  # (never given by send: not cached)
                    return super().merge_environment_settings(url, proxies, stream,
                                                              verify, cert)
                key = (url, stream, verify, cert)
                found = self._environment.get(key)
                if found is None:
                    if len(self._environment) > 64:  # an endpoint whose URL keeps changing
                        self._environment.clear()
                    found = self._environment[key] = super().merge_environment_settings(
                        url, proxies, stream, verify, cert)
                return dict(found)

        _session_class = SenderSession
    return _session_class()


def drain(resp: Any) -> None:
    """Read what is left of ``resp`` (up to DRAIN_LIMIT) and give its connection back
    to the session's pool; a longer answer's connection is closed instead."""
    raw = resp.raw
    read = 0
    try:
        while read <= DRAIN_LIMIT:
            chunk = raw.read(16 * 1024, decode_content=False)
            if not chunk:
                raw.release_conn()
                resp._content_consumed = True  # (requests would close it otherwise)
                return
            read += len(chunk)
    except Exception:  # noqa: BLE001 (the answer was had; the connection just goes)
        return
