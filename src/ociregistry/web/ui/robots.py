"""The UI's robot accounts page, for admins: list tokens, create one (shown once), revoke.

The token appears only in the response to the form that created it: never in a
flash message (the session cookie is signed, not encrypted) nor in a URL.
Tokens are managed through auth/robots.py, never SQL here.
"""

from __future__ import annotations

import time

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from ociregistry.auth.robots import RobotError, RobotService, parse_duration, parse_scope
from ociregistry.web.auth import EXTENSION as AUTH_EXTENSION
from ociregistry.web.ui import access
from ociregistry.web.ui.blueprint import bp

EXPIRY_CHOICES = (("7d", "7 days"), ("30d", "30 days"), ("90d", "90 days"),
                  ("365d", "1 year"), ("never", "never"))


def _robots() -> RobotService | None:
    service = current_app.extensions.get(AUTH_EXTENSION)
    return getattr(service, "robots", None) if service is not None and service.enabled else None


def _require_admin() -> Response | None:
    if access.viewer().anonymous and access.auth_enabled():
        return redirect(url_for("ui.login", next=request.path))
    if not access.is_admin():
        abort(403, description="Only an administrator may manage robot accounts.")
    return None


def _page(status: int = 200, **context: object) -> tuple[str, int]:
    robots = _robots()
    tokens = robots.list(include_revoked=request.args.get("all") == "1") if robots else []
    return render_template(
        "ui/robots.html", robots_available=robots is not None and robots.enabled,
        tokens=tokens, now=time.time(), expiry_choices=EXPIRY_CHOICES, **context,
    ), status


@bp.get("/robots")
def robots_page() -> Response | tuple[str, int]:
    denied = _require_admin()
    if denied is not None:
        return denied
    return _page()


@bp.post("/robots")
def robots_create() -> Response | tuple[str, int]:
    denied = _require_admin()
    if denied is not None:
        return denied
    robots = _robots()
    if robots is None:
        abort(405, description="Robot accounts need authentication and auth.robots.enabled.")
    form = request.form
    name = form.get("name", "").strip()[:64]
    try:
        info, token = robots.create(
            name, parse_scope(form.get("scope", "")[:4000].split()),
            parse_duration(form.get("expires", "90d")[:16]),
            form.get("description", "").strip()[:255],
            created_by=f"ui:{access.viewer().user or ''}",
        )
    except RobotError as exc:
        return _page(400, error=str(exc), form=form)
    return _page(201, created=info, token=token)


@bp.post("/robots/<token_id>/revoke")
def robots_revoke(token_id: str) -> Response:
    denied = _require_admin()
    if denied is not None:
        return denied
    robots = _robots()
    if robots is None:
        abort(405, description="Robot accounts need authentication.")
    if robots.revoke(token_id=token_id[:32]):
        flash(f"Token {token_id} revoked: it is refused from now on.", "success")
    else:
        flash(f"No live token {token_id}.", "error")
    return redirect(url_for("ui.robots_page"), code=303)
