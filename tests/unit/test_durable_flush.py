"""storage/durable.py: a file and directories flushed together; every flush ends
before the caller goes on, and any failure is raised."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ociregistry.storage import durable


def test_the_file_and_every_directory_are_flushed(tmp_path: Path, monkeypatch) -> None:
    flushed: list[str] = []
    real = os.fsync

    def spy(fd: int) -> None:
        flushed.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(durable.os, "fsync", spy)
    (tmp_path / "a").mkdir()
    path = tmp_path / "a" / "file"
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        durable.fsync_together(fd, [str(tmp_path / "a"), str(tmp_path), str(tmp_path / "a")])
    finally:
        os.close(fd)
    # each once (a directory named twice is flushed once)
    assert sorted(flushed) == sorted([str(path), str(tmp_path / "a"), str(tmp_path)])


def test_a_failed_directory_flush_is_raised(tmp_path: Path) -> None:
    fd = os.open(tmp_path / "file", os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        with pytest.raises(FileNotFoundError):
            durable.fsync_together(fd, [str(tmp_path), str(tmp_path / "gone")])
    finally:
        os.close(fd)


def test_a_failed_file_flush_is_raised_once_the_directories_are_done(tmp_path: Path) -> None:
    read, write = os.pipe()  # fsync of a pipe: EINVAL
    try:
        with pytest.raises(OSError):
            durable.fsync_together(read, [str(tmp_path)])
        with pytest.raises(OSError):
            durable.fsync_together(read, [])
    finally:
        os.close(read)
        os.close(write)


def test_while_the_interpreter_exits_the_flushes_run_in_a_row(tmp_path: Path, monkeypatch) -> None:
    """concurrent.futures refuses new work once the interpreter is exiting (a worker's
    graceful stop); a publication still in flight then flushes on its own thread."""
    class Refusing:
        def submit(self, *_args: object) -> None:
            raise RuntimeError("cannot schedule new futures after interpreter shutdown")

    monkeypatch.setattr(durable, "executor", Refusing)
    fd = os.open(tmp_path / "file", os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        durable.fsync_together(fd, [str(tmp_path)])
        with pytest.raises(FileNotFoundError):
            durable.fsync_together(fd, [str(tmp_path / "gone")])
    finally:
        os.close(fd)
