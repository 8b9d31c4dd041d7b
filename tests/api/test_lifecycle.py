"""Starting and stopping the server: signals, data directory, restarts, command line."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import pytest
import requests

import ociregistry
from tests.helpers import OCI_MANIFEST, assert_error, make_image, put_manifest, sha256
from tests.server import ROOT, RegistryProcess, free_port, serving_workers

REPO = "life/app"


def cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None):
    return subprocess.run(
        [sys.executable, "-m", "ociregistry", *args],
        capture_output=True, text=True, timeout=120, cwd=cwd, env={**os.environ, **(env or {})},
    )


def port_is_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def workers_of(pid: int, expected: int) -> list[int]:
    """The arbiter's worker processes, once all ``expected`` have been forked."""
    for _ in range(300):
        workers = serving_workers(pid)
        if len(workers) >= expected:
            return workers
        time.sleep(0.1)
    return serving_workers(pid)


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def push_image(server: RegistryProcess, ref: str = "v1") -> tuple[str, dict]:
    manifest = make_image(server.url, REPO)
    r = put_manifest(server.url, REPO, ref, manifest)
    assert r.status_code == 201, r.text
    return r.headers["Docker-Content-Digest"], manifest


def assert_pulls(server: RegistryProcess, ref: str, manifest: dict) -> None:
    r = requests.get(f"{server.url}/v2/{REPO}/manifests/{ref}", headers={"Accept": OCI_MANIFEST})
    assert r.status_code == 200
    assert json.loads(r.content) == manifest
    for desc in [manifest["config"], *manifest["layers"]]:
        r = requests.get(f"{server.url}/v2/{REPO}/blobs/{desc['digest']}")
        assert r.status_code == 200
        assert sha256(r.content) == desc["digest"]


# -- signals ----------------------------------------------------------------------------
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stops_cleanly_on_signal(tmp_path, sig):
    server = RegistryProcess(tmp_path / "data").start()
    push_image(server)
    workers = workers_of(server.proc.pid, server.workers)
    assert len(workers) == server.workers

    code = server.stop(sig)

    # gunicorn's arbiter treats both as a normal shutdown and exits 0
    assert code == 0
    log = server.log_path.read_text()
    assert "Shutting down" in log
    assert "Traceback" not in log
    assert not port_is_open(server.port)
    assert not any(running(pid) for pid in workers)  # no worker left behind


def test_sigterm_lets_a_request_in_flight_finish(tmp_path):
    """A graceful stop: an upload chunk being received when SIGTERM arrives completes."""
    server = RegistryProcess(tmp_path / "data").start()
    r = requests.post(f"{server.url}/v2/{REPO}/blobs/uploads/")
    assert r.status_code == 202
    location = r.headers["Location"]
    path = location if location.startswith("/") else "/" + location.split("/", 3)[3]
    upload_id = path.rsplit("/", 1)[1]
    # Bodies are received into 1 MiB buffers, written whole: send more than two of
    # them, then the upload file grows while the rest of the body is still to come.
    data = os.urandom(4 * 1024 * 1024)
    half = len(data) * 5 // 8
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
        sock.sendall(
            f"PATCH {path} HTTP/1.1\r\nHost: {server.host}\r\n"
            f"Content-Type: application/octet-stream\r\nContent-Length: {len(data)}\r\n"
            f"Content-Range: 0-{len(data) - 1}\r\nConnection: close\r\n\r\n".encode()
            + data[:half]
        )
        # wait until the server is writing this chunk: the request is in flight
        upload_file = server.data_dir / "uploads" / upload_id
        for _ in range(600):
            if upload_file.stat().st_size > 0:
                break
            time.sleep(0.05)
        assert upload_file.stat().st_size > 0
        server.proc.send_signal(signal.SIGTERM)
        sock.sendall(data[half:])
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    assert response.startswith(b"HTTP/1.1 202"), response[:300]
    assert f"Range: 0-{len(data) - 1}".encode() in response
    assert server.proc.wait(timeout=60) == 0
    server._log.close()
    # the whole chunk was kept: after a restart the upload finishes with the right digest
    server.start()
    try:
        r = requests.get(server.url + path)
        assert r.status_code == 204
        assert r.headers["Range"] == f"0-{len(data) - 1}"
        r = requests.put(server.url + path, params={"digest": sha256(data)})
        assert r.status_code == 201, r.text
    finally:
        server.stop()


# -- data directory and restarts ---------------------------------------------------------
def test_data_dir_is_created_on_first_start(tmp_path):
    data = tmp_path / "data"
    assert not data.exists()
    server = RegistryProcess(data).start()
    try:
        assert data.is_dir()
        if "OCIREGISTRY_DATABASE__URL" not in server.env:  # else PostgreSQL (tests/server.py)
            assert (data / "registry.db").is_file()
        assert (data / "blobs").is_dir()
        assert (data / "uploads").is_dir()
        digest, _ = push_image(server)
        encoded = digest.split(":")[1]
        assert any((data / "blobs" / "sha256").iterdir())
        assert not (data / "blobs" / "sha256" / encoded[:2] / encoded).exists()  # manifest in db
    finally:
        server.stop()


