"""SQLite writers queue on a thread lock and a flock (writer_queue.py), not in the busy handler.

The second writers here run with ``busy_timeout=0``: if they ever reached
``BEGIN IMMEDIATE`` while the write lock was taken they would fail at once with
"database is locked". That they succeed, after being seen waiting for the flock
in /proc/locks, shows they queued in the kernel and started after the commit.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from ociregistry.metadata import schema, writer_queue
from ociregistry.metadata.store import MetadataStore
from ociregistry.metadata.writer_queue import SUFFIX

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/locks"), reason="needs Linux /proc/locks")

WAIT = 60.0  # generous: a loaded 2-core machine

# A writer in its own process: argv = db path, repository name, busy timeout (ms),
# "hold" to stop inside the transaction until a line arrives on stdin.
WRITER = """
import sys
from sqlalchemy import event
from ociregistry.metadata.store import MetadataStore
db, name, busy, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
store = MetadataStore(f"sqlite:///{db}")
@event.listens_for(store.engine, "connect")
def _busy(dbapi_conn, _record):
    dbapi_conn.execute(f"PRAGMA busy_timeout={busy}")
print("ready", flush=True)
with store.write() as conn:
    store.ensure_repository(conn, name)
    if mode == "hold":
        print("in", flush=True)
        sys.stdin.readline()
print("done", flush=True)
if mode == "hold":
    sys.stdin.readline()  # closing the last connection checkpoints: not while others write
