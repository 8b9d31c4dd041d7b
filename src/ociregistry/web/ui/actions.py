"""The UI's actions: delete a tag or manifest, run garbage collection, sign in and out.

Every form posts a CSRF token (checked in the blueprint's before_request);
every action asks access.py first.
"""

from __future__ import annotations

from flask import abort, flash, jsonify, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from ociregistry.core.digests import is_digest
from ociregistry.core.errors import NameUnknown
from ociregistry.web.ui import access
from ociregistry.web.ui.blueprint import bp, browse, services
from ociregistry.web.ui.pages import require_pull


# -- delete -----------------------------------------------------------------------
def _delete_target() -> tuple[str | None, str | None]:
    source = request.form if request.method == "POST" else request.args
    tag, digest = source.get("tag") or None, source.get("digest") or None
    if (tag is None) == (digest is None):
        abort(400, description="Say which tag or which manifest digest to delete.")
    if digest is not None and not is_digest(digest):
        abort(400, description="That is not a manifest digest.")
    return tag, digest


def _check_delete(name: str) -> Response | None:
    denied = require_pull(name)
    if denied is not None:
        return denied
    if not access.can_delete(name):
        abort(403, description="You may not delete in this repository.")
    if not browse().delete_enabled:
        abort(405, description="Deleting is disabled on this registry (delete_enabled: false).")
    return None


@bp.get("/r/<path:name>/-/delete")
def confirm_delete(name: str) -> Response | str:
    denied = _check_delete(name)
    if denied is not None:
        return denied
    tag, digest = _delete_target()
    view = browse().manifest(name, tag or digest or "")
    return render_template("ui/confirm_delete.html", m=view, tag=tag)


@bp.post("/r/<path:name>/-/delete")
def delete(name: str) -> Response:
    denied = _check_delete(name)
    if denied is not None:
        return denied
    tag, digest = _delete_target()
    if tag is not None:
        browse().delete_tag(name, tag)
        flash(f"Tag {tag} deleted from {name}.", "success")
    else:
        assert digest is not None
        browse().delete_manifest(name, digest)
        flash(f"Manifest {digest} and its tags deleted from {name}.", "success")
    try:
        browse().repository(name)
    except NameUnknown:  # the repository has no manifest left: back to the list
        return redirect(url_for("ui.repositories"), code=303)
    return redirect(url_for("ui.repository", name=name), code=303)


# -- garbage collection -------------------------------------------------------------
def _require_gc() -> Response | None:
    if access.can_run_gc():
        return None
    if not access.auth_enabled():
        abort(403, description="Without authentication, garbage collection may only be "
              "started from the registry host.")
    if access.viewer().anonymous:
        return redirect(url_for("ui.login", next=request.path))
    abort(403, description="Only an administrator may run garbage collection.")


@bp.get("/gc")
def gc_page() -> Response | str:
    denied = _require_gc()
    if denied is not None:
        return denied
    return render_template("ui/gc.html", status=services().gc_jobs.status(),
                           runs=browse().gc_history(20))


@bp.post("/gc")
def gc_start() -> Response:
    denied = _require_gc()
    if denied is not None:
        return denied
    job = services().gc_jobs.start(
        dry_run=request.form.get("dry_run") == "on",
        delete_untagged=request.form.get("delete_untagged") == "on",
        started_by=access.viewer().user,
    )
    if job is None:
        flash("A garbage collection is already running.", "error")
    else:
        flash("Garbage collection started.", "success")
    return redirect(url_for("ui.gc_page"), code=303)


@bp.get("/gc/status")
def gc_status() -> Response:
    if not access.can_run_gc():
        abort(403, description="Only an administrator may see garbage collection.")
    response = jsonify(services().gc_jobs.status())
    response.headers["Cache-Control"] = "no-store"
    return response


# -- signing in and out -----------------------------------------------------------
def _safe_next(target: str | None) -> str:
    """Only a path inside the UI: never another site (no //host, no backslashes)."""
    if target and target.startswith("/ui/") and "\\" not in target and "//" not in target:
        return target
    return url_for("ui.overview")


@bp.route("/login", methods=["GET", "POST"])
def login() -> Response | tuple[str, int] | str:
    next_url = _safe_next(request.values.get("next"))
    if not access.auth_enabled():
        return render_template("ui/login.html", enabled=False, next_url=next_url)
    if request.method == "POST":
        user = request.form.get("username", "")[:128]
        if access.sign_in(user, request.form.get("password", "")[:1024]):
            flash(f"Signed in as {user}.", "success")
            return redirect(next_url, code=303)
        return render_template("ui/login.html", enabled=True, next_url=next_url, username=user,
                               failed=True), 401
    return render_template("ui/login.html", enabled=True, next_url=next_url)


@bp.post("/logout")
def logout() -> Response:
    access.sign_out()
    flash("Signed out.", "success")
    return redirect(url_for("ui.overview"), code=303)
