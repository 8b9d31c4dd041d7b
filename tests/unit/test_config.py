"""Settings: defaults < YAML file < OCIREGISTRY_X__Y environment < overrides (flags)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ociregistry.config import ConfigError, Settings, load_settings


@pytest.fixture(autouse=True)
def _empty_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # load_settings reads ./config.yml when no file is given: keep the repo's out of it.
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def test_defaults():
    s = load_settings(environ={})
    assert s.data_dir == "./data"
    assert s.delete_enabled is True
    assert (s.http.host, s.http.port, s.http.workers, s.http.threads) == ("0.0.0.0", 5000, 0, 8)
    assert s.storage.driver == "filesystem"
    assert s.gc.grace_period_seconds == 3600
    assert s.gc.upload_ttl_seconds == 86400
    assert s.limits.max_manifest_size == 4 * 1024 * 1024
    assert s.limits.max_blob_size == 0


def test_derived_paths_default_under_the_data_dir(tmp_path):
    s = load_settings(environ={}, overrides={"data_dir": str(tmp_path / "d")})
    assert s.storage_root == str(tmp_path / "d")
    assert s.database_url == "sqlite:///" + str(tmp_path / "d" / "registry.db")
    s = load_settings(
        environ={},
        overrides={
            "data_dir": str(tmp_path / "d"),
            "storage": {"root": str(tmp_path / "blobs")},
            "database": {"url": "postgresql://u@h/db"},
        },
    )
    assert s.storage_root == str(tmp_path / "blobs")
    assert s.database_url == "postgresql://u@h/db"


def test_relative_data_dir_is_resolved_against_the_working_directory():
    s = load_settings(environ={})
    assert s.storage_root == os.path.join(os.getcwd(), "data")


def test_yaml_file_beats_defaults(tmp_path):
    cfg = write(
        tmp_path / "c.yml",
        "data_dir: /srv/registry\n"
        "delete_enabled: false\n"
        "http: {port: 6000}\n"
        "gc: {grace_period_seconds: 60}\n",
    )
    s = load_settings(cfg, environ={})
    assert s.data_dir == "/srv/registry"
    assert s.delete_enabled is False
    assert s.http.port == 6000
    assert s.http.host == "0.0.0.0"  # the rest of the section keeps its defaults
    assert s.gc.grace_period_seconds == 60
    assert s.gc.upload_ttl_seconds == 86400


def test_config_yml_in_the_working_directory_is_read_by_default():
    write(Path("config.yml"), "http: {port: 6001}\n")
    assert load_settings(environ={}).http.port == 6001


def test_empty_yaml_file_means_defaults(tmp_path):
    assert load_settings(write(tmp_path / "c.yml", ""), environ={}) == Settings()


def test_environment_beats_yaml(tmp_path):
    cfg = write(tmp_path / "c.yml", "http: {port: 6000, host: 127.0.0.1}\ndelete_enabled: true\n")
    env = {
        "OCIREGISTRY_HTTP__PORT": "5001",
        "OCIREGISTRY_DELETE_ENABLED": "false",
        "OCIREGISTRY_GC__GRACE_PERIOD_SECONDS": "0",
        "OCIREGISTRY_DATA_DIR": "/var/lib/registry",
        "OTHER_VARIABLE": "ignored",
    }
    s = load_settings(cfg, environ=env)
    assert s.http.port == 5001
    assert s.http.host == "127.0.0.1"  # merged, not replaced
    assert s.delete_enabled is False
    assert s.gc.grace_period_seconds == 0
    assert s.data_dir == "/var/lib/registry"


def test_os_environ_is_used_by_default(monkeypatch):
    monkeypatch.setenv("OCIREGISTRY_HTTP__THREADS", "3")
    assert load_settings().http.threads == 3


def test_overrides_beat_environment(tmp_path):
    cfg = write(tmp_path / "c.yml", "http: {port: 6000}\n")
    s = load_settings(
        cfg,
        overrides={"http": {"port": 7000}, "data_dir": "/flag"},
        environ={"OCIREGISTRY_HTTP__PORT": "5001", "OCIREGISTRY_HTTP__WORKERS": "3",
                 "OCIREGISTRY_DATA_DIR": "/env"},
    )
    assert s.http.port == 7000
    assert s.http.workers == 3
    assert s.data_dir == "/flag"


@pytest.mark.parametrize(
    "name, value, attr",
    [
        # environment values are strings: they must stay strings where a string is wanted
        ("OCIREGISTRY_DATA_DIR", "2024", ("data_dir",)),
        ("OCIREGISTRY_DATA_DIR", "0755", ("data_dir",)),
        ("OCIREGISTRY_DATA_DIR", "on", ("data_dir",)),
        ("OCIREGISTRY_DATABASE__URL", "postgresql://u:{pw@h/db", ("database", "url")),
        ("OCIREGISTRY_DATABASE__URL", "postgresql://u:p@h/db?x=[1", ("database", "url")),
        ("OCIREGISTRY_DATA_DIR", "*scratch", ("data_dir",)),  # not a YAML alias
        ("OCIREGISTRY_HTTP__HOST", "::", ("http", "host")),  # IPv6 "any", not a mapping
    ],
)
def test_environment_strings_are_kept_as_written(name, value, attr):
    s = load_settings(environ={name: value})
    node = s
    for part in attr:
        node = getattr(node, part)
    assert node == value


@pytest.mark.parametrize(
    "env, key",
    [
        ({"OCIREGISTRY_HTTP__PORT": "abc"}, "http.port"),
        ({"OCIREGISTRY_HTTP__PORT": "70000"}, "http.port"),
        ({"OCIREGISTRY_HTTP__THREADS": "0"}, "http.threads"),
        ({"OCIREGISTRY_DELETE_ENABLED": "maybe"}, "delete_enabled"),
        ({"OCIREGISTRY_GC__GRACE_PERIOD_SECONDS": "-1"}, "gc.grace_period_seconds"),
        ({"OCIREGISTRY_LIMITS__MAX_MANIFEST_SIZE": "10"}, "limits.max_manifest_size"),
        ({"OCIREGISTRY_HTTP__NO_SUCH_KEY": "1"}, "http.no_such_key"),
        ({"OCIREGISTRY_NO_SUCH_SECTION__KEY": "1"}, "no_such_section"),
    ],
)
def test_invalid_environment_value_names_the_key(env, key):
    with pytest.raises(ConfigError) as info:
        load_settings(environ=env)
    assert key in str(info.value)


def test_invalid_yaml_value_names_the_key(tmp_path):
    cfg = write(tmp_path / "c.yml", "gc:\n  upload_ttl_seconds: soon\n")
    with pytest.raises(ConfigError) as info:
        load_settings(cfg, environ={})
    assert "gc.upload_ttl_seconds" in str(info.value)
    assert "soon" in str(info.value)


def test_unreadable_or_malformed_files_are_config_errors(tmp_path):
    with pytest.raises(ConfigError):
        load_settings(str(tmp_path / "missing.yml"), environ={})
    with pytest.raises(ConfigError):
        load_settings(write(tmp_path / "bad.yml", "http: [unclosed\n"), environ={})
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path / "list.yml", "- a\n- b\n"), environ={})
    assert "mapping" in str(info.value)
