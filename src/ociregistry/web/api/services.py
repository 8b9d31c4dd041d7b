"""What the API's views call: the core's services, built once per app."""

from __future__ import annotations

from dataclasses import dataclass

from ociregistry.core.browse import BrowseService
from ociregistry.core.catalog import CatalogService
from ociregistry.core.cursors import CursorCodec
from ociregistry.core.gc_jobs import ui_secret_key
from ociregistry.runtime import Runtime


@dataclass
class APIServices:
    browse: BrowseService
    catalog: CatalogService


def build_services(runtime: Runtime) -> APIServices:
    # Cursors are signed with the UI's key (configured, or generated once and kept
    # in the index), so that every instance accepts the others' cursors.
    configured = runtime.settings.ui.secret_key
    key = configured.encode() if configured else ui_secret_key(runtime.metadata)
    browse = BrowseService(runtime.registry, runtime.storage)
    return APIServices(browse, CatalogService(browse, CursorCodec(key)))
