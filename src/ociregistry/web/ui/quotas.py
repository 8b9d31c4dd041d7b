"""The UI's quotas page, for admins: a usage bar per namespace, add, change, delete.

Everything goes through lifecycle/quotas.py (QuotaService), the same the
/api/v1/quotas operations call; sizes typed in the form ("10GiB", "80%") are read
by sizes.parse_size, as in the configuration file.
"""

from __future__ import annotations

from typing import Any

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from ociregistry.admin.errors import AdminError
from ociregistry.lifecycle.quotas import QuotaService, quota_dict
from ociregistry.sizes import parse_size
from ociregistry.web.ui import access
from ociregistry.web.ui.blueprint import bp


def _quotas() -> QuotaService:
    return current_app.extensions["ociregistry"].quotas


def _require_admin() -> Response | None:
    if access.viewer().anonymous and access.auth_enabled():
        return redirect(url_for("ui.login", next=request.path))
    if not access.is_admin():
        abort(403, description="Only an administrator may manage quotas.")
    return None


def _page(status: int = 200, **context: Any) -> tuple[str, int]:
    rows = [quota_dict(row) for row in _quotas().list()]
    return render_template("ui/quotas.html", quotas=rows, **context), status


def _sizes(form: Any) -> tuple[int, int | None]:
    """(limit, warning) from the form; ValueError with a message when unreadable."""
    limit = parse_size(form.get("limit", "").strip()[:32])
    text = form.get("warning", "").strip()[:32]
    if not text:
        return limit, None
    if text.endswith("%"):
        return limit, int(limit * float(text[:-1]) / 100)
    return limit, parse_size(text)


@bp.get("/quotas")
def quotas_page() -> Response | tuple[str, int]:
    denied = _require_admin()
    if denied is not None:
        return denied
    return _page()


@bp.post("/quotas")
def quotas_create() -> Response | tuple[str, int]:
    denied = _require_admin()
    if denied is not None:
        return denied
    form = request.form
    try:
        limit, warning = _sizes(form)
        row = _quotas().create(form.get("namespace", "").strip()[:255], limit, warning)
    except (ValueError, AdminError) as exc:
        status = getattr(exc, "status", 400)
        return _page(status, error=getattr(exc, "message", str(exc)), form=form)
    flash(f"Quota on {row.pattern} created: {row.usage} bytes in use now.", "success")
    return redirect(url_for("ui.quotas_page"), code=303)


@bp.post("/quotas/<int:quota_id>")
def quotas_update(quota_id: int) -> Response | tuple[str, int]:
    denied = _require_admin()
    if denied is not None:
        return denied
    try:
        limit, warning = _sizes(request.form)
        row = _quotas().update(quota_id, {"limit": limit, "warning": warning})
    except (ValueError, AdminError) as exc:
        return _page(getattr(exc, "status", 400), error=getattr(exc, "message", str(exc)))
    flash(f"Quota on {row.pattern} changed.", "success")
    return redirect(url_for("ui.quotas_page"), code=303)


@bp.post("/quotas/<int:quota_id>/delete")
def quotas_delete(quota_id: int) -> Response | tuple[str, int]:
    denied = _require_admin()
    if denied is not None:
        return denied
    try:
        _quotas().delete(quota_id)
    except AdminError as exc:
        return _page(exc.status, error=exc.message)
    flash("Quota deleted.", "success")
    return redirect(url_for("ui.quotas_page"), code=303)
