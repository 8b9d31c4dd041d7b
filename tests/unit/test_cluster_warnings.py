"""Start-up warnings for settings that break a cluster quietly."""

from __future__ import annotations

import logging

import pytest

from ociregistry.config import Settings
from ociregistry.server import check_auth

PG = "postgresql+psycopg://registry@127.0.0.1:1/registry"
WARNING = "auth.token.key is not set"


@pytest.mark.parametrize(
    ("database", "storage", "key", "warned"),
    [
        (PG, "filesystem", "", True),  # a shared database: several instances
        ("", "s3", "", True),  # a shared bucket
        (PG, "s3", "KEY", False),  # the key is given: every instance signs alike
        ("", "filesystem", "", False),  # the embedded default: one instance
    ],
)
def test_a_generated_token_key_on_shared_state_is_warned_about(
    tmp_path, caplog, database, storage, key, warned
):
    if key:
        key = str(tmp_path / "signing.pem")  # generated there on first start
    settings = Settings(
        data_dir=str(tmp_path / "data"),
        database={"url": database},
        storage={"driver": storage, "s3": {"bucket": "b"}},
        auth={"token": {"enabled": True, "key": key, "realm": "https://r/auth/token"}},
    )
    with caplog.at_level(logging.WARNING, logger="ociregistry"):
        check_auth(settings)
    assert (WARNING in caplog.text) is warned
