"""A throwaway PostgreSQL 15 cluster for tests (Debian's `postgresql` package).

initdb and pg_ctl run as the ``postgres`` user (``runuser``) when the tests run
as root, as the current user otherwise. The cluster lives in a temporary
directory, listens on 127.0.0.1 on a free port (never 5432) with trust
authentication, and keeps its unix socket in that directory too, so it never
meets a system cluster. Each caller gets a database of its own.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ociregistry.metadata.store import MetadataStore
from tests.server import free_port

DRIVER = "postgresql+psycopg"


def _bindir() -> Path:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    if candidates:
        return Path(candidates[0]).parent
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    raise RuntimeError("PostgreSQL server binaries not found: apt-get install postgresql")


class PostgresCluster:
    """initdb + pg_ctl in a temporary directory; ``url(db)`` gives SQLAlchemy URLs."""

    def __init__(self) -> None:
        self.bindir = _bindir()
        self.port = free_port()
        while self.port == 5432:
            self.port = free_port()
        self.base = Path(tempfile.mkdtemp(prefix="ociregistry-pg-"))
        self.data = self.base / "data"
        self.log = self.base / "postgres.log"
        self.as_postgres = os.geteuid() == 0
        if self.as_postgres:
            user = pwd.getpwnam("postgres")
            os.chown(self.base, user.pw_uid, user.pw_gid)
        os.chmod(self.base, 0o700)

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self.as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        # Whatever PG* variables the environment holds must not redirect us.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        result = subprocess.run(cmd, cwd=self.base, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            log = self.log.read_text()[-3000:] if self.log.exists() else ""
            raise RuntimeError(
                f"{' '.join(cmd)} failed ({result.returncode}):\n"
                f"{result.stdout}\n{result.stderr}\n{log}"
            )
        return result

    def start(self) -> PostgresCluster:
        self._run(
            "initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
            "--encoding=UTF8", "--locale=C", "--no-sync",
        )
        self._options = " ".join([
            "-c listen_addresses=127.0.0.1",
            f"-c port={self.port}",
            f"-c unix_socket_directories={self.base}",
            "-c max_connections=300",
            # A throwaway cluster: durability buys nothing here.
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off",
        ])
        self.start_server()
        return self

    def start_server(self) -> None:
        """Start the server (again) on its port, with its data."""
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", self._options,
                  "-w", "-t", "60", "start")

    def stop_server(self, mode: str = "fast") -> None:
        """Stop the server, keeping its data: ``fast`` ends every session at once (its
        transactions roll back), as a restart for an upgrade or a failover does."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def stop(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.base, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"{DRIVER}://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str | None = None) -> str:
        """A new empty database; its SQLAlchemy URL."""
        return create_database(self.url(), name)


def create_database(server_url: str, name: str | None = None) -> str:
    """CREATE DATABASE on the server of ``server_url``; the new database's URL."""
    import sqlalchemy as sa

    name = name or f"registry_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(server_url, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    finally:
        engine.dispose()
    return str(sa.engine.make_url(server_url).set(database=name).render_as_string(False))


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """One PostgreSQL cluster for the session."""
    cluster = PostgresCluster().start()
    yield cluster
    cluster.stop()


@pytest.fixture
def pg_url(postgres: PostgresCluster) -> str:
    """A fresh database on the session's cluster."""
    return postgres.create_database()


@pytest.fixture(name="store")
def migrated_store(pg_url: str) -> Iterator[MetadataStore]:
    """A MetadataStore on a fresh PostgreSQL database, schema at the newest migration
    (a test module imports ``migrated_store`` to have it as ``store``)."""
    db = MetadataStore(pg_url)
    assert db.dialect == "postgresql"
    db.create_schema()
    yield db
    db.dispose()
