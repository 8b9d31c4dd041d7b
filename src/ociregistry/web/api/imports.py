"""/api/v1/admin/imports: runs of `ociregistry import distribution`. Admins only.

Read-only: an import is started from the command line (it needs to read the old
store, usually on another machine); this shows its progress and problems.
HTTP only: the views call importer/status.py.
"""

from __future__ import annotations

import re
from typing import Any

from flask import current_app

from ociregistry.importer.status import MAX_PAGE, ImportRuns
from ociregistry.web.api.blueprint import operation, query, schema
from ociregistry.web.api.problems import Problem

_FIGURES = {
    "type": "object",
    "description": "counters, updated every few seconds while the run goes on",
    "properties": {name: {"type": "integer"} for name in (
        "repositories", "repositories_total", "manifests_done", "manifests_total",
        "bytes_done", "bytes_total", "manifests_imported", "manifests_present",
        "tags_imported", "tags_present", "blobs_copied", "bytes_copied", "blobs_linked",
        "blobs_present", "untagged", "problems")},
}
_RUN_PROPERTIES: dict[str, Any] = {
    "id": {"type": "integer"},
    "source": {"type": "string", "description": "PATH or s3://bucket/prefix, as given"},
    "host": {"type": "string", "description": "the machine the command ran on"},
    "state": {"type": "string", "enum": ["running", "stalled", "finished", "failed"],
              "description": "stalled: running, but no figures for a minute (killed?)"},
    "started_at": {"type": "number"}, "updated_at": {"type": "number"},
    "finished_at": {"type": ["number", "null"]}, "error": {"type": ["string", "null"]},
    "stats": _FIGURES,
}
_REQUIRED = ["id", "source", "host", "state", "started_at", "updated_at", "finished_at",
             "error", "stats"]
IMPORT_RUN = schema("ImportRun", {
    "type": "object", "required": _REQUIRED, "properties": _RUN_PROPERTIES,
})
IMPORT_RUN_DETAIL = schema("ImportRunDetail", {
    "type": "object", "required": [*_REQUIRED, "problems"],
    "properties": {**_RUN_PROPERTIES, "problems": {
        "type": "array", "description": "the first 1000 problems reported",
        "items": {"type": "object", "required": ["kind", "path", "detail"],
                  "properties": {"kind": {"type": "string"}, "path": {"type": "string"},
                                 "detail": {"type": "string"}}}}},
})


def _runs() -> ImportRuns:
    return ImportRuns(current_app.extensions["ociregistry"].metadata)


@operation("/admin/imports", "GET", summary="Imports from Distribution, newest first",
           tag="admin", permission="admin",
           response={"type": "object", "required": ["items", "next"],
                     "properties": {"items": {"type": "array", "items": IMPORT_RUN},
                                    "next": {"type": ["integer", "null"],
                                             "description": "pass as `before` for the next "
                                                            "page"}}},
           parameters=(query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE,
                                       "default": 20}),
                       query("before", {"type": "integer", "minimum": 1, "maximum": 2**62},
                             "Runs with a smaller id.")),
           description="Runs of `ociregistry import distribution` (docs/migrate.md), "
                       "with their progress while they run.")
def import_runs(limit: int, before: int | None) -> dict[str, Any]:
    items = _runs().page(limit, before)
    return {"items": items, "next": items[-1]["id"] if len(items) == limit else None}


@operation("/admin/imports/{run_id}", "GET", summary="One import, with its problems",
           tag="admin", permission="admin", response=IMPORT_RUN_DETAIL,
           parameters=({"name": "run_id", "in": "path", "required": True,
                        "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"}},),
           description="404 `not_found` when there is no such run.")
def import_run(run_id: str) -> dict[str, Any]:
    found = _runs().get(int(run_id)) if re.fullmatch(r"[0-9]{1,18}", run_id) else None
    if found is None:
        raise Problem("not_found", f"no import run {run_id}")
    return found
