"""The UI's pages for reading: overview, repositories, tags, manifests."""

from __future__ import annotations

from typing import Any

from flask import abort, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from ociregistry.core.catalog import REPOSITORY_SORTS, TAG_SORTS, KeysetPage
from ociregistry.core.cursors import BadCursor
from ociregistry.web.ui import access
from ociregistry.web.ui.blueprint import bp, browse, catalog, services

PER_PAGE_CHOICES = (25, 50, 100)


def int_arg(name: str, default: int) -> int:
    raw = request.args.get(name, "")
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 9 else default


def per_page() -> int:
    value = int_arg("per_page", 50)
    return value if value in PER_PAGE_CHOICES else 50


def page_link(**changes: Any) -> str:
    """This page's URL with some query arguments changed (None removes one)."""
    args = {k: v for k, v in request.args.items() if v != ""}
    for key, value in changes.items():
        if value is None:
            args.pop(key, None)
        else:
            args[key] = value
    return url_for(request.endpoint or "ui.overview", **(request.view_args or {}), **args)


def cursor_arg() -> str | None:
    return request.args.get("cursor", "")[:512] or None


def keyset(fetch: Any) -> KeysetPage[Any]:
    """A keyset page; a cursor from another listing (or edited) is a 400, as on the API."""
    try:
        return fetch()
    except BadCursor:
        abort(400, description="This page link is not valid for this list; start again "
                               "from its first page.")


def require_pull(name: str) -> Response | None:
    """None when the viewer may see the repository; otherwise where to send them.

    A signed-in user without access gets "not found", so that the names of
    repositories they may not see are not confirmed either.
    """
    if access.can_pull(name):
        return None
    if access.viewer().anonymous:
        return redirect(url_for("ui.login", next=request.full_path.rstrip("?")))
    abort(404, description=f"No repository named {name} that you may see.")


@bp.get("/")
def overview() -> str:
    view = browse().overview(access.visible_repositories())
    storage = access.can_see_storage()
    gc_status = services().gc_jobs.status() if storage else None
    return render_template("ui/overview.html", view=view, show_storage=storage,
                           gc_status=gc_status)


@bp.get("/repositories")
def repositories() -> str:
    search = request.args.get("q", "")[:256]
    sort = request.args.get("sort", "name")
    sort = sort if sort in REPOSITORY_SORTS else "name"
    default_order = "asc" if sort == "name" else "desc"
    order = request.args.get("order", default_order)
    order = order if order in ("asc", "desc") else default_order
    visible = access.visible_repositories()
    page = keyset(lambda: catalog().repositories(
        contains=search, sort=sort, descending=order == "desc", limit=per_page(),
        cursor=cursor_arg(), visible=visible))
    total = catalog().count_repositories(search, visible)
    return render_template("ui/repositories.html", page=page, total=total, search=search,
                           sort=sort, order=order, page_link=page_link)


@bp.get("/r/<path:name>")
def repository(name: str) -> Response | str:
    denied = require_pull(name)
    if denied is not None:
        return denied
    summary = browse().repository(name)
    search = request.args.get("q", "")[:256]
    sort = request.args.get("sort", "name")
    sort = sort if sort in TAG_SORTS else "name"
    tags = keyset(lambda: catalog().tags(
        name, contains=search.strip(), sort=sort, descending=sort != "name",
        limit=per_page(), cursor=cursor_arg()))
    total = catalog().count_tags(name, search.strip()) if search.strip() else summary.tags
    return render_template("ui/repository.html", repo=summary, tags=tags, total=total,
                           search=search, sort=sort, page_link=page_link)


@bp.get("/r/<path:name>/-/tag/<tag>")
def tag(name: str, tag: str) -> Response | str:
    return _manifest_page(name, tag, tag)


@bp.get("/r/<path:name>/-/manifest/<digest>")
def manifest(name: str, digest: str) -> Response | str:
    return _manifest_page(name, digest, None)


def _manifest_page(name: str, reference: str, tag: str | None) -> Response | str:
    denied = require_pull(name)
    if denied is not None:
        return denied
    view = browse().manifest(name, reference)
    return render_template("ui/manifest.html", m=view, tag=tag)


@bp.get("/<path:rest>")
def not_found(rest: str) -> None:
    abort(404, description="There is no such page.")
