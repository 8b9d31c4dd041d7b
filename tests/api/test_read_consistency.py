"""No stale read after a write, across the processes of one server and across two
servers on one data directory (tests/api/read_consistency.py says what is checked)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.api.read_consistency import check_reads_follow_writes
from tests.server import RegistryProcess


@pytest.fixture
def two_servers(tmp_path: Path) -> Iterator[list[RegistryProcess]]:
    data = tmp_path / "data"
    first = RegistryProcess(data, workers=2).start()
    try:
        second = RegistryProcess(data, workers=2).start()
    except BaseException:
        first.stop()
        raise
    yield [first, second]
    for server in (first, second):
        server.stop()


@pytest.mark.single_node("two servers of their own on one data directory")
def test_reads_follow_writes_across_servers_and_workers(two_servers, repo) -> None:
    check_reads_follow_writes([s.url for s in two_servers], repo)


def test_reads_follow_writes_on_one_server(registry, repo) -> None:
    check_reads_follow_writes([registry.url], repo)
