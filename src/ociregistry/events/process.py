"""The events delivery process: one per instance, beside the gunicorn workers.

Delivery used to run as threads inside every serving worker, where its rendering,
HTTP and bookkeeping competed with request threads for the worker's GIL. Under
gunicorn it now runs in one process of its own per instance:

- ``DeliveryProcess`` lives in the master (``server_arbiter.RegistryArbiter``
  drives it): it forks the process when the workers start, forks it again when
  it dies (at once after a long life, with a growing delay after a quick death),
  reaps it with the workers and stops it with them (SIGTERM, then SIGKILL).
  It imports nothing heavy: the master stays light.
- The process (``_run``) builds only what delivery needs (a ``MetadataStore``
  and ``delivery.Delivery``), writes its metrics into the multiprocess directory
  like a worker, and exits when the master does: PR_SET_PDEATHSIG (Linux) sends
  it SIGTERM when the master dies, even by SIGKILL, and a check of its parent
  id each half second covers the rest.
- Wake-ups: a worker that commits events writes one byte to a pipe the master
  made before forking (non-blocking, at most once per ``WAKE_EVERY`` per worker;
  a full pipe is ignored); the process reads it and wakes its dispatcher, as a
  local commit did when delivery ran in the worker. Without it the process
  still finds everything by polling the index (``poll_interval_seconds``), which
  also picks up endpoints added or edited through the API and redeliveries.

- Idle: with no endpoint enabled (none in the configuration file, none in the
  index) the process exits with ``IDLE_EXIT`` right after its first look, so an
  instance without receivers carries no delivery process (about 49 MiB RSS,
  30 MiB PSS). The master starts it again at once when a worker writes
  ``ENDPOINTS_CHANGED`` to the pipe (an endpoint was added or enabled through
  the API: the master reads the pipe while no process runs), and every
  ``IDLE_RECHECK`` seconds for endpoints added through another instance.

The cluster's rules are unchanged: the process claims endpoints with leases like
any worker did, so each event goes once per endpoint across instances. Waitress
(Windows) keeps delivery in a thread of the serving process (``service.start_delivery``).
"""

from __future__ import annotations

import errno
import logging
import os
import select
import signal
import time
from typing import Any

log = logging.getLogger("ociregistry.events")

WAKE_EVERY = 0.05  # a worker writes at most this often to the wake pipe
QUICK_DEATH = 10.0  # a process that dies younger than this is restarted after a delay
MAX_DELAY = 30.0
STOP_WAIT = 10.0  # SIGTERM, then SIGKILL after this long
IDLE_EXIT = 3  # the process's exit code when no endpoint is enabled
IDLE_RECHECK = 300.0  # an idle instance looks again this often (endpoints added elsewhere)
ENDPOINTS_CHANGED = b"E"  # written to the pipe when an endpoint is added or enabled

_wake_fd: int | None = None  # the pipe's write end, in the master and the workers it forks
_woken = 0.0


def delivered_elsewhere() -> bool:
    """Whether this instance's delivery process delivers (so a worker must not)."""
    return _wake_fd is not None


def wake() -> None:
    """Events were committed: tell the delivery process (cheap, never blocks)."""
    global _woken
    now = time.monotonic()
    if now - _woken < WAKE_EVERY or _wake_fd is None:
        return
    _woken = now
    try:
        os.write(_wake_fd, b".")
    except OSError:  # full (nobody reads: the process is restarting) or gone
        pass


def endpoints_changed() -> None:
    """An endpoint was added or enabled: an idle master starts its delivery process."""
    if _wake_fd is None:
        return
    try:
        os.write(_wake_fd, ENDPOINTS_CHANGED)
    except OSError:  # full: the process is running and reading it
        pass


