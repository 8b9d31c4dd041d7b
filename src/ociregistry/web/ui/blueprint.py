"""The UI blueprint: request hooks, error pages, template helpers."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from flask import Blueprint, Response, current_app, render_template, request
from markupsafe import Markup, escape
from werkzeug.exceptions import HTTPException

from ociregistry.core.browse import BrowseService, manifest_kind
from ociregistry.core.catalog import CatalogService
from ociregistry.core.errors import RegistryError
from ociregistry.core.gc_jobs import GCJobs
from ociregistry.web.ui import access
from ociregistry.web.ui.security import check_csrf, csrf_token, secure_headers

SERVICES = "ociregistry.ui"

bp = Blueprint(
    "ui",
    __name__,
    url_prefix="/ui",
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)


class UIServices:
    def __init__(self, browse: BrowseService, gc_jobs: GCJobs, catalog: CatalogService) -> None:
        self.browse = browse
        self.gc_jobs = gc_jobs
        self.catalog = catalog  # the listings /api/v1 serves, for the same pages


def services() -> UIServices:
    return current_app.extensions[SERVICES]


def browse() -> BrowseService:
    return services().browse


def catalog() -> CatalogService:
    return services().catalog


@bp.before_request
def _before() -> None:
    check_csrf()


@bp.after_request
def _after(response: Response) -> Response:
    return secure_headers(response)


_TITLES = {
    400: "Bad request", 403: "Not allowed", 404: "Not found", 405: "Not possible here",
    409: "Busy", 429: "Too many attempts", 500: "Something went wrong",
}


def error_page(status: int, message: str) -> tuple[str, int]:
    title = _TITLES.get(status, "Error")
    return render_template("ui/error.html", title=title, message=message, status=status), status


@bp.errorhandler(RegistryError)
def _registry_error(exc: RegistryError) -> tuple[str, int, dict[str, str]]:
    return (*error_page(exc.status, exc.message), exc.headers)  # Retry-After, ...


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> tuple[str, int]:
    return error_page(exc.code or 500, exc.description or exc.name)


@bp.app_context_processor
def _template_globals() -> dict[str, Any]:
    if not request.path.startswith("/ui"):
        return {}
    return {
        "csrf_token": csrf_token,
        "viewer": access.viewer,
        "is_admin": access.is_admin,
        "can_delete": access.can_delete,
        "registry_host": request.host,
        "delete_enabled": browse().delete_enabled,
    }


# -- filters ----------------------------------------------------------------------
@bp.app_template_filter("filesize")
def filesize(value: int | None) -> str:
    if value is None:
        return "—"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{value} B"


@bp.app_template_filter("short_digest")
def short_digest(digest: str | None, length: int = 12) -> str:
    if not digest:
        return ""
    algorithm, _, hexdigest = digest.partition(":")
    return f"{algorithm}:{hexdigest[:length]}"


def _relative(seconds: float) -> str:
    if seconds < 0:
        return "just now"
    for limit, unit, size in ((60, "second", 1), (3600, "minute", 60), (86400, "hour", 3600),
                              (86400 * 30, "day", 86400), (86400 * 365, "month", 86400 * 30)):
        if seconds < limit:
            count = int(seconds // size)
            return "just now" if unit == "second" and count < 10 else \
                f"{count} {unit}{'s' if count != 1 else ''} ago"
    years = int(seconds // (86400 * 365))
    return f"{years} year{'s' if years != 1 else ''} ago"


@bp.app_template_filter("when")
def when(value: float | str | None) -> Markup:
    """A <time> element: relative text, exact UTC time in the tooltip."""
    if value is None or value == "":
        return Markup("—")
    if isinstance(value, str):
        try:
            moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return Markup(escape(value))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.UTC)
    else:
        moment = dt.datetime.fromtimestamp(value, dt.UTC)
    exact = moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    text = _relative(time.time() - moment.timestamp())
    return Markup('<time datetime="{}" title="{}">{}</time>').format(
        moment.isoformat(), exact, text
    )


@bp.app_template_filter("kind_of")
def kind_of(media_type: str) -> str:
    return manifest_kind(media_type)


@bp.app_template_filter("kind_label")
def kind_label(kind: str) -> str:
    return {"image": "Image", "index": "Index", "artifact": "Artifact",
            "schema1": "Schema 1"}.get(kind, kind)


@bp.app_template_filter("media_label")
def media_label(media_type: str | None) -> str:
    """A short, readable name for a media type (the full one goes in a tooltip)."""
    if not media_type:
        return ""
    known = {
        "application/vnd.oci.image.manifest.v1+json": "OCI manifest",
        "application/vnd.oci.image.index.v1+json": "OCI index",
        "application/vnd.docker.distribution.manifest.v2+json": "Docker manifest v2",
        "application/vnd.docker.distribution.manifest.list.v2+json": "Docker manifest list",
        "application/vnd.docker.distribution.manifest.v1+json": "Docker schema 1",
        "application/vnd.docker.distribution.manifest.v1+prettyjws": "Docker schema 1 (signed)",
        "application/vnd.oci.image.layer.v1.tar+gzip": "tar+gzip",
        "application/vnd.oci.image.layer.v1.tar+zstd": "tar+zstd",
        "application/vnd.oci.image.layer.v1.tar": "tar",
        "application/vnd.docker.image.rootfs.diff.tar.gzip": "tar+gzip (Docker)",
        "application/vnd.oci.image.config.v1+json": "OCI image config",
        "application/vnd.docker.container.image.v1+json": "Docker image config",
        "application/vnd.oci.empty.v1+json": "empty",
    }
    return known.get(media_type, media_type)
