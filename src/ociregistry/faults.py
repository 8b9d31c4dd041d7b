"""Which failures mean "a service the registry depends on is down, try again".

The database restarting (connections cut, refused, or a pool that cannot
connect in time), the object store stopped, unreachable, timing out or
answering 5xx: none of these is the client's fault nor a bug in the registry,
and the client can do nothing but retry. The web layer answers them with 503
and Retry-After (the OCI envelope on /v2, a problem document on /api/v1)
instead of a 500, and logs one line instead of a traceback.

Anything else (an IntegrityError, a programming error, a 4xx from the store)
stays an unexpected error: hiding a bug behind "try again" helps nobody.
"""

from __future__ import annotations

import logging
from typing import Literal

from ociregistry import metrics

log = logging.getLogger("ociregistry")

Dependency = Literal["database", "storage"]

# Seconds a client is told to wait: a database restart or a store failover
# usually takes a few seconds.
RETRY_AFTER = 5


def unavailable(exc: BaseException) -> Dependency | None:
    """The dependency whose outage ``exc`` (or an exception it was raised from) shows."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        found = _database_down(current) or _storage_down(current)
        if found:
            return found
        current = current.__cause__ or current.__context__
    return None


def dependency_down(exc: BaseException) -> Dependency | None:
    """The dependency ``exc`` shows to be down (counted and logged in one line), or None."""
    dependency = unavailable(exc)
    if dependency is not None:
        metrics.DEPENDENCY_UNAVAILABLE.labels(dependency).inc()
        first_line = str(exc).splitlines()[0][:300] if str(exc) else ""
        log.warning("%s unavailable, answering 503: %s: %s",
                    dependency, type(exc).__name__, first_line)
    return dependency


# SQLSTATE classes of a server that can't serve now: connection exception,
# insufficient resources (too many connections, disk full), operator intervention
# (shutting down, starting up).
_UNAVAILABLE_CLASSES = ("08", "53", "57")


def _database_down(exc: BaseException) -> Dependency | None:
    import sqlalchemy.exc as sa_exc

    # OperationalError: the server went away, refused, was shutting down, or a
    # transient conflict (deadlock, serialisation, SQLite "database is locked").
    # A pool that could not hand out a connection in time is as unavailable.
    if isinstance(exc, sa_exc.OperationalError | sa_exc.DisconnectionError
                  | sa_exc.TimeoutError):
        return "database"
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return "database"  # an InterfaceError on a connection the server closed
    sqlstate = getattr(getattr(exc, "orig", exc), "sqlstate", None) or ""
    if sqlstate == "25006" or sqlstate[:2] in _UNAVAILABLE_CLASSES:
        # A read-only transaction: connected to a standby during a failover.
        return "database"
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is a dependency
        return None
    if isinstance(exc, psycopg.OperationalError):
        return "database"
    return None


def _storage_down(exc: BaseException) -> Dependency | None:
    try:
        import botocore.exceptions as bc
    except ImportError:  # pragma: no cover - boto3 is a dependency
        return None
    # Refused, reset, closed, timed out: the store could not be talked to.
    if isinstance(exc, bc.HTTPClientError | bc.ConnectionError):
        return "storage"
    if isinstance(exc, bc.ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        if int(status) >= 500:  # InternalError, ServiceUnavailable, SlowDown
            return "storage"
    return None
