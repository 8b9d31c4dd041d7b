"""The UI's mirror page, for admins: each upstream's health, rate limit, what its cache
holds, its last eviction and pre-fetch runs; eviction (dry run or now) and pre-fetch
on demand; the repositories cached from an upstream. Also the card a mirrored
repository's page shows (upstream, last check, cache state per tag), for anyone who
may pull that repository.

Everything goes through mirror/manage.py (the service /api/v1/mirror calls).
"""

from __future__ import annotations

from typing import Any

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from ociregistry.mirror.eviction import EvictionRunning, UpstreamNotFound
from ociregistry.mirror.manage import MirrorManager
from ociregistry.web.ui import access
from ociregistry.web.ui.blueprint import bp

SHOWN = 500  # deletions of a dry run listed on the page


def _manager() -> MirrorManager:
    return current_app.extensions["ociregistry"].mirror_manage


def _require_admin() -> Response | None:
    if access.viewer().anonymous and access.auth_enabled():
        return redirect(url_for("ui.login", next=request.path))
    if not access.is_admin():
        abort(403, description="Only an administrator may manage the mirror.")
    return None


def _upstream_arg(name: str) -> str:
    try:
        return _manager().upstream(name[:64]).name
    except UpstreamNotFound:
        abort(404, description=f"No upstream named {name[:64]}.")


def _page(status: int = 200, **context: Any) -> tuple[str, int]:
    manager = _manager()
    shown = request.args.get("upstream", "")[:64]
    repositories = None
    if shown and manager.settings.by_name(shown) is not None:
        repositories = manager.repositories(shown, 200)
    return render_template(
        "ui/mirror.html", upstreams=manager.upstreams(), shown=shown,
        repositories=repositories, syncs=manager.sync_runs(None, 10),
        can_sync=manager.prefetch.source is not None, limit=SHOWN, **context), status


@bp.get("/mirror")
def mirror_page() -> Response | tuple[str, int]:
    return _require_admin() or _page()


@bp.post("/mirror/<upstream>/evict")
def mirror_evict(upstream: str) -> Response | tuple[str, int]:
    denied = _require_admin()
    if denied is not None:
        return denied
    name = _upstream_arg(upstream)
    dry_run = request.form.get("dry_run", "true") != "false"
    try:
        result = _manager().evict(name, dry_run=dry_run, trigger="ui")
    except EvictionRunning as exc:
        return _page(409, error=str(exc))
    return _page(eviction=result)


@bp.post("/mirror/<upstream>/sync")
def mirror_sync(upstream: str) -> Response | tuple[str, int]:
    denied = _require_admin()
    if denied is not None:
        return denied
    name = _upstream_arg(upstream)
    manager = _manager()
    if not manager.upstream(name).prefetch or manager.prefetch.source is None:
        return _page(409, error=f"Upstream {name} has nothing to pre-fetch here.")
    run_id = manager.start_sync(name, trigger="ui")
    flash(f"Pre-fetch run #{run_id} of {name} started.", "success")
    return redirect(url_for("ui.mirror_page"), code=303)


def mirror_repository(name: str) -> dict[str, Any] | None:
    """The mirror card of a repository page: None for a repository outside every
    upstream's prefix (or one the viewer may not pull)."""
    manager = current_app.extensions["ociregistry"].mirror_manage
    if manager is None or manager.mirrored(name) is None or not access.can_pull(name):
        return None
    return manager.repository(name, limit=200)


@bp.app_context_processor
def _template_globals() -> dict[str, Any]:
    manager = current_app.extensions["ociregistry"].mirror_manage
    return {"mirror_repository": mirror_repository,
            "mirror_enabled": manager is not None and manager.enabled}
