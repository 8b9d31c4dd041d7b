"""The command line: config check, precedence, exit codes, scheduled GC."""

from __future__ import annotations

import sqlite3
import time

import requests
import yaml

from tests.helpers import sha256
from tests.ops.conftest import cli
from tests.server import RegistryProcess


def test_config_check_prints_the_effective_configuration_with_secrets_masked(tmp_path):
    config = tmp_path / "registry.yml"
    config.write_text(
        "http:\n  port: 6000\nmetrics:\n  username: prom\n  password: hunter2\n"
        "gc:\n  interval_seconds: 600\n"
    )
    result = cli("config", "check", "--config", str(config))
    assert result.returncode == 0, result.stderr
    effective = yaml.safe_load(result.stdout)
    assert effective["http"]["port"] == 6000
    assert effective["gc"]["interval_seconds"] == 600
    assert effective["metrics"]["username"] == "prom"
    assert effective["metrics"]["password"] == "********"
    assert "hunter2" not in result.stdout


def test_environment_overrides_the_file_and_flags_override_both(tmp_path):
    config = tmp_path / "registry.yml"
    config.write_text("http:\n  port: 6000\ndata_dir: /from/file\n")
    result = cli("config", "check", "--config", str(config), env={"OCIREGISTRY_HTTP__PORT": "7000"})
    assert yaml.safe_load(result.stdout)["http"]["port"] == 7000
    result = cli(
        "config", "check", "--config", str(config), "--data-dir", "/from/flag",
        env={"OCIREGISTRY_DATA_DIR": "/from/env"},
    )
    assert yaml.safe_load(result.stdout)["data_dir"] == "/from/flag"


def test_config_yml_in_the_working_directory_is_read(tmp_path):
    (tmp_path / "config.yml").write_text("delete_enabled: false\n")
    result = cli("config", "check", cwd=tmp_path)
    assert yaml.safe_load(result.stdout)["delete_enabled"] is False


def test_an_invalid_file_is_refused_naming_key_value_and_expectation(tmp_path):
    config = tmp_path / "bad.yml"
    config.write_text("http:\n  port: lots\n")
    result = cli("config", "check", "--config", str(config))
    assert result.returncode == 2
    assert "http.port" in result.stderr and "'lots'" in result.stderr
    assert "integer" in result.stderr
    config.write_text("storage:\n  rooot: /x\n")  # a typo is an error, not ignored
    result = cli("config", "check", "--config", str(config))
    assert result.returncode == 2 and "storage.rooot" in result.stderr
    # the server refuses to start with it, with the same message
    result = cli("serve", "--config", str(config), "--port", "0")
    assert result.returncode == 2 and "storage.rooot" in result.stderr


def test_exit_codes(tmp_path):
    assert cli("version").returncode == 0
    assert cli("nonsense").returncode == 2
    assert cli("gc", "--data-dir", str(tmp_path / "d")).returncode == 0
    assert cli("check", "--data-dir", str(tmp_path / "d")).returncode == 0
    for command in ("serve", "gc", "check", "du", "config", "user", "version"):
        result = cli(command, "--help")
        assert result.returncode == 0 and "usage:" in result.stdout, command


def test_scheduled_gc_runs_once_per_interval_across_workers(tmp_path):
    env = {
        "OCIREGISTRY_GC__INTERVAL_SECONDS": "4",
        "OCIREGISTRY_GC__GRACE_PERIOD_SECONDS": "0",
    }
    data = tmp_path / "data"
    server = RegistryProcess(data, workers=3, env=env).start()
    try:
        blob = b"nobody references me"
        requests.post(
            f"{server.url}/v2/sched/x/blobs/uploads/", params={"digest": sha256(blob)}, data=blob
        )
        # The scheduler frees it on its own (bounded wait, no timing assertion).
        for _ in range(600):
            runs = _runs(data)
            if len(runs) >= 3:
                break
            time.sleep(0.1)
        assert len(runs) >= 3, runs
        assert requests.head(f"{server.url}/v2/sched/x/blobs/{sha256(blob)}").status_code == 404
    finally:
        server.stop()
    # Three workers ask, but each run starts at least an interval after the last ended.
    for (_, previous_end), (next_start, _) in zip(runs, runs[1:], strict=False):
        assert next_start >= previous_end + 4 - 0.01


def _runs(data) -> list[tuple[float, float]]:
    with sqlite3.connect(data / "registry.db") as db:
        return db.execute(
            "SELECT started_at, finished_at FROM gc_runs WHERE dry_run = 0 ORDER BY started_at"
        ).fetchall()
