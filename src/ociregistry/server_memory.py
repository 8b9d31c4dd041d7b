"""Start-up steps that keep the server's process tree small (docs/performance.md,
"Workers, threads and memory").

gunicorn's workers are forks of the master: every page the master holds when it
forks is in each worker's RSS too (shared until written), so whatever the master
merely used on the way (the schema migration's alembic and mako, the runtime it
built to check the database) costs its size once per process. Two helpers:

- ``run_in_child`` runs such a one-off step in a forked child and hands its
  (picklable) result back, so none of it stays in the master;
- ``limit_malloc_arenas`` caps glibc's malloc arenas for the threads the workers
  start, which otherwise each get an arena of their own and keep its high water.
"""

from __future__ import annotations

import ctypes
import logging
import os
import pickle
import sys
from collections.abc import Callable
from typing import Any, TypeVar

log = logging.getLogger("ociregistry")
T = TypeVar("T")

M_ARENA_MAX = -8  # glibc's mallopt parameter (malloc.h)
DEFAULT_ARENAS = 2


def limit_malloc_arenas(count: int = DEFAULT_ARENAS) -> bool:
    """Cap glibc's malloc arenas at ``count`` for this process and its forks.

    glibc gives a thread that finds the arenas busy a new one, up to 8 per CPU; a
    worker's 8 request threads so spread their short-lived buffers over as many
    arenas, whose freed memory stays in RSS. Two arenas keep the contention low
    (the GIL serialises most allocations anyway) and the worker's heap compact.
    Must run before the process starts threads (the limit is read when the
    second arena is made); an explicit MALLOC_ARENA_MAX in the environment,
    which glibc has already applied, wins. False where there is no glibc.
    """
    if os.environ.get("MALLOC_ARENA_MAX") or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_ARENA_MAX, count))


def run_in_child(step: Callable[[], T]) -> T:
    """``step()``, run in a forked child; its return value or exception comes back.

    Where there is no fork (Windows), or for a caller that already runs threads,
    it simply runs here. The child must not start anything that outlives it.
    """
    if not hasattr(os, "fork"):
        return step()
    read_fd, write_fd = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: run, send the outcome, leave without any clean-up of the parent's
        os.close(read_fd)
        code = 0
        try:
            try:
                outcome: tuple[str, Any] = ("ok", step())
            except BaseException as exc:  # handed to the parent, which raises it
                outcome = ("error", exc)
            try:
                data = pickle.dumps(outcome)
            except Exception:  # an exception that does not pickle: its text then
                data = pickle.dumps(("error", RuntimeError(repr(outcome[1]))))
            with os.fdopen(write_fd, "wb") as pipe:
                pipe.write(data)
        except BaseException:
            code = 1
        finally:
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    if not data:
        raise RuntimeError(f"the start-up step's process ended without an answer ({status})")
    kind, value = pickle.loads(data)
    if kind == "error":
        raise value
    return value
