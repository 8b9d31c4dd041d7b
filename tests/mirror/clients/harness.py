"""Real pulling clients configured the way users configure them for a mirror.

- ``Containerd``: a private containerd (own root, state, socket; CRI off) and ``ctr``
  pulling with ``--hosts-dir`` (a ``docker.io/hosts.toml`` naming the mirror), which makes
  containerd add ``?ns=docker.io`` to every request it sends the mirror.
- ``Dockerd``: Debian's dockerd 20.10 with ``registry-mirrors`` in its own daemon.json,
  vfs storage, its own data-root/exec-root/pidfile/socket, no bridge and no iptables,
  on the private containerd: nothing of the host's docker is touched.
- ``podman_mirror_conf``: a registries.conf with a ``[[registry.mirror]]`` for docker.io.

Clients would fall back to docker.io when a mirror fails. This machine has no
internet and the tests must prove the mirror served the pull, so every client runs
with ``HTTP(S)_PROXY`` pointing at a closed loopback port: any request to a
non-loopback host fails at once (Go never proxies loopback addresses).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from tests.clients.clitools import TIMEOUT, Client, ClientError, require_binary
from tests.server import free_port

START_TIMEOUT = 120


def no_internet_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment with every non-loopback request sent to a dead proxy."""
    dead = f"http://127.0.0.1:{free_port()}"  # nobody listens there
    out = dict(os.environ if env is None else env)
    for key in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        out[key] = dead
    out["NO_PROXY"] = out["no_proxy"] = "127.0.0.1,localhost"
    return out


