"""A steady push and pull load on a registry, from real clients, for fault tests.

Threads, each in a loop until ``stop()``:

- skopeo pushes: a fresh three-layer OCI image (tests/clients/images.py) to a tag
  of its own, ``--retry-times`` as a CI job would run it; a push that exits 0 is
  *committed* (its digest, from ``--digest-file``, must pull back afterwards);
- skopeo pulls: a committed tag, copied to an OCI layout (digests checked);
- HTTP pushes: one 6 MiB layer in three 2 MiB PATCH chunks (a multipart upload
  on S3), its config and manifest; every request's answer is recorded;
- HTTP pulls: a committed manifest and every blob it names, bytes checked.

Every operation is recorded (kind, start, end, ok, what went wrong); HTTP
requests also keep each status, so a test can tell a clean failure (503 in the
OCI envelope with Retry-After) from a dirty one (500, 502, a hang, a wrong
byte). ``nginx_statuses()`` reads what every instance answered through nginx.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from tests.clients.clitools import Skopeo, write_client_config
from tests.clients.images import write_image

HTTP_TIMEOUT = 120  # seconds: a request answered later than this counts as hung
CLIENT_TIMEOUT = 300  # seconds per skopeo command
CHUNK = 2 << 20
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Op:
    kind: str
    started: float
    ended: float = 0.0
    ok: bool = False
    clean: bool = True  # a failure the client was told about properly (503, Retry-After)
    detail: str = ""
    statuses: list[int] = field(default_factory=list)


@dataclass
class Committed:
    repo: str
    tag: str
    digest: str
    blobs: dict[str, bytes] = field(default_factory=dict)  # what must pull back


class Unclean(Exception):
    """An answer no client should ever get (500, 502, a hang, wrong bytes)."""


class Unavailable(Exception):
    """A clean 503: the OCI envelope, code UNAVAILABLE, and Retry-After."""


class Load:
    def __init__(self, host: str, workdir: Path, retry_times: int = 3,
                 skopeo_pushers: int = 1, skopeo_pullers: int = 1,
                 http_pushers: int = 1, http_pullers: int = 1, op_retries: int = 0) -> None:
        self.host = host
        # As a CI job or a kubelet does: an operation that failed is run once more
        # (a fresh push or pull); only a failed retry counts. Retries are reported.
        self.op_retries = op_retries
        self.retried: list[Op] = []
        self.url = f"http://{host}"
        self.workdir = workdir
        self.retry_times = retry_times
        self.counts = {"skopeo_push": skopeo_pushers, "skopeo_pull": skopeo_pullers,
                       "http_push": http_pushers, "http_pull": http_pullers}
        self.ops: list[Op] = []
        self.committed: list[Committed] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.home = workdir / "clients"
        self.env = write_client_config(self.home)
        self.skopeo = Skopeo(self.home, self.env)
        self.started = 0.0
        self.stopped = 0.0
        self.crashes: list[str] = []

    # -- running --------------------------------------------------------------
    def start(self) -> Load:
        self.started = time.monotonic()
        loops = {"skopeo_push": self._skopeo_push, "skopeo_pull": self._skopeo_pull,
                 "http_push": self._http_push, "http_pull": self._http_pull}
        for kind, count in self.counts.items():
            for n in range(count):
                thread = threading.Thread(target=self._loop, args=(kind, loops[kind], n),
                                          name=f"load-{kind}-{n}", daemon=True)
                thread.start()
                self._threads.append(thread)
        return self

    def stop(self) -> None:
        if self.stopped:
            return
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=CLIENT_TIMEOUT + 60)
        self.stopped = time.monotonic()
        assert not self.crashes, "load threads crashed:\n" + "\n".join(self.crashes)

    def _loop(self, kind: str, body: Any, n: int) -> None:
        session = requests.Session()
        i = 0
        attempts = 0
        while not self._stop.is_set():
            i += 1
            op = Op(kind, time.monotonic())
            try:
                body(session, op, f"{kind.replace('_', '-')}-{n}-{i}-{uuid.uuid4().hex[:6]}")
                op.ok = True
            except Unavailable as exc:
                op.detail = str(exc)
            except Unclean as exc:
                op.clean, op.detail = False, str(exc)
            except Exception as exc:  # a bug of the load itself: stop the test loudly
                self.crashes.append(f"{kind}: {type(exc).__name__}: {exc}")
                return
            op.ended = time.monotonic()
            if not op.ok and attempts < self.op_retries:
                attempts += 1
                with self._lock:
                    self.retried.append(op)
                time.sleep(0.5)
                continue
            attempts = 0
            with self._lock:
                self.ops.append(op)
            if not op.ok:
                time.sleep(0.5)  # as a client backs off: no busy loop against a dead store

    def wait_ops(self, count: int, since: float | None = None, timeout: float = 600) -> None:
        """Until ``count`` operations succeeded after ``since`` (the load is flowing)."""
        since = self.started if since is None else since
        deadline = time.monotonic() + timeout
        while self.succeeded(since) < count:
            assert not self.crashes, "load threads crashed:\n" + "\n".join(self.crashes)
            assert time.monotonic() < deadline, f"load stalled:\n{self.report()}"
            time.sleep(0.2)

    def wait_committed(self, count: int, timeout: float = 600) -> None:
        """Until ``count`` pushes were acknowledged: the pull loops have work."""
        deadline = time.monotonic() + timeout
        while len(self.committed) < count:
            assert not self.crashes, "load threads crashed:\n" + "\n".join(self.crashes)
            assert time.monotonic() < deadline, f"no pushes went through:\n{self.report()}"
            time.sleep(0.2)

    def succeeded(self, since: float = 0.0) -> int:
        with self._lock:
            return sum(1 for op in self.ops if op.ok and op.started >= since)

    # -- results --------------------------------------------------------------
    def failures(self, clean: bool | None = None) -> list[Op]:
        with self._lock:
            return [op for op in self.ops
                    if not op.ok and (clean is None or op.clean == clean)]

    def report(self) -> str:
        with self._lock:
            ops = list(self.ops)
        end = self.stopped or time.monotonic()
        seconds = max(end - self.started, 1e-9)
        lines = [f"{len(ops)} operations in {seconds:.0f} s ({len(ops) / seconds:.2f}/s)"]
        for kind in self.counts:
            mine = [op for op in ops if op.kind == kind]
            bad = [op for op in mine if not op.ok]
            lines.append(f"  {kind}: {len(mine) - len(bad)} ok, {len(bad)} failed "
                         f"({sum(1 for op in bad if not op.clean)} unclean)")
        requests_seen = sum(len(op.statuses) for op in ops)
        lines.append(f"  HTTP requests by the HTTP loops: {requests_seen}")
        if self.op_retries:
            lines.append(f"  operations that failed once and were retried: {len(self.retried)}")
            for op in self.retried[:3]:
                lines.append(f"  - retried {op.kind} at +{op.started - self.started:.1f}s: "
                             f"{op.detail[:300]}")
        for op in [op for op in ops if not op.ok][:5]:
            lines.append(f"  - {op.kind} at +{op.started - self.started:.1f}s "
                         f"({'clean' if op.clean else 'UNCLEAN'}): {op.detail[:400]}")
        return "\n".join(lines)

    # -- HTTP -----------------------------------------------------------------
    def _request(self, session: requests.Session, op: Op, method: str, url: str,
                 expect: tuple[int, ...], **kwargs: Any) -> requests.Response:
        if url.startswith("/"):
            url = self.url + url
        try:
            r = session.request(method, url, timeout=HTTP_TIMEOUT, allow_redirects=True,
                                **kwargs)
        except requests.Timeout as exc:
            raise Unclean(f"{method} {url}: no answer in {HTTP_TIMEOUT} s") from exc
        except requests.ConnectionError as exc:
            raise Unclean(f"{method} {url}: {exc}") from exc
        op.statuses.append(r.status_code)
        if r.status_code in expect:
            return r
        if r.status_code == 503:
            try:
                code = r.json()["errors"][0]["code"]
            except (ValueError, KeyError, IndexError, TypeError):
                code = None
            if code == "UNAVAILABLE" and r.headers.get("Retry-After", "").isdigit():
                raise Unavailable(f"{method} {url}: 503 {r.text[:200]}")
        raise Unclean(f"{method} {url}: {r.status_code} {r.text[:300]}")

    def _http_push(self, session: requests.Session, op: Op, name: str) -> None:
        repo = "load/http"
        layer = os.urandom(3 * CHUNK)
        r = self._request(session, op, "POST", f"/v2/{repo}/blobs/uploads/", (202,))
        location = r.headers["Location"]
        for start in range(0, len(layer), CHUNK):
            chunk = layer[start:start + CHUNK]
            r = self._request(session, op, "PATCH", location, (202,), data=chunk, headers={
                "Content-Type": "application/octet-stream",
                "Content-Range": f"{start}-{start + len(chunk) - 1}"})
            location = r.headers["Location"]
        sep = "&" if "?" in location else "?"
        self._request(session, op, "PUT", f"{location}{sep}digest={_sha(layer)}", (201,))
        config = json.dumps({"architecture": "amd64", "os": "linux",
                             "rootfs": {"type": "layers", "diff_ids": []},
                             "salt": name}).encode()
        self._request(session, op, "POST", f"/v2/{repo}/blobs/uploads/?digest={_sha(config)}",
                      (201,), data=config,
                      headers={"Content-Type": "application/octet-stream"})
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": _sha(config), "size": len(config)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": _sha(layer), "size": len(layer)}],
        }).encode()
        self._request(session, op, "PUT", f"/v2/{repo}/manifests/{name}", (201,),
                      data=manifest, headers={"Content-Type": OCI_MANIFEST})
        with self._lock:
            self.committed.append(Committed(repo, name, _sha(manifest), {
                _sha(layer): layer, _sha(config): config, _sha(manifest): manifest}))

    def _pick(self, repo: str | None = None) -> Committed | None:
        with self._lock:
            choice = [c for c in self.committed if repo is None or c.repo == repo]
            if not choice:
                return None
            return choice[int.from_bytes(os.urandom(4), "big") % len(choice)]

    def _http_pull(self, session: requests.Session, op: Op, _name: str) -> None:
        pick = self._pick()
        if pick is None:
            time.sleep(0.2)
            self._request(session, op, "GET", "/v2/", (200,))
            return
        check_pull(lambda *a, **k: self._request(session, op, *a, **k), pick)

    # -- skopeo ---------------------------------------------------------------
    def _skopeo(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        argv = [*self.skopeo.argv, *args]
        try:
            return subprocess.run(argv, env=self.env, capture_output=True,
                                  timeout=CLIENT_TIMEOUT, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            raise Unclean(f"skopeo {args[0]} hung for {CLIENT_TIMEOUT} s") from exc

    @staticmethod
    def _judge(proc: subprocess.CompletedProcess[bytes]) -> None:
        if proc.returncode == 0:
            return
        err = proc.stderr.decode(errors="replace")[-600:]
        # What skopeo prints for the registry's 503 envelope ("service unavailable"
        # is the UNAVAILABLE code's text), or for a store that refused to connect
        # while the registry redirected to it.
        if re.search(r"503|service unavailable|UNAVAILABLE", err, re.IGNORECASE):
            raise Unavailable(err)
        raise Unclean(err)

    def _skopeo_push(self, _session: requests.Session, op: Op, name: str) -> None:
        layout = self.workdir / "layouts" / name
        image = write_image(layout, name, tag="latest")
        digest_file = layout.parent / f"{name}.digest"
        try:
            proc = self._skopeo("copy", "--dest-tls-verify=false", "--retry-times",
                                str(self.retry_times), "--digestfile", str(digest_file),
                                f"oci:{layout}:latest", f"docker://{self.host}/load/skopeo:{name}")
            self._judge(proc)
            digest = digest_file.read_text().strip()
            if digest != image.digest:
                raise Unclean(f"skopeo pushed {digest}, the image is {image.digest}")
            with self._lock:
                self.committed.append(Committed("load/skopeo", name, digest, image.blobs()))
        finally:
            shutil.rmtree(layout, ignore_errors=True)
            digest_file.unlink(missing_ok=True)

    def _skopeo_pull(self, _session: requests.Session, op: Op, name: str) -> None:
        # What skopeo pushed: it may rewrite the HTTP loop's bare manifests on a copy.
        pick = self._pick("load/skopeo")
        if pick is None:
            time.sleep(0.5)
            return
        dest = self.workdir / "pulled" / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            proc = self._skopeo("copy", "--src-tls-verify=false", "--retry-times",
                                str(self.retry_times),
                                f"docker://{self.host}/{pick.repo}:{pick.tag}", f"oci:{dest}:x")
            self._judge(proc)
            index = json.loads((dest / "index.json").read_text())
            got = index["manifests"][0]["digest"]
            if got != pick.digest:
                raise Unclean(f"pulled {pick.repo}:{pick.tag} as {got}, pushed {pick.digest}")
        finally:
            shutil.rmtree(dest, ignore_errors=True)


def check_pull(request: Any, pick: Committed) -> None:
    """GET the manifest by tag and every blob it names; the bytes must be those pushed."""
    r = request("GET", f"/v2/{pick.repo}/manifests/{pick.tag}", (200,),
                headers={"Accept": OCI_MANIFEST})
    if _sha(r.content) != pick.digest:
        raise Unclean(f"{pick.repo}:{pick.tag} answers {_sha(r.content)}, pushed {pick.digest}")
    for digest, data in pick.blobs.items():
        if digest == pick.digest:
            continue
        r = request("GET", f"/v2/{pick.repo}/blobs/{digest}", (200,))
        if r.content != data:
            raise Unclean(f"{pick.repo} blob {digest}: other bytes came back")


def verify_committed(url: str, committed: list[Committed]) -> list[str]:
    """Every committed push pulls back identical, after the faults: what did not."""
    lost = []
    session = requests.Session()

    def request(method: str, path: str, expect: tuple[int, ...], **kwargs: Any) -> Any:
        r = session.request(method, url + path, timeout=HTTP_TIMEOUT, **kwargs)
        if r.status_code not in expect:
            raise Unclean(f"{method} {path}: {r.status_code} {r.text[:200]}")
        return r

    for pick in committed:
        try:
            check_pull(request, pick)
        except Unclean as exc:
            lost.append(str(exc))
    return lost


# $upstream_addr and $upstream_status list every instance tried: "a:1, b:2".
_LINE = re.compile(r'"(?P<request>.*)" (?P<status>\d{3}) upstream=(?P<upstream>.*?) '
                   r"upstream_status=(?P<upstream_status>.*?) ra=(?P<ra>\S*) rid=")


def nginx_statuses(access_log: Path) -> list[dict[str, str]]:
    """Every request nginx passed on: request line, status, upstream(s), Retry-After."""
    out = []
    for line in access_log.read_text(errors="replace").splitlines():
        match = _LINE.search(line)
        assert match, f"unreadable nginx log line: {line!r}"  # nothing may slip through
        out.append(match.groupdict())
    return out


def unclean_answers(access_log: Path, allowed: tuple[int, ...] = ()) -> list[str]:
    """Lines where a client got a 5xx other than a 503 with Retry-After (or ``allowed``)."""
    bad = []
    for entry in nginx_statuses(access_log):
        status = int(entry["status"])
        if status < 500 or status in allowed:
            continue
        if status == 503 and entry["ra"].isdigit():
            continue
        bad.append(f'{entry["status"]} {entry["request"]} upstream={entry["upstream"]} '
                   f'upstream_status={entry["upstream_status"]}')
    return bad
