"""The harness of tests/api/test_fast_reads.py (and tests/cluster/test_pg_fast_reads.py):
one in-process registry whose every request can be sent twice through the whole WSGI
chain, with the fast read route (web/fast_reads.py) switched off (Flask answers) and
as configured, collecting status, headers, body, the access-log record, the counter
deltas and the pull records/events (with their actor) of each."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import os
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY
from werkzeug.test import EnvironBuilder

from ociregistry.config import load_settings
from ociregistry.core.actor import current_actor
from ociregistry.runtime import build_runtime
from ociregistry.web.app import create_app
from ociregistry.web.fast_reads import EXTENSION
from ociregistry.web.observability import ACCESS_LOGGER
from tests.auth.support import PASSWORDS, auth_config
from tests.helpers import OCI_MANIFEST

OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
SERVICE = "test-registry"
CLOCK = ("Date", "Expires")


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Harness:
    """One in-process registry; ``both`` sends a request through Flask and the fast route."""

    def __init__(self, tmp_path: Path, mode: str | None, **settings: Any) -> None:
        data = tmp_path / "data"
        overrides: dict[str, Any] = {"data_dir": str(data), **settings}
        if mode:
            overrides["auth"] = auth_config(data, mode, **settings.pop("auth", {}))
        runtime = build_runtime(load_settings(environ={}, overrides=overrides), migrate=True)
        self.runtime = runtime
        self.app = create_app(runtime=runtime)
        self.fast = self.app.extensions[EXTENSION]
        self.client = self.app.test_client()
        self.flask_calls = 0
        inner = self.fast.app

        def counted(environ: dict, start_response: Any) -> Any:
            self.flask_calls += 1
            return inner(environ, start_response)

        self.fast.app = counted
        self.records: list[logging.LogRecord] = []
        self.pulls: list[tuple] = []
        registry = runtime.registry
        record_pull, manifest_pulled = registry.record_pull, registry.manifest_pulled

        def spy_record(*args: Any) -> None:
            self.pulls.append(("record_pull", args, current_actor()))
            record_pull(*args)

        def spy_pulled(name: str, ref: str, row: Any) -> None:
            self.pulls.append(("manifest_pulled", (name, ref, row.digest, row.media_type,
                                                   row.payload), current_actor()))
            manifest_pulled(name, ref, row)

        registry.record_pull = spy_record  # type: ignore[method-assign]
        registry.manifest_pulled = spy_pulled  # type: ignore[method-assign]

    # -- set-up through the app itself --------------------------------------------
    def headers(self, user: str | None) -> dict[str, str]:
        if user is None:
            return {}
        raw = base64.b64encode(f"{user}:{PASSWORDS[user]}".encode()).decode()
        return {"Authorization": f"Basic {raw}"}

    def blob(self, repo: str, data: bytes, user: str | None = None) -> dict[str, Any]:
        digest = _digest(data)
        r = self.client.post(f"/v2/{repo}/blobs/uploads/?digest={digest}", data=data,
                             headers=self.headers(user))
        assert r.status_code == 201, r.get_data()
        return {"mediaType": OCI_CONFIG, "digest": digest, "size": len(data)}

    def manifest(self, repo: str, ref: str, body: bytes, media_type: str,
                 user: str | None = None) -> str:
        r = self.client.put(f"/v2/{repo}/manifests/{ref}", data=body,
                            headers={"Content-Type": media_type, **self.headers(user)})
        assert r.status_code == 201, r.get_data()
        return r.headers["Docker-Content-Digest"]

    def image(self, repo: str, ref: str, user: str | None = None,
              extra: dict | None = None) -> tuple[bytes, str]:
        config = self.blob(repo, json.dumps({"os": "linux", "architecture": "amd64",
                                             "n": os.urandom(4).hex()}).encode(), user)
        body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config,
                           "layers": [], **(extra or {})}).encode()
        return body, self.manifest(repo, ref, body, OCI_MANIFEST, user)

    # -- one request, both ways ---------------------------------------------------
    def _once(self, fast: bool, method: str, path: str, headers: dict[str, str]) -> dict:
        """One request; ``fast`` False: the fast route switched off (Flask answers), True:
        the app as configured."""
        enabled = self.fast.enabled
        if not fast:
            self.fast.enabled = False
        handler = _Collect(self.records)
        logger = logging.getLogger(ACCESS_LOGGER)
        logger.addHandler(handler)
        level = logger.level
        logger.setLevel(logging.INFO)
        before_samples = _samples()
        before_calls, before_pulls = self.flask_calls, len(self.pulls)
        builder = EnvironBuilder(path=path, method=method, headers=headers,
                                 environ_base={"REMOTE_ADDR": "192.0.2.7"})
        environ = builder.get_environ()
        builder.close()
        captured: dict[str, Any] = {}

        try:
            body = call_wsgi(self.app.wsgi_app, environ, captured)
        finally:
            logger.removeHandler(handler)
            logger.setLevel(level)
            self.fast.enabled = enabled
        return {
            "status": captured["status"], "headers": captured["headers"], "body": body,
            "log": access_line(handler), "metrics": _delta(before_samples, _samples()),
            "pulls": self.pulls[before_pulls:],
            "flask": self.flask_calls > before_calls,
        }

    def both(self, method: str, path: str, headers: dict[str, str] | None = None, *,
             fast: bool, status: int = 200) -> dict:
        """Flask's answer and the fast route's; ``fast``: the fast route answered it."""
        headers = {"X-Request-ID": "parity-1", **(headers or {})}
        reference = self._once(False, method, path, headers)
        answer = self._once(True, method, path, headers)
        assert reference["flask"]
        assert answer["flask"] is (not fast), f"{method} {path}: fast route expected {fast}"
        assert int(reference["status"].split()[0]) == status, reference
        # A blob's Date and Expires are the clock's (the same second or the next).
        assert [k for k, _ in answer["headers"]] == [k for k, _ in reference["headers"]]
        for side in (answer, reference):
            side["headers"] = [(k, v) for k, v in side["headers"] if k not in CLOCK]
        for key in ("status", "headers", "body", "log", "metrics"):
            assert answer[key] == reference[key], (key, method, path)
        # The same pull records and events, made by the same actor.
        assert answer["pulls"] == reference["pulls"]
        return answer


class _Collect(logging.Handler):
    def __init__(self, sink: list) -> None:
        super().__init__()
        self.records = sink

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


# Counted by background threads (buffer flushes, delivery, schedules), not by requests;
# and the tags list cache, whose hit or miss depends on what the earlier request left.
_BACKGROUND = ("registry_tags_list_cache_", "process_", "python_",
               "registry_pull_stats_flushes", "registry_event",
               "registry_gc_", "registry_retention_", "registry_mirror_evict",
               "registry_mirror_prefetch", "registry_readiness")


def _samples() -> dict[tuple, float]:
    """Every counter and histogram sample a request may add to (gauges move on their own)."""
    out: dict[tuple, float] = {}
    for family in REGISTRY.collect():
        if family.type not in ("counter", "histogram") or family.name.startswith(_BACKGROUND):
            continue
        for sample in family.samples:
            if sample.name.endswith(("_created", "_sum", "_bucket")):
                continue  # a creation time; durations (the fast one is shorter)
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def _delta(before: dict, after: dict) -> dict:
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v != before.get(k, 0.0)}


def call_wsgi(app: Any, environ: dict[str, Any], captured: dict[str, Any]) -> bytes:
    """The body ``app`` answers, read and closed as a server would; the status and
    headers land in ``captured``."""

    def start_response(status: str, response_headers: list, exc_info: Any = None) -> Any:
        captured["status"] = status
        captured["headers"] = list(response_headers)
        return io.BytesIO().write

    body_iter = app(environ, start_response)
    body = b"".join(body_iter)
    close = getattr(body_iter, "close", None)
    if close is not None:
        close()
    return body


def access_line(handler: _Collect) -> tuple[list[str], dict[str, Any]]:
    """The last access-log line's words and fields, its duration left out."""
    assert handler.records, "no access-log line"
    record = handler.records[-1]
    fields = dict(record.fields)  # type: ignore[attr-defined]
    fields.pop("duration_ms")
    line = record.getMessage().split(" ")
    del line[-3]  # the duration
    return line, fields