def short_dir(prefix: str) -> Path:
    """A short path under /tmp: unix socket paths must stay under 108 bytes."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


def write_hosts_dir(base: Path, mirror: str, *, namespace: str = "docker.io",
                    capabilities: tuple[str, ...] = ("pull", "resolve")) -> Path:
    """A containerd ``certs.d``-style directory: ``<namespace>/hosts.toml`` with the
    mirror (``http://127.0.0.1:PORT``) as its only host before the default server."""
    hosts_dir = base / "certs.d"
    (hosts_dir / namespace).mkdir(parents=True, exist_ok=True)
    caps = ", ".join(f'"{c}"' for c in capabilities)
    (hosts_dir / namespace / "hosts.toml").write_text(
        f'server = "https://registry-1.docker.io"\n\n'
        f'[host."{mirror}"]\n  capabilities = [{caps}]\n  skip_verify = true\n')
    return hosts_dir


def require_root(what: str) -> None:
    """Private containerd and dockerd instances need root (mounts, chown, namespaces)."""
    if os.geteuid() != 0:
        pytest.fail(f"{what} runs a private daemon and needs root; run the tests as root "
                    "(CI does)", pytrace=False)


def _wait(check, proc: subprocess.Popen, log: Path, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited: {log.read_text(errors='replace')[-3000:]}")
        if check():
            return
        time.sleep(0.3)
    raise RuntimeError(f"{what} did not start: {log.read_text(errors='replace')[-3000:]}")


def _stop(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Containerd:
    """A containerd of the test's own; ``ctr`` runs against its socket."""

    def __init__(self) -> None:
        require_root("containerd")
        self.binary = require_binary("containerd")
        self.ctr_binary = require_binary("ctr")
        self.dir = short_dir("ocm-ctrd-")
        self.socket = self.dir / "c.sock"
        self.log = self.dir / "containerd.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> Containerd:
        config = self.dir / "config.toml"
        config.write_text(
            f'version = 2\nroot = "{self.dir}/root"\nstate = "{self.dir}/state"\n'
            # CRI would read the host's CNI set-up; pulls through ctr do not need it.
            'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
            f'[grpc]\n  address = "{self.socket}"\n'
            f'[ttrpc]\n  address = "{self.socket}.ttrpc"\n'
            '[debug]\n  address = ""\n[metrics]\n  address = ""\n')
        self._log = open(self.log, "ab")
        self.proc = subprocess.Popen([self.binary, "--config", str(config)],
                                     stdout=self._log, stderr=subprocess.STDOUT)

        def up() -> bool:
            return subprocess.run([self.ctr_binary, "-a", str(self.socket), "version"],
                                  capture_output=True, timeout=30).returncode == 0
        _wait(up, self.proc, self.log, "containerd")
        return self

    def stop(self) -> None:
        _stop(self.proc)
        self._log.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def ctr(self, namespace: str) -> Client:
        return Client([self.ctr_binary, "-a", str(self.socket), "-n", namespace],
                      no_internet_env())

    def pull(self, ref: str, hosts_dir: Path, *options: str) -> tuple[str, str]:
        """Pull ``ref`` into a fresh namespace (nothing cached client-side); returns
        (namespace, ctr's output with the HTTP dump: the requests it sent)."""
        namespace = f"pull-{uuid.uuid4().hex[:10]}"
        proc = self.ctr(namespace).run(
            "images", "pull", "--hosts-dir", str(hosts_dir), "--snapshotter", "native",
            "--http-dump", *options, ref)
        return namespace, proc.stdout.decode(errors="replace") + proc.stderr.decode(
            errors="replace")

    def image_digest(self, namespace: str, ref: str) -> str:
        """The digest containerd recorded for ``ref`` (the top manifest or index)."""
        out = self.ctr(namespace).run("images", "ls").stdout.decode()
        for line in out.splitlines()[1:]:
            cols = line.split()
            if cols and cols[0] == ref:
                return next(c for c in cols if c.startswith("sha256:"))
        raise AssertionError(f"{ref} not in ctr images ls:\n{out}")

    def content_digest(self, namespace: str, digest: str) -> str:
        """The sha256 of a blob as containerd stored it (re-hashed here)."""
        data = self.ctr(namespace).run("content", "get", digest).stdout
        return "sha256:" + hashlib.sha256(data).hexdigest()


class Dockerd:
    """Debian's dockerd with ``registry-mirrors`` (its own everything; see module doc)."""

    def __init__(self, containerd: Containerd, mirrors: list[str]) -> None:
        require_root("dockerd")
        self.binary = require_binary("dockerd")
        # The daemon's own client (docker.io 20.10) if there, else any docker CLI.
        self.cli = "/usr/bin/docker" if os.access("/usr/bin/docker", os.X_OK) else \
            require_binary("docker")
        self.containerd = containerd
        self.dir = short_dir("ocm-dockerd-")
        self.socket = self.dir / "d.sock"
        self.log = self.dir / "dockerd.log"
        self.mirrors = mirrors
        self.proc: subprocess.Popen | None = None

    def start(self) -> Dockerd:
        daemon_json = self.dir / "daemon.json"
        daemon_json.write_text(json.dumps({"registry-mirrors": self.mirrors}))
        (self.dir / "cli").mkdir()
        argv = [
            self.binary, "--config-file", str(daemon_json),
            "--data-root", str(self.dir / "data"), "--exec-root", str(self.dir / "exec"),
            "--pidfile", str(self.dir / "docker.pid"), "-H", f"unix://{self.socket}",
            "--storage-driver", "vfs", "--bridge", "none", "--iptables=false",
            "--ip6tables=false", "--ip-masq=false", "--userland-proxy=false",
            # our containerd, never the host's /run/containerd (dockerd would pick it up)
            "--containerd", str(self.containerd.socket),
            "--containerd-namespace", "dockerd-test",
            "--containerd-plugins-namespace", "dockerd-test-plugins",
        ]
        self._log = open(self.log, "ab")
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT,
                                     env=no_internet_env())

        def up() -> bool:
            return self.docker.run("version", check=False).returncode == 0
        _wait(up, self.proc, self.log, "dockerd")
        return self

    @property
    def docker(self) -> Client:
        return Client([self.cli, "-H", f"unix://{self.socket}"],
                      {**no_internet_env(), "DOCKER_CONFIG": str(self.dir / "cli")})

    def pull(self, ref: str, *options: str) -> str:
        return self.docker.run("pull", *options, ref).stdout.decode(errors="replace")

    def inspect(self, ref: str) -> dict:
        return json.loads(self.docker.run("image", "inspect", ref).stdout)[0]

    def remove(self, ref: str) -> None:
        self.docker.run("image", "rm", "--force", ref)

    def stop(self) -> None:
        _stop(self.proc)
        self._log.close()
        # vfs keeps plain directories: nothing is mounted under data-root to undo.
        shutil.rmtree(self.dir, ignore_errors=True)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


def podman_mirror_conf(path: Path, mirror: str, *, prefix: str = "docker.io") -> Path:
    """registries.conf sending ``prefix`` pulls to ``mirror`` (host:port/path) first."""
    path.write_text(
        'unqualified-search-registries = []\nshort-name-mode = "disabled"\n\n'
        f'[[registry]]\nprefix = "{prefix}"\nlocation = "{prefix}"\n\n'
        f'[[registry.mirror]]\nlocation = "{mirror}"\ninsecure = true\n')
    return path


__all__ = ["TIMEOUT", "ClientError", "Containerd", "Dockerd", "no_internet_env",
           "podman_mirror_conf", "write_hosts_dir"]
