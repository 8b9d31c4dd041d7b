"""The command line says what it did and nothing else: no alembic chatter, no secrets."""

from __future__ import annotations

import re

import yaml

from tests.ops.conftest import cli
from tests.server import RegistryProcess

# What alembic logs at INFO: plugin set-up, the migration context, one line per revision.
ALEMBIC_CHATTER = re.compile(r"setup plugin|Context impl|Will assume|Running upgrade|alembic")


def _output(result) -> str:
    return result.stdout + result.stderr


def test_gc_config_check_and_db_upgrade_print_no_alembic_lines(tmp_path):
    for args in (("gc", "--data-dir", str(tmp_path / "gc")),
                 ("config", "check", "--data-dir", str(tmp_path / "check")),
                 ("db", "upgrade", "--data-dir", str(tmp_path / "db"))):
        result = cli(*args)
        assert result.returncode == 0, _output(result)
        assert not ALEMBIC_CHATTER.search(_output(result)), (args, _output(result))


def test_db_upgrade_says_what_it_did_in_one_line(tmp_path):
    first = cli("db", "upgrade", "--data-dir", str(tmp_path))
    assert first.returncode == 0, _output(first)
    assert first.stderr == ""
    (line,) = first.stdout.splitlines()
    assert re.fullmatch(r"database schema upgraded from revision none to \d{4}", line), line
    head = line.rsplit(" ", 1)[1]
    again = cli("db", "upgrade", "--data-dir", str(tmp_path))
    assert again.returncode == 0 and again.stderr == ""
    assert again.stdout.splitlines() == [f"database schema is up to date (revision {head})"]


def test_serve_logs_its_migration_in_one_line(tmp_path):
    server = RegistryProcess(tmp_path / "data", workers=1).start()
    try:
        log = server.log_path.read_text()
    finally:
        server.stop()
    assert not ALEMBIC_CHATTER.search(log), log
    assert len(re.findall(r"database schema upgraded from revision none to \d{4}", log)) == 1


def test_config_check_masks_the_s3_secret_key_and_the_database_password(tmp_path):
    config = tmp_path / "registry.yml"
    config.write_text(yaml.safe_dump({
        "database": {"url": "postgresql+psycopg://registry:db-pa55w0rd@db.example:5432/registry"},
        "storage": {"driver": "s3", "s3": {
            "bucket": "registry", "access_key": "AKIAEXAMPLE", "secret_key": "s3-s3cr3t-value"}},
        "ui": {"secret_key": "ui-s3cr3t-value"},
        "metrics": {"username": "prom", "password": "metrics-pa55"},
    }))
    result = cli("config", "check", "--config", str(config))
    assert result.returncode == 0, _output(result)
    for secret in ("db-pa55w0rd", "s3-s3cr3t-value", "ui-s3cr3t-value", "metrics-pa55"):
        assert secret not in _output(result), secret
    effective = yaml.safe_load(result.stdout)
    # What is not secret stays readable: who connects where, which key id.
    assert effective["database"]["url"] == (
        "postgresql+psycopg://registry:********@db.example:5432/registry")
    assert effective["storage"]["s3"]["access_key"] == "AKIAEXAMPLE"
    assert effective["storage"]["s3"]["secret_key"] == "********"
    assert effective["ui"]["secret_key"] == "********"


def test_config_check_masks_secrets_given_in_the_environment(tmp_path):
    result = cli("config", "check", "--data-dir", str(tmp_path), env={
        "OCIREGISTRY_STORAGE__S3__SECRET_KEY": "env-s3-secret",
        "OCIREGISTRY_DATABASE__URL": "postgresql+psycopg://u:p%40ss@word@h/db",
    })
    assert result.returncode == 0, _output(result)
    assert "env-s3-secret" not in _output(result)
    assert "p%40ss" not in _output(result) and "word@h" not in _output(result)
    assert yaml.safe_load(result.stdout)["database"]["url"] == (
        "postgresql+psycopg://u:********@h/db")
