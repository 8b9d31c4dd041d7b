"""Drive real clients (skopeo, podman) as subprocesses, isolated in temp dirs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

TIMEOUT = 300  # seconds per client command: generous, for a loaded 2-core machine


class ClientError(AssertionError):
    """A client command failed; the message carries its stdout and stderr."""

    def __init__(self, argv: list[str], proc: subprocess.CompletedProcess[bytes]) -> None:
        self.returncode = proc.returncode
        self.stdout = proc.stdout.decode(errors="replace")
        self.stderr = proc.stderr.decode(errors="replace")
        super().__init__(
            f"{' '.join(argv)}\nexited with {proc.returncode}\n"
            f"--- stdout ---\n{self.stdout[-4000:]}\n--- stderr ---\n{self.stderr[-4000:]}"
        )


def require_binary(name: str) -> str:
    """The path of a client binary; a missing one fails the test (CI installs them)."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed; ./run-tests.sh installs it with apt-get",
                    pytrace=False)
    return path


def write_client_config(home: Path) -> dict[str, str]:
    """Config files that keep clients away from the machine's own; returns the env."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "tmp").mkdir(exist_ok=True)
    (home / "registries.d").mkdir(exist_ok=True)
    (home / "policy.json").write_text(json.dumps(
        {"default": [{"type": "insecureAcceptAnything"}]}))
    (home / "registries.conf").write_text(
        'unqualified-search-registries = []\nshort-name-mode = "disabled"\n')
    (home / "storage.conf").write_text(
        f'[storage]\ndriver = "vfs"\nrunroot = "{home}/storage-run"\n'
        f'graphroot = "{home}/storage"\n')
    (home / "containers.conf").write_text(
        f'[engine]\nevents_logger = "file"\ncgroup_manager = "cgroupfs"\n'
        f'tmp_dir = "{home}/libpod-tmp"\n')
    (home / "auth.json").write_text("{}")
    return {
        **os.environ,
        "CONTAINERS_STORAGE_CONF": str(home / "storage.conf"),
        "CONTAINERS_REGISTRIES_CONF": str(home / "registries.conf"),
        "CONTAINERS_CONF": str(home / "containers.conf"),
        "REGISTRY_AUTH_FILE": str(home / "auth.json"),
        "TMPDIR": str(home / "tmp"),
    }


class Client:
    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.argv = argv
        self.env = env

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        argv = [*self.argv, *args]
        proc = subprocess.run(argv, env=self.env, capture_output=True, timeout=TIMEOUT,
                              stdin=subprocess.DEVNULL)
        if check and proc.returncode != 0:
            raise ClientError(argv, proc)
        return proc

    def fails(self, *args: str) -> ClientError:
        """Run a command that must fail; return the error to check its message."""
        argv = [*self.argv, *args]
        proc = self.run(*args, check=False)
        assert proc.returncode != 0, f"{' '.join(argv)} succeeded: {proc.stdout!r}"
        return ClientError(argv, proc)

    def json(self, *args: str) -> object:
        return json.loads(self.run(*args).stdout)


class Skopeo(Client):
    TLS = "--tls-verify=false"

    def __init__(self, home: Path, env: dict[str, str]) -> None:
        binary = require_binary("skopeo")
        super().__init__([
            binary, "--policy", str(home / "policy.json"), "--tmpdir", str(home / "tmp"),
            # skopeo ignores CONTAINERS_REGISTRIES_CONF; these flags (one hidden) do not.
            "--registries-conf", str(home / "registries.conf"),
            "--registries.d", str(home / "registries.d"),
        ], env)

    def copy(self, src: str, dest: str, *options: str) -> None:
        self.run("copy", "--src-tls-verify=false", "--dest-tls-verify=false", *options,
                 src, dest)

    def inspect(self, ref: str, *options: str) -> dict:
        return self.json("inspect", self.TLS, *options, ref)  # type: ignore[return-value]

    def raw(self, ref: str) -> bytes:
        return self.run("inspect", self.TLS, "--raw", ref).stdout

    def config(self, ref: str) -> dict:
        return self.json("inspect", self.TLS, "--config", ref)  # type: ignore[return-value]

    def list_tags(self, ref: str) -> list[str]:
        return self.json("list-tags", self.TLS, ref)["Tags"]  # type: ignore[index]

    def delete(self, ref: str) -> None:
        self.run("delete", self.TLS, ref)


class Podman(Client):
    """podman with its own storage (vfs) and run dirs: never the machine's."""

    def __init__(self, storage: Path, runroot: Path, home: Path, env: dict[str, str]) -> None:
        binary = require_binary("podman")
        self.policy = str(home / "policy.json")
        for sub in ("root", "tmp"):
            (storage / sub).mkdir(parents=True, exist_ok=True)
        super().__init__([
            binary, "--root", str(storage / "root"), "--runroot", str(runroot),
            "--storage-driver", "vfs", "--tmpdir", str(storage / "tmp"),
            "--cgroup-manager", "cgroupfs", "--events-backend", "file",
        ], env)

    def pull(self, ref: str, *options: str) -> str:
        """Pull; return the image ID podman prints."""
        out = self.run("pull", "--tls-verify=false", "--signature-policy", self.policy,
                       *options, ref).stdout
        return out.decode().strip().splitlines()[-1]

    def push(self, src: str, dest: str, digestfile: Path, *options: str) -> str:
        """Push; return the manifest digest podman wrote to `digestfile`."""
        self.run("push", "--tls-verify=false", "--signature-policy", self.policy,
                 "--digestfile", str(digestfile), *options, src, dest)
        return digestfile.read_text().strip()

    def image(self, ref: str) -> dict:
        return self.json("image", "inspect", ref)[0]  # type: ignore[index]


def docker_ref(host: str, repo: str, tag_or_digest: str) -> str:
    """docker://host/repo:tag, or docker://host/repo@sha256:... for a digest."""
    sep = "@" if ":" in tag_or_digest else ":"
    return f"docker://{host}/{repo}{sep}{tag_or_digest}"
