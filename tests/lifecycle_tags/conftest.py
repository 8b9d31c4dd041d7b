"""A live registry with users (alice in group release, bob, admin root), robots and tag rules."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.lifecycle_tags.support import Live, create_robot, start, write_config


@pytest.fixture(scope="package")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    root = tmp_path_factory.mktemp("tags")
    config = write_config(root)
    robots = {name: create_robot(config, root / "data", name) for name in ("deployer", "other")}
    server = start(root, config)
    try:
        yield Live(server.url, root / "data", config, robots)
    finally:
        server.stop()


@pytest.fixture
def suffix() -> str:
    return uuid.uuid4().hex[:10]