class DeliveryProcess:
    """The master's handle on the delivery process (start, reap, restart, stop)."""

    def __init__(self, settings: Any) -> None:
        global _wake_fd
        self.settings = settings
        self.pid: int | None = None
        self.started = 0.0
        self.failures = 0
        self.not_before = 0.0
        self.stopping = False
        self.status: int | None = None  # how the last one ended (waitpid status)
        self.idle = False  # the last one found no endpoint enabled
        self.read_fd, write_fd = os.pipe()
        for fd in (self.read_fd, write_fd):
            os.set_blocking(fd, False)
        _wake_fd = write_fd  # inherited by every worker forked from now on

    # -- in the master's loop ----------------------------------------------------------
    def ensure(self, arbiter: Any) -> None:
        """Start the process when it is not running (and may be started again)."""
        if self.stopping:
            return
        if self.pid is not None:
            self.reap()
            if self.pid is not None:
                return
        now = time.monotonic()
        if self.status is not None:
            self._exited(now)
        if self.idle:
            if not self._endpoints_changed() and now < self.not_before:
                return
            self.idle = False
        elif now < self.not_before:
            return
        self.started = now
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = _run(self.settings, arbiter, self.read_fd)
            except BaseException:  # noqa: BLE001 (never back into the master's loop)
                log.exception("events delivery process failed")
            finally:
                os._exit(code)
        self.pid = pid
        log.info("events delivery process started (pid %s)", pid)

    def _exited(self, now: float) -> None:
        status, self.status = self.status, None
        assert status is not None
        if os.WIFEXITED(status) and os.WEXITSTATUS(status) == IDLE_EXIT:
            self.idle, self.failures = True, 0
            self.not_before = now + IDLE_RECHECK
            log.info("events: no endpoint enabled, no delivery process; one starts when an "
                     "endpoint is added or enabled (or in %.0f s)", IDLE_RECHECK)
            return
        how = (f"signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status)
               else f"exit code {os.WEXITSTATUS(status)}")
        if now - self.started < QUICK_DEATH:
            self.failures += 1
            self.not_before = now + min(MAX_DELAY, 0.5 * 2 ** self.failures)
        else:
            self.failures = 0
        log.error("events delivery process ended (%s); starting another in %.1f s",
                  how, max(0.0, self.not_before - now))

    def _endpoints_changed(self) -> bool:
        """Drain the pipe (no process reads it now): was an endpoint added or enabled?
        (select first: a process that ran before may have made the pipe blocking.)"""
        changed = False
        while select.select([self.read_fd], [], [], 0)[0]:
            try:
                data = os.read(self.read_fd, 65536)
            except (BlockingIOError, InterruptedError):
                break
            if not data:
                break
            changed = changed or ENDPOINTS_CHANGED in data
        return changed

    def reap(self) -> None:
        """Collect the process if it ended. Runs in gunicorn's SIGCHLD handling too:
        no import, no logging, never raises."""
        pid = self.pid
        if pid is None:
            return
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:  # reaped by gunicorn's loop over every child
            done, status = pid, 0
        except OSError:
            return
        if done == pid:
            self.pid = None
            self.status = status
            if _mark_process_dead is not None:
                try:
                    _mark_process_dead(pid)
                except Exception:  # noqa: BLE001 (housekeeping of metrics files)
                    pass

    # -- stopping ----------------------------------------------------------------------
    def terminate(self) -> None:
        """Ask the process to stop (it gives its leases back); no new one starts."""
        self.stopping = True
        if self.pid is not None:
            try:
                os.kill(self.pid, signal.SIGTERM)
            except OSError as exc:
                if exc.errno != errno.ESRCH:
                    raise

    def wait(self, seconds: float = STOP_WAIT) -> None:
        """Wait for the process to end; SIGKILL it after ``seconds``."""
        deadline = time.monotonic() + seconds
        while self.pid is not None and time.monotonic() < deadline:
            self.reap()
            time.sleep(0.05)
        pid = self.pid
        if pid is not None:
            log.warning("events delivery process (pid %s) did not stop; killing it", pid)
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except OSError:
                pass
            self.pid = None


_mark_process_dead: Any = None  # prometheus multiprocess clean-up (set by server.py)


# -- the process itself -------------------------------------------------------------
_stop_requested = False


def _on_stop_signal(_signum: int, _frame: Any) -> None:
    global _stop_requested
    _stop_requested = True  # (no lock taken in a signal handler)


def _run(settings: Any, arbiter: Any, read_fd: int) -> int:
    master = os.getppid()
    _die_with_parent()
    if os.getppid() != master:  # the master died before the line above
        return 0
    _leave_the_master(arbiter)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
        signal.signal(sig, _on_stop_signal)
    from gunicorn import util

    util._setproctitle(f"events delivery [{arbiter.proc_name}]")
    from ociregistry.events.delivery import Delivery
    from ociregistry.metadata.store import MetadataStore

    store = MetadataStore(settings.database_url, pool_size=settings.database.pool_size,
                          durable=settings.storage.fsync)
    if not any(endpoint.enabled for endpoint in settings.events.endpoints):
        from ociregistry.metadata import event_queries

        if not event_queries.any_enabled(store):
            store.dispose()
            return IDLE_EXIT  # (the master starts one when an endpoint is added or enabled)
    delivery = Delivery(store, settings.events)
    delivery.start()
    _read_wakes(read_fd, delivery)
    log.info("events delivery process ready (pid %s)", os.getpid())
    while not _stop_requested and os.getppid() == master:
        time.sleep(0.5)
    delivery.stop(wait=5.0)  # senders finish their request and give their leases back
    store.dispose()
    return 0


def _leave_the_master(arbiter: Any) -> None:
    """What the forked process must not keep of the master: its signal handlers,
    its listening sockets (the port would stay bound), its wake-up pipe."""
    for sig in [*arbiter.SIGNALS, signal.SIGCHLD]:
        signal.signal(sig, signal.SIG_DFL)
    for listener in arbiter.LISTENERS:
        try:
            listener.close()
        except OSError:
            pass
    for fd in arbiter.PIPE:
        try:
            os.close(fd)
        except OSError:
            pass
    for worker in arbiter.WORKERS.values():
        try:
            worker.tmp.close()
        except OSError:
            pass


COMM = b"ocireg-events"  # the process's name in ps -o comm, top, /proc/<pid>/comm


def _die_with_parent() -> None:
    """SIGTERM when the master dies, however it dies (Linux' PR_SET_PDEATHSIG);
    and a name of its own for ps and top."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # 1: PR_SET_PDEATHSIG
        libc.prctl(15, ctypes.c_char_p(COMM), 0, 0, 0)  # 15: PR_SET_NAME
    except (OSError, AttributeError):  # not Linux: the parent check still applies
        pass


def _read_wakes(read_fd: int, delivery: Any) -> None:
    import threading

    os.set_blocking(read_fd, True)  # (only this process reads it)

    def reader() -> None:
        while True:
            try:
                if not os.read(read_fd, 4096):
                    return
            except InterruptedError:
                continue
            except OSError:
                return
            delivery.wake()

    threading.Thread(target=reader, name="events-wake", daemon=True).start()
