"""Values every process and instance sees alike: the UI key, the UI's GC progress."""

from __future__ import annotations

import time
from pathlib import Path

from ociregistry.config import Settings
from ociregistry.core.gc_jobs import GCJobs, ui_secret_key
from ociregistry.metadata import shared_state
from ociregistry.runtime import build_runtime


def runtime_on(data_dir: Path):  # noqa: ANN201 - a Runtime
    return build_runtime(Settings(data_dir=str(data_dir)), migrate=True)


def test_put_get_and_get_or_create(tmp_path):
    db = runtime_on(tmp_path).metadata
    assert shared_state.get(db, "x") is None
    assert shared_state.get_or_create(db, "x", "first") == "first"
    assert shared_state.get_or_create(db, "x", "second") == "first"  # the first one stays
    shared_state.put(db, "x", "third")
    assert shared_state.get(db, "x") == "third"


def test_two_processes_get_the_same_ui_key(tmp_path):
    one, two = runtime_on(tmp_path), runtime_on(tmp_path)
    key = ui_secret_key(one.metadata)
    assert len(key) == 64
    assert ui_secret_key(two.metadata) == key


def test_gc_progress_started_in_one_process_is_seen_by_another(tmp_path):
    one, two = runtime_on(tmp_path), runtime_on(tmp_path)
    here, there = GCJobs(one.gc, one.registry), GCJobs(two.gc, two.registry)
    assert there.status()["state"] == "idle"
    job = here.start(dry_run=True, delete_untagged=False, started_by="alice")
    assert job
    deadline = time.monotonic() + 60
    while there.status()["state"] in ("starting", "running") and time.monotonic() < deadline:
        time.sleep(0.05)
    seen = there.status()
    assert seen["job"] == job and seen["state"] == "finished"
    assert seen["started_by"] == "alice" and "result" in seen