"""

# Holds the flock of the lock file (nothing else) until stdin closes.
FLOCKER = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
print("in", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    path = tmp_path / "registry.db"
    store = MetadataStore(f"sqlite:///{path}")
    schema.metadata.create_all(store.engine)
    store.dispose()
    return path


def _spawn(script: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", script, *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _expect(proc: subprocess.Popen[str], line: str) -> None:
    got = proc.stdout.readline().strip() if proc.stdout else ""
    assert got == line, f"expected {line!r}, got {got!r}; stderr: {_stderr(proc)}"


def _stderr(proc: subprocess.Popen[str]) -> str:
    if proc.poll() is None:
        return "(still running)"
    return proc.stderr.read() if proc.stderr else ""


def _flocks(lock_file: Path) -> list[tuple[bool, int]]:
    """(waiting, pid) of every flock on the file, from /proc/locks."""
    if not lock_file.exists():
        return []
    inode = os.stat(lock_file).st_ino
    found = []
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        waiting = fields[1] == "->"
        if waiting:
            fields = fields[1:]
        if fields[1] == "FLOCK" and int(fields[5].rsplit(":", 1)[1]) == inode:
            found.append((waiting, int(fields[4])))
    return found


def _poll(check, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + WAIT
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _waits_for_flock(lock_file: Path, proc: subprocess.Popen[str]) -> None:
    _poll(lambda: proc.poll() is not None or (True, proc.pid) in _flocks(lock_file),
          "the second writer to wait for the flock")
    assert proc.poll() is None, f"the second writer did not wait: {_stderr(proc)}"


def _flock_free(lock_file: Path) -> bool:
    fd = os.open(lock_file, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def _names(db_path: Path) -> list[str]:
    engine = sa.create_engine(f"sqlite:///{db_path}")
    with engine.connect() as conn:
        rows = conn.execute(sa.select(schema.repositories.c.name)
                            .order_by(schema.repositories.c.id)).scalars().all()
    engine.dispose()
    return list(rows)


def _finish(proc: subprocess.Popen[str], rest: str = "done") -> None:
    out, err = proc.communicate("\n", timeout=WAIT)
    assert proc.returncode == 0 and out.strip() == rest, err


def test_a_second_process_waits_in_flock_and_starts_after_the_commit(db_path: Path) -> None:
    lock_file = Path(str(db_path) + SUFFIX)
    first = _spawn(WRITER, str(db_path), "first", "60000", "hold")
    second = None
    try:
        _expect(first, "ready")
        _expect(first, "in")
        assert _flocks(lock_file) == [(False, first.pid)]
        second = _spawn(WRITER, str(db_path), "second", "0", "write")
        _expect(second, "ready")
        _waits_for_flock(lock_file, second)
        first.stdin.write("commit\n")  # type: ignore[union-attr]
        first.stdin.flush()  # type: ignore[union-attr]
        _expect(first, "done")
        _finish(second)  # busy_timeout=0: it never met SQLite's write lock taken
        _finish(first, rest="")
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    assert _names(db_path) == ["first", "second"]
    assert _flock_free(lock_file)


def test_a_killed_holder_releases_the_queue(db_path: Path) -> None:
    lock_file = Path(str(db_path) + SUFFIX)
    doomed = _spawn(WRITER, str(db_path), "doomed", "60000", "hold")
    second = None
    try:
        _expect(doomed, "ready")
        _expect(doomed, "in")
        second = _spawn(WRITER, str(db_path), "survivor", "0", "write")
        _expect(second, "ready")
        _waits_for_flock(lock_file, second)
        os.kill(doomed.pid, signal.SIGKILL)  # mid-transaction, holding the flock
        doomed.wait(timeout=WAIT)
        _finish(second)
    finally:
        for proc in (doomed, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    assert _names(db_path) == ["survivor"]  # the killed transaction rolled back


def test_a_stuck_flock_holder_is_waited_for_only_until_the_timeout(db_path: Path) -> None:
    lock_file = Path(str(db_path) + SUFFIX)
    holder = _spawn(FLOCKER, str(lock_file))
    try:
        _expect(holder, "in")
        store = MetadataStore(f"sqlite:///{db_path}")
        store.writer_queue.timeout = 0.3
        told: list[int] = []
        store.writer_queue.on_gave_up = lambda: told.append(1)  # (runtime: the metric)
        with store.write() as conn:  # goes on without the flock: SQLite's lock is free
            store.ensure_repository(conn, "anyway")
        with store.write() as conn:  # again: the waiting thread is taken over, not doubled
            store.ensure_repository(conn, "again")
        assert store.writer_queue.gave_up == 2 and told == [1, 1]
        waiting = [t for t in threading.enumerate() if t.name == "sqlite-writer-wait"]
        assert len(waiting) == 1
        assert (False, holder.pid) in _flocks(lock_file)  # still held by the stuck process
        # The abandoned helper thread gets the lock once the holder goes, and passes it on.
        holder.stdin.close()  # type: ignore[union-attr]
        holder.wait(timeout=WAIT)
        _poll(lambda: _flock_free(lock_file), "the abandoned wait to unlock")
        with store.write() as conn:
            store.ensure_repository(conn, "after")
        assert store.writer_queue.gave_up == 2
        # The helper thread lives on for the next wait (one per queue and process).
        assert [t for t in threading.enumerate() if t.name == "sqlite-writer-wait"] == waiting
        store.dispose()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    assert _names(db_path) == ["anyway", "again", "after"]


def test_waits_for_the_flock_share_one_helper_thread(db_path: Path) -> None:
    """Each write that finds the flock taken waits for it in the same long-lived helper
    thread (a thread started per wait cost its creation on most writes under load)."""
    lock_file = Path(str(db_path) + SUFFIX)
    store = MetadataStore(f"sqlite:///{db_path}")
    helpers: list[threading.Thread] = []
    try:
        for i in range(4):
            other = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(other, fcntl.LOCK_EX)  # another process's writer, as it were
            done: list[str] = []

            def write(i: int = i, done: list[str] = done) -> None:
                with store.write() as conn:
                    store.ensure_repository(conn, f"w/{i}")
                done.append("ok")

            writer = threading.Thread(target=write)
            writer.start()
            _poll(lambda: (True, os.getpid()) in _flocks(lock_file), "the write to wait")
            assert done == []
            fcntl.flock(other, fcntl.LOCK_UN)
            os.close(other)
            writer.join(WAIT)
            assert done == ["ok"]
            helpers.append(store.writer_queue._helper.thread)  # type: ignore[union-attr]
        assert len(set(helpers)) == 1 and helpers[0].is_alive()
        assert store.writer_queue.gave_up == 0
    finally:
        store.dispose()
    assert _names(db_path) == [f"w/{i}" for i in range(4)]


def test_an_idle_helper_leaves_and_the_next_wait_starts_another(
        db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(writer_queue._Helper, "IDLE", 0.05)
    lock_file = Path(str(db_path) + SUFFIX)
    store = MetadataStore(f"sqlite:///{db_path}")
    try:
        helpers = []
        for i in range(2):
            other = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(other, fcntl.LOCK_EX)
            writer = threading.Thread(target=lambda i=i: _write(store, f"idle/{i}"))
            writer.start()
            _poll(lambda: (True, os.getpid()) in _flocks(lock_file), "the write to wait")
            fcntl.flock(other, fcntl.LOCK_UN)
            os.close(other)
            writer.join(WAIT)
            helper = store.writer_queue._helper  # type: ignore[union-attr]
            helper.thread.join(WAIT)  # idle: it leaves
            assert not helper.thread.is_alive()
            assert not helper.submit(None)  # type: ignore[arg-type]
            helpers.append(helper)
        assert helpers[0] is not helpers[1]
    finally:
        store.dispose()
    assert _names(db_path) == ["idle/0", "idle/1"]


def _write(store: MetadataStore, name: str) -> None:
    with store.write() as conn:
        store.ensure_repository(conn, name)


def test_a_thread_waits_for_the_thread_lock_only_until_the_timeout(db_path: Path) -> None:
    store = MetadataStore(f"sqlite:///{db_path}")
    queue = store.writer_queue
    queue.timeout = 0.3
    inside, leave = threading.Event(), threading.Event()

    def hold() -> None:
        with queue.hold():
            inside.set()
            leave.wait(WAIT)

    other = threading.Thread(target=hold)
    other.start()
    try:
        assert inside.wait(WAIT)
        with store.write() as conn:  # no SQLite transaction is open: it commits
            store.ensure_repository(conn, "anyway")
        assert queue.gave_up == 1
    finally:
        leave.set()
        other.join(WAIT)
    assert not queue._thread_lock.locked()
    store.dispose()


def test_a_write_inside_a_write_does_not_wait_for_itself(db_path: Path) -> None:
    store = MetadataStore(f"sqlite:///{db_path}")
    queue = store.writer_queue
    with store.write() as conn:
        store.ensure_repository(conn, "outer")
        with queue.hold():  # the same thread: skipped, not a deadlock
            assert queue._thread_lock.locked()
        assert queue._thread_lock.locked()
    assert queue.gave_up == 0 and not queue._thread_lock.locked()
    other = MetadataStore(f"sqlite:///{db_path}")  # the same database: the same queue
    assert other.writer_queue is queue
    with store.write(), other.writer_queue.hold():
        pass
    assert queue.gave_up == 0 and not queue._thread_lock.locked()
    store.dispose()
    other.dispose()


def test_errors_and_invalidated_connections_release_the_queue(db_path: Path) -> None:
    lock_file = Path(str(db_path) + SUFFIX)
    store = MetadataStore(f"sqlite:///{db_path}")
    with pytest.raises(RuntimeError), store.write() as conn:
        store.ensure_repository(conn, "rolled-back")
        raise RuntimeError("boom")
    assert _flock_free(lock_file) and not store.writer_queue._thread_lock.locked()
    with pytest.raises(Exception), store.progress_write() as conn:  # noqa: B017
        store.ensure_repository(conn, "lost")
        conn.invalidate()  # the connection dies mid-transaction
        store.ensure_repository(conn, "lost-too")
    assert _flock_free(lock_file) and not store.writer_queue._thread_lock.locked()
    with store.write() as conn:
        store.ensure_repository(conn, "kept")
    store.dispose()
    assert _names(db_path) == ["kept"]


def test_postgresql_has_no_queue() -> None:
    from ociregistry.metadata.writer_queue import WriterQueue

    assert WriterQueue.for_url("postgresql://u@h/db", 60) is None
    assert WriterQueue.for_url("sqlite://", 60).path is None  # type: ignore[union-attr]
