"""The UI's retention page, for admins: policies (file and run time), a form to create
or replace one (JSON), delete, dry run and run now, the last runs and their audit.

Everything goes through lifecycle/retention.py (the service /api/v1 uses).
"""

from __future__ import annotations

import json

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from pydantic import ValidationError
from werkzeug.wrappers import Response

from ociregistry.lifecycle.policy import RetentionPolicy
from ociregistry.lifecycle.retention import (
    PolicyNotFound,
    PolicyReadOnly,
    RetentionRunning,
    RetentionService,
)
from ociregistry.web.ui import access
from ociregistry.web.ui.blueprint import bp

SHOWN = 500  # deletions listed on the page per run
EXAMPLE = json.dumps({"repositories": ["ci/**"], "exclude_tags": ["latest"], "untagged": True,
                      "keep": [{"latest_pushed": 10}, {"pulled_within": "30d"}]}, indent=2)


def _service() -> RetentionService:
    return current_app.extensions["ociregistry"].retention


def _require_admin() -> Response | None:
    if access.viewer().anonymous and access.auth_enabled():
        return redirect(url_for("ui.login", next=request.path))
    if not access.is_admin():
        abort(403, description="Only an administrator may manage retention.")
    return None


def _page(status: int = 200, **context: object) -> tuple[str, int]:
    service = _service()
    return render_template(
        "ui/retention.html", policies=service.policies(), runs=service.runs(limit=20),
        label_expiry=service.settings.label_expiry, example=EXAMPLE, shown=SHOWN,
        **context), status


@bp.get("/retention")
def retention_page() -> Response | tuple[str, int]:
    denied = _require_admin()
    if denied is not None:
        return denied
    run_id = request.args.get("run", "")
    record = _service().run_record(int(run_id), SHOWN) if run_id.isdigit() and len(
        run_id) < 12 else None
    return _page(record=record)


@bp.post("/retention/policies")
def retention_save() -> Response | tuple[str, int]:
    denied = _require_admin()
    if denied is not None:
        return denied
    name = request.form.get("name", "").strip()[:64]
    text = request.form.get("definition", "")[:64 * 1024]
    try:
        body = json.loads(text)
        if not isinstance(body, dict):
            raise ValueError("the definition must be a JSON object")
        policy = RetentionPolicy.model_validate({**body, "name": name})
        _service().put_policy(policy, f"ui:{access.viewer().user or ''}")
    except (ValueError, ValidationError) as exc:
        return _page(400, error=f"Not a valid policy: {exc}", form=request.form)
    except PolicyReadOnly:
        return _page(409, error=f"{name} is defined in the configuration file.",
                     form=request.form)
    flash(f"Policy {name} saved.", "success")
    return redirect(url_for("ui.retention_page"), code=303)


@bp.post("/retention/policies/<policy>/delete")
def retention_delete(policy: str) -> Response:
    denied = _require_admin()
    if denied is not None:
        return denied
    try:
        _service().delete_policy(policy[:64])
        flash(f"Policy {policy} deleted.", "success")
    except (PolicyNotFound, PolicyReadOnly):
        flash(f"Policy {policy} cannot be deleted here.", "error")
    return redirect(url_for("ui.retention_page"), code=303)


@bp.post("/retention/run")
def retention_run() -> Response | tuple[str, int]:
    denied = _require_admin()
    if denied is not None:
        return denied
    policy = request.form.get("policy", "")[:64] or None
    dry_run = request.form.get("dry_run", "true") != "false"
    try:
        results = _service().run(policy, dry_run=dry_run, trigger="ui")
    except PolicyNotFound:
        return _page(404, error=f"No policy {policy}.")
    except RetentionRunning as exc:
        return _page(409, error=str(exc))
    return _page(results=results)