def test_data_survives_a_restart(fresh_registry):
    digest, manifest = push_image(fresh_registry, "v1")
    r = requests.post(f"{fresh_registry.url}/v2/{REPO}/blobs/uploads/")
    location = r.headers["Location"]
    location = fresh_registry.url + location if location.startswith("/") else location
    data = os.urandom(5000)
    r = requests.patch(
        location, data=data[:3000],
        headers={"Content-Type": "application/octet-stream", "Content-Range": "0-2999"},
    )
    assert r.status_code == 202

    assert fresh_registry.stop() == 0
    fresh_registry.start()

    assert_pulls(fresh_registry, "v1", manifest)
    assert_pulls(fresh_registry, digest, manifest)
    assert requests.get(f"{fresh_registry.url}/v2/{REPO}/tags/list").json()["tags"] == ["v1"]
    assert REPO in requests.get(f"{fresh_registry.url}/v2/_catalog").json()["repositories"]
    # the upload session survived too, at its offset
    r = requests.get(location)
    assert r.status_code == 204
    assert r.headers["Range"] == "0-2999"
    r = requests.patch(
        location, data=data[3000:],
        headers={"Content-Type": "application/octet-stream", "Content-Range": "3000-4999"},
    )
    assert r.status_code == 202
    r = requests.put(location, params={"digest": sha256(data)})
    assert r.status_code == 201
    assert sha256(requests.get(f"{fresh_registry.url}/v2/{REPO}/blobs/{sha256(data)}").content) == (
        sha256(data)
    )


# -- command line -----------------------------------------------------------------------
SERVE_FLAGS = ["--host", "--port", "--data-dir", "--workers", "--config"]


def test_serve_help_lists_the_flags():
    result = cli("serve", "--help")
    assert result.returncode == 0
    for flag in SERVE_FLAGS:
        assert flag in result.stdout


def test_app_py_help_lists_the_flags(tmp_path):
    # from any directory, as the README's `python app.py`
    result = subprocess.run(
        [sys.executable, str(ROOT / "app.py"), "--help"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert result.returncode == 0
    for flag in SERVE_FLAGS:
        assert flag in result.stdout


def test_console_script_and_subcommands_help():
    script = Path(sys.executable).parent / "ociregistry"
    assert script.exists(), "the ociregistry console script is installed"
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    for command in ("serve", "gc", "version"):
        assert command in result.stdout
    result = subprocess.run(
        [str(script), "gc", "--help"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0
    for flag in ("--dry-run", "--delete-untagged", "--data-dir", "--config"):
        assert flag in result.stdout


def test_version():
    result = cli("version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"ociregistry {ociregistry.__version__}"
    assert ociregistry.__version__ == version("python-docker-registry")


def test_unknown_command_and_flag_fail():
    assert cli("frobnicate").returncode == 2
    result = cli("serve", "--no-such-flag")
    assert result.returncode == 2
    assert "--no-such-flag" in result.stderr


def test_invalid_setting_fails_fast_and_names_the_key(tmp_path):
    result = cli(
        "serve", "--data-dir", str(tmp_path / "data"),
        env={"OCIREGISTRY_GC__GRACE_PERIOD_SECONDS": "soon"}, cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "gc.grace_period_seconds" in result.stderr
    assert "Traceback" not in result.stderr


def test_port_in_use_fails_instead_of_hanging(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "ociregistry", "serve", "--host", "127.0.0.1",
             "--port", str(port), "--data-dir", str(tmp_path / "data"), "--workers", "1"],
            capture_output=True, text=True, timeout=120, cwd=tmp_path,
        )
    assert result.returncode != 0
    assert "in use" in result.stdout + result.stderr


def test_app_py_serves_with_the_given_flags_and_config(tmp_path):
    """`python app.py --port --data-dir --workers --config` with a YAML file."""
    config = tmp_path / "registry.yml"
    config.write_text("delete_enabled: false\nhttp: {threads: 2}\n")
    port = free_port()
    data = tmp_path / "appdata"
    log = open(tmp_path / "app.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "app.py"), "--host", "127.0.0.1", "--port", str(port),
         "--data-dir", str(data), "--workers", "3", "--config", str(config)],
        stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(600):
            assert proc.poll() is None, (tmp_path / "app.log").read_text()
            try:
                if requests.get(url + "/v2/", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.1)
        assert requests.get(url + "/v2/").status_code == 200
        assert (data / "registry.db").is_file()
        workers = workers_of(proc.pid, 3)
        assert len(workers) == 3  # --workers
        manifest = make_image(url, REPO)
        r = put_manifest(url, REPO, "v1", manifest)
        assert r.status_code == 201
        # the config file turned deletes off
        assert_error(requests.delete(f"{url}/v2/{REPO}/manifests/v1"), 405, "UNSUPPORTED")
        # served by gunicorn, not Flask's development server
        assert "gunicorn" in (tmp_path / "app.log").read_text().lower()
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    assert not any(running(pid) for pid in workers)
    assert not port_is_open(port)
