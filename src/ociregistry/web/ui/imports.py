"""The UI's imports page, for admins: runs of `ociregistry import distribution`.

Read-only, like /api/v1/admin/imports: an import starts on the command line
(docs/migrate.md); this shows its progress, its summary and the problems it
reported. Runs are read through importer/status.py, never SQL here.
"""

from __future__ import annotations

from flask import abort, current_app, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from ociregistry.importer.status import ImportRuns
from ociregistry.web.ui import access
from ociregistry.web.ui.blueprint import bp


def _require_admin() -> Response | None:
    if access.viewer().anonymous and access.auth_enabled():
        return redirect(url_for("ui.login", next=request.path))
    if not access.is_admin():
        abort(403, description="Only an administrator may see imports.")
    return None


def _runs() -> ImportRuns:
    return ImportRuns(current_app.extensions["ociregistry"].metadata)


@bp.get("/imports")
def imports_page() -> Response | str:
    denied = _require_admin()
    if denied is not None:
        return denied
    return render_template("ui/imports.html", runs=_runs().page(50, None))


@bp.get("/imports/<int:run_id>")
def import_page(run_id: int) -> Response | str:
    denied = _require_admin()
    if denied is not None:
        return denied
    run = _runs().get(run_id) if run_id < 2**62 else None
    if run is None:
        abort(404, description=f"No import run {run_id}.")
    return render_template("ui/import.html", run=run)
