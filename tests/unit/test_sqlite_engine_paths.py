"""Where the SQLite engine makes directories for its database file."""

from __future__ import annotations

import sqlite3

from ociregistry.metadata.engine import create_engine


def test_a_plain_path_gets_its_directory(tmp_path):
    db = tmp_path / "deep" / "er" / "registry.db"
    engine = create_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        conn.exec_driver_sql("SELECT 1")
    engine.dispose()
    assert db.parent.is_dir()


def test_a_file_uri_makes_no_directory_in_the_working_directory(tmp_path, monkeypatch):
    db = tmp_path / "registry.db"
    sqlite3.connect(db).close()
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    engine = create_engine(f"sqlite:///file:{db}?mode=rw&uri=true")
    with engine.connect() as conn:
        conn.exec_driver_sql("SELECT 1")
    engine.dispose()
    assert list(work.iterdir()) == []  # no "file:" directory left behind
