"""The UI's tag history page (with restore buttons) and the tag rules page (admins).

Both call lifecycle/ services (tag_history.py, tag_rules.py), the ones /api/v1 and
the CLI use; a restore or a rule refusal goes through the same checks.
"""

from __future__ import annotations

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from ociregistry.auth.rules import PUSH
from ociregistry.core.names import validate_tag
from ociregistry.lifecycle.tag_rules import KINDS, TagRuleError
from ociregistry.lifecycle.tags import TagServices
from ociregistry.web.ui import access
from ociregistry.web.ui.blueprint import bp
from ociregistry.web.ui.pages import int_arg, require_pull


def _tags() -> TagServices:
    services = current_app.extensions["ociregistry"].tags
    assert services is not None
    return services


def can_push(repository: str) -> bool:
    active = access.policy()
    return active is None or PUSH in active.allowed_actions(access.viewer().user, repository)


@bp.get("/r/<path:name>/-/history/<tag>")
def tag_history(name: str, tag: str) -> Response | str:
    denied = require_pull(name)
    if denied is not None:
        return denied
    validate_tag(tag)
    services = _tags()
    before = int_arg("before", 0) or None
    entries = services.history.entries(name, tag, 50, before)
    restorable = {row["digest"] for row in services.history.restorable(name, tag)}
    current = next((e["digest"] for e in entries[:1] if e["action"] != "delete"), None)
    return render_template(
        "ui/tag_history.html", repository=name, tag=tag, entries=entries,
        restorable=restorable, current=current, can_restore=can_push(name),
        window_days=services.history.window / 86400,
        older=entries[-1]["id"] if len(entries) == 50 else None)


@bp.get("/r/<path:name>/-/history")
def repository_history(name: str) -> Response | str:
    """Every tag change of the repository: how to reach a deleted tag's history."""
    denied = require_pull(name)
    if denied is not None:
        return denied
    entries = _tags().history.entries(name, None, 50, int_arg("before", 0) or None)
    return render_template(
        "ui/repository_history.html", repository=name, entries=entries,
        older=entries[-1]["id"] if len(entries) == 50 else None)


@bp.post("/r/<path:name>/-/history/<tag>/restore")
def tag_restore(name: str, tag: str) -> Response:
    denied = require_pull(name)
    if denied is not None:
        return denied
    if not can_push(name):
        abort(403, description="You may not push to this repository.")
    digest = request.form.get("digest", "")[:160]
    restored = _tags().history.restore(name, tag, digest)  # a refusal: the error page
    if restored.changed:
        flash(f"Tag {tag} restored to {digest}.", "success")
    else:
        flash(f"Tag {tag} already points at {digest}.", "success")
    return redirect(url_for("ui.tag_history", name=name, tag=tag), code=303)


# -- rules -------------------------------------------------------------------------
def _require_admin() -> Response | None:
    if access.viewer().anonymous and access.auth_enabled():
        return redirect(url_for("ui.login", next=request.path))
    if not access.is_admin():
        abort(403, description="Only an administrator may manage tag rules.")
    return None


def _rules_page(status: int = 200, **context: object) -> tuple[str, int]:
    return render_template("ui/tag_rules.html", rules=_tags().rules.rules(), kinds=KINDS,
                           **context), status


@bp.get("/tag-rules")
def tag_rules_page() -> Response | tuple[str, int]:
    denied = _require_admin()
    return denied if denied is not None else _rules_page()


@bp.post("/tag-rules")
def tag_rules_create() -> Response | tuple[str, int]:
    denied = _require_admin()
    if denied is not None:
        return denied
    form = request.form
    try:
        rule = _tags().rules.add(
            form.get("kind", ""), form.get("repositories", "").strip()[:512] or "**",
            form.get("tags", "").strip()[:255], form.get("users", "")[:2000].split(),
            form.get("groups", "")[:2000].split(), form.get("description", "").strip()[:255],
            f"ui:{access.viewer().user or ''}")
    except TagRuleError as exc:
        return _rules_page(400, error=str(exc), form=form)
    flash(f"Rule {rule.source} added: it applies now.", "success")
    return redirect(url_for("ui.tag_rules_page"), code=303)


@bp.post("/tag-rules/<int:rule_id>/delete")
def tag_rules_delete(rule_id: int) -> Response:
    denied = _require_admin()
    if denied is not None:
        return denied
    if _tags().rules.delete(rule_id):
        flash(f"Rule api:{rule_id} deleted.", "success")
    else:
        flash(f"No rule api:{rule_id}.", "error")
    return redirect(url_for("ui.tag_rules_page"), code=303)
